"""The database as core sees it: short explicit sessions, and a commit hook for the event bus."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlmodel import Session

from core import metrics
from storage.db import make_engine, read_session, write_session

EVENTS_WRITTEN = "agentdeck_events_written"
# {event type: rows appended} of a write transaction, counted in metrics once it commits.
EVENT_TYPE_COUNTS = "agentdeck_event_type_counts"


class Database:
    """Owns the engine; hands out read sessions and write transactions.

    After a write transaction that appended events commits, every `after_commit` listener is
    called (the event bus uses this to wake its pump). Listeners run outside the transaction, so
    a slow or failing listener can never undo or delay a commit.
    """

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._after_commit: list[Callable[[], None]] = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit_with_events(self, listener: Callable[[], None]) -> None:
        self._after_commit.append(listener)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with read_session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        started, committed = time.perf_counter(), False
        try:
            with write_session(self.engine) as session:
                yield session
                wrote_events = bool(session.info.get(EVENTS_WRITTEN))
                counts = session.info.get(EVENT_TYPE_COUNTS)
            committed = True
        finally:
            metrics.db_write(time.perf_counter() - started, committed)
        if counts:
            metrics.events_written(counts)
        if wrote_events:
            for listener in list(self._after_commit):
                listener()

    def dispose(self) -> None:
        self.engine.dispose()
