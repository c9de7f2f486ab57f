"""REST and WebSocket adapters over core. Routers call core services only; no SQL here."""
