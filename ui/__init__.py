"""NiceGUI pages and components. They call core services only; no SQL here."""
