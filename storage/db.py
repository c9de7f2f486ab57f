"""Engine and sessions.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout. Writers are
serialized on both databases: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by a transaction-scoped
advisory lock taken when a write session begins. That one rule is what makes event `seq` values
commit in order (a reader never sees seq 7 before seq 6 commits), and it keeps per-agent message
numbering and context versions free of races. Write transactions are short, so the cost is small.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

# Any constant works; it only has to be the same in every process of one deployment.
WRITE_LOCK_KEY = 0x41474E54  # "AGNT"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, with the per-dialect settings this app relies on."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would issue BEGIN itself and ignore ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.info.get("agentdeck_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session for one write transaction: commits on success, rolls back on any error."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["agentdeck_begin"] = "IMMEDIATE"
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                with Session(bind=conn, expire_on_commit=False) as session:
                    yield session
                    session.flush()
        finally:
            conn.info.pop("agentdeck_begin", None)


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads only; it never takes the write lock. Closing it (not rolling back)
    keeps loaded objects readable after the block."""
    with Session(engine, expire_on_commit=False) as session:
        yield session
