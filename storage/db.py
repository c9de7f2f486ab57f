"""Engine and sessions.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout. Writers are
serialized on both databases: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by a transaction-scoped
advisory lock taken when a write session begins. That one rule is what makes event `seq` values
commit in order (a reader never sees seq 7 before seq 6 commits), and it keeps per-agent message
numbering and context versions free of races. Write transactions are short, so the cost is small.

SQLite writers of one process queue on an in-process lock (one per database file) *before*
`BEGIN IMMEDIATE`: without it they all meet in SQLite's busy handler, which sleeps and retries
(1, 2, 5, 10 ... ms) instead of queuing, so under load most of a request's time was sleeping.
The busy timeout still covers writers of other processes (the CLI, a second server).

`synchronous=NORMAL` in WAL mode: a commit is appended to the WAL before it returns, so a killed
process (SIGKILL, a crash) loses nothing acknowledged — the operating system still holds the
write. Only a power failure or kernel crash can lose the last transactions (never corrupt the
file); `FULL` would fsync every commit to close that window at several times the cost per write.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

# Any constant works; it only has to be the same in every process of one deployment.
WRITE_LOCK_KEY = 0x41474E54  # "AGNT"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# 19 digits or more: possibly an integer beyond 64 bits, which orjson reads as a float (losing
# digits) where the standard parser keeps it exact. Also matches long digit runs inside strings:
# those rows just take the slower parser.
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


def load_json(text: str | bytes) -> Any:
    """JSON columns are read with orjson, several times faster than the standard parser on a
    thread page's metadata; what orjson would read differently or refuses (integers beyond 64
    bits, lone surrogates) goes to the standard parser."""
    long_digits = _LONG_DIGITS_BYTES.search(text) if isinstance(text, bytes) else _LONG_DIGITS.search(text)
    if long_digits is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, with the per-dialect settings this app relies on."""
    kwargs.setdefault("json_deserializer", load_json)
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


_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()
_writing = threading.local()


def _writer_lock(engine: Engine) -> threading.Lock:
    """The lock SQLite writers of this process queue on: one per database file, shared by every
    engine on that file (tests and the CLI may open a second engine on it)."""
    key = str(engine.url.database or "")
    with _writer_locks_guard:
        lock = _writer_locks.get(key)
        if lock is None:
            lock = _writer_locks[key] = threading.Lock()
        return lock


@contextmanager
def _queued_writer(engine: Engine) -> Iterator[None]:
    if engine.dialect.name != "sqlite":
        yield
        return
    key = str(engine.url.database or "")
    held: set[str] = _writing.__dict__.setdefault("files", set())
    if key in held:
        # A second write transaction on this file opened inside a first one, on the same thread:
        # it would wait forever for the lock (or, with BEGIN IMMEDIATE, for itself). Say so.
        raise RuntimeError("nested write transaction: use the session of the enclosing db.write()")
    with _writer_lock(engine):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


@contextmanager
def write_session(engine: Engine, on_commit: Callable[[dict[str, Any]], None] | None = None) -> Iterator[Session]:
    """A session for one write transaction: commits on success, rolls back on any error.

    `on_commit(session.info)` runs right after the commit, while this process's SQLite writers
    are still queued behind it, so such callbacks run in commit order.
    """
    with _queued_writer(engine), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["agentdeck_begin"] = "IMMEDIATE"
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                with Session(bind=conn, expire_on_commit=False) as session:
                    yield session
                    session.flush()
                    info = session.info
        finally:
            conn.info.pop("agentdeck_begin", None)
        if on_commit is not None:
            on_commit(info)


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads only; it never takes the write lock. Closing it (not rolling back)
    keeps loaded objects readable after the block."""
    with Session(engine, expire_on_commit=False) as session:
        yield session
