"""The database as core sees it: short explicit sessions, and a commit hook for the event bus."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from core import metrics
from storage.db import make_engine, read_session, write_session

EVENTS_WRITTEN = "agentdeck_events_written"
# {event type: rows appended} of a write transaction, counted in metrics once it commits.
EVENT_TYPE_COUNTS = "agentdeck_event_type_counts"
# The Event rows a write transaction appended (core.events.append_event fills it).
EVENT_ROWS = "agentdeck_event_rows"
# Who committed (PostgreSQL NOTIFY payload): a bus skips the notices of its own Database.
WRITER_TOKEN = "agentdeck_writer_token"


class Database:
    """Owns the engine; hands out read sessions and write transactions.

    After a write transaction that appended events commits, every `after_commit` listener is
    called (the event bus uses this to wake its pump), and every `on_events_committed` sink gets
    the committed Event rows (the bus delivers them without reading them back when it can).
    Listeners run outside the transaction, so a slow or failing listener can never undo or delay a
    commit.
    """

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._after_commit: list[Callable[[], None]] = []
        self._event_sinks: list[Callable[[list[Any]], None]] = []
        self.writer_token = uuid.uuid4().hex

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit_with_events(self, listener: Callable[[], None]) -> None:
        self._after_commit.append(listener)

    def on_events_committed(self, sink: Callable[[list[Any]], None]) -> None:
        """`sink(rows)` after each commit that appended events, with those Event rows."""
        self._event_sinks.append(sink)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with read_session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        started, committed = time.perf_counter(), False
        try:
            with write_session(self.engine, on_commit=self._hand_over) as session:
                session.info[WRITER_TOKEN] = self.writer_token
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

    def _hand_over(self, info: dict[str, Any]) -> None:
        # Runs in commit order (storage.db.write_session): the bus gets this process's events in
        # seq order and rarely has to read them back. A sink must be quick and must not raise.
        rows = info.get(EVENT_ROWS)
        if rows:
            for sink in list(self._event_sinks):
                sink(rows)

    def dispose(self) -> None:
        self.engine.dispose()
