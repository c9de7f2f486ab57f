"""Storage: SQLModel tables, the engine and session factory. Imports nothing else of ours."""
