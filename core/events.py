"""The event log and the live bus (SPEC §5) — a transactional outbox.

Writing: every change appends its Event row with `append_event` inside the change's own write
transaction, so the change and its event commit or vanish together. `seq` is max+1 taken under
the database-wide write lock (see storage/db.py), so seq order is commit order and has no gaps.

Delivery: after such a commit the committing thread hands the new rows to the bus; its pump
delivers them at once when they continue exactly where delivery stands (seq = last delivered + 1,
so nothing committed earlier can be missing), and otherwise reads the rows from the log in seq
order, in pages. Each pass fans out a whole batch, one queue offer per subscriber and event. The table is the only source of truth: a subscriber that resumes with
`since` reads the rows it missed, then continues live, deduplicating by seq. With PostgreSQL the
commit also NOTIFYs, so pumps in other processes wake and read the same rows.

A slow subscriber never blocks anyone: its queue is bounded; on overflow the queue is dropped
and the subscription quietly re-reads from its last seq (the `resume` marker tells consumers
that care). `llm_token` events are pushed only, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session, col, select

from core.db import EVENT_ROWS, EVENT_TYPE_COUNTS, EVENTS_WRITTEN, WRITER_TOKEN, Database
from core.event_schema import EventType as EventType  # re-exported: callers import it from here
from core.event_schema import validate_payload
from storage.models import Event
from storage.types import utcnow

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "agentdeck_events"
REPLAY_PAGE = 500
DEFAULT_QUEUE_SIZE = 1000


class EventOut(BaseModel):
    """One event as every consumer sees it (WebSocket frame, REST list, dashboard)."""

    seq: int | None
    type: str
    workspace_id: uuid.UUID | None
    agent_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    ts: datetime
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: Event) -> EventOut:
        return cls(
            seq=row.seq,
            type=row.type,
            workspace_id=row.workspace_id,
            agent_id=row.agent_id,
            run_id=row.run_id,
            ts=row.created_at,
            data=row.payload,
        )


def append_event(
    session: Session,
    type: EventType,
    workspace_id: uuid.UUID,
    data: dict[str, Any],
    *,
    agent_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
) -> EventOut:
    """Append an event to the log inside the caller's write transaction; the event as the bus
    will deliver it."""
    if type is EventType.LLM_TOKEN:
        raise ValueError("llm_token events are pushed with EventBus.publish_ephemeral, never stored")
    validate_payload(type, data)
    next_seq = session.info.get(_NEXT_SEQ)
    if next_seq is None:
        next_seq = session.connection().execute(LOG_HEAD).scalar_one() + 1
    if not session.info.get(_NOTIFIED):  # the transaction's first event
        session.info[_NOTIFIED] = True
        if session.get_bind().dialect.name == "postgresql":
            # Delivered at commit only, so other processes never read ahead of the commit.
            # The payload names the committing Database: its own bus got the events handed over.
            token = str(session.info.get(WRITER_TOKEN, ""))
            session.exec(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, token)))  # type: ignore[call-overload]
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "seq": next_seq,
        "type": type.value,
        "workspace_id": workspace_id,
        "agent_id": agent_id,
        "run_id": run_id,
        "payload": data,
        "created_at": now,
        "updated_at": now,
    }
    # A prepared INSERT rather than the unit of work (this runs for every change); what the
    # caller added to the session goes in first, as a flush would have ordered it.
    session.flush()
    session.connection().execute(_INSERT_EVENT, values)
    session.info[_NEXT_SEQ] = next_seq + 1
    session.info[EVENTS_WRITTEN] = True
    counts = session.info.setdefault(EVENT_TYPE_COUNTS, {})  # for metrics, after commit
    counts[type.value] = counts.get(type.value, 0) + 1
    event = EventOut.model_construct(
        seq=next_seq,
        type=values["type"],
        workspace_id=workspace_id,
        agent_id=agent_id,
        run_id=run_id,
        ts=now,
        data=data,
    )
    session.info.setdefault(EVENT_ROWS, []).append(event)
    return event


def log_head_read(session: Session, head: int) -> None:
    """The event log's last seq as the caller read it in this write transaction (LOG_HEAD as a
    column of a statement it needed anyway): the transaction's first append_event need not read it.
    Safe because writers are serialized from the start of their transaction (storage/db.py)."""
    session.info.setdefault(_NEXT_SEQ, head + 1)


_EVENTS: sa.Table = Event.__table__  # type: ignore[attr-defined]
# The log's last seq (0 when empty): max() of the unique seq index, one lookup.
LOG_HEAD = sa.select(sa.func.coalesce(sa.func.max(_EVENTS.c.seq), 0))
_INSERT_EVENT = _EVENTS.insert()
# session.info keys: the seq the transaction's next event takes; whether it has announced its events.
_NEXT_SEQ = "agentdeck_next_seq"
_NOTIFIED = "agentdeck_events_notified"


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants. A workspace filter is what keeps tenants apart."""

    workspace_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    types: frozenset[str] | None = None

    def matches(self, event: EventOut) -> bool:
        if self.workspace_id is not None and event.workspace_id != self.workspace_id:
            return False
        if self.agent_id is not None and event.agent_id != self.agent_id:
            return False
        if self.run_id is not None and event.run_id != self.run_id:
            return False
        return self.types is None or event.type in self.types

    def where(self) -> list[Any]:
        clauses: list[Any] = []
        if self.workspace_id is not None:
            clauses.append(Event.workspace_id == self.workspace_id)
        if self.agent_id is not None:
            clauses.append(Event.agent_id == self.agent_id)
        if self.run_id is not None:
            clauses.append(Event.run_id == self.run_id)
        if self.types is not None:
            clauses.append(col(Event.type).in_(sorted(self.types)))
        return clauses


def read_events(session: Session, flt: EventFilter, since: int, limit: int) -> list[EventOut]:
    """Persisted events with seq > since matching `flt`, oldest first (an index range scan)."""
    stmt = select(Event).where(Event.seq > since, *flt.where()).order_by(col(Event.seq)).limit(limit)
    return [EventOut.from_row(row) for row in session.exec(stmt)]


def head_seq(session: Session) -> int:
    return int(session.connection().execute(LOG_HEAD).scalar_one())


def purge_events_older_than(db: Database, days: int) -> int:
    """Delete persisted events older than `days`; 0 keeps everything. Returns rows deleted.

    The newest event is always kept, however old: `seq` is max+1, so an emptied table would
    restart numbering at 1 and every running pump and resuming client (already past it) would
    silently miss the new events.
    """
    if days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=days)
    with db.write() as session:
        newest = head_seq(session)
        stmt = sa.delete(Event).where(col(Event.created_at) < cutoff, col(Event.seq) < newest)
        result = session.exec(stmt)
        return int(result.rowcount or 0)


_RESUME = object()
_CLOSED = object()


class Subscription:
    """A live view of the event log for one consumer. Iterate it with `async for`."""

    def __init__(self, bus: EventBus, flt: EventFilter, since: int | None, maxsize: int) -> None:
        self.bus = bus
        self.filter = flt
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        # With `since`, the log after it is replayed first; without, only what comes next.
        self.last_seq = since if since is not None else bus.pumped_seq
        self._replaying = since is not None
        # Live events were dropped while replaying: read the log once more before going live.
        self._dropped_while_replaying = False
        self.closed = False

    def _offer(self, event: EventOut) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Dropping the backlog is safe: everything persisted is re-read from the log.
            while not self.queue.empty():
                self.queue.get_nowait()
            if self._replaying:
                # It is reading the log anyway (e.g. resumed during a burst): not a slow consumer.
                self._dropped_while_replaying = True
            else:
                self.queue.put_nowait(_RESUME)

    def close(self) -> None:
        """Stop this subscription (call it on the bus's event loop).

        A consumer waiting in `async for` is woken and its loop ends; nothing more is delivered.
        """
        if self.closed:
            return
        self.closed = True
        self.bus._unsubscribe(self)
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_CLOSED)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[EventOut]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[EventOut]:
        while not self.closed:
            if self._replaying:
                page = await asyncio.to_thread(self.bus.read, self.filter, self.last_seq, REPLAY_PAGE)
                for event in page:
                    if self.closed:
                        return
                    assert event.seq is not None
                    self.last_seq = event.seq
                    yield event
                if len(page) < REPLAY_PAGE:
                    if self._dropped_while_replaying:
                        self._dropped_while_replaying = False
                    else:
                        self._replaying = False
                continue
            item = await self.queue.get()
            if item is _CLOSED or self.closed:
                return
            if item is _RESUME:
                self._replaying = True
                yield EventOut(
                    seq=None,
                    type=EventType.RESUME,
                    workspace_id=self.filter.workspace_id,
                    ts=utcnow(),
                    data={"since": self.last_seq},
                )
                continue
            if item.seq is None:  # pushed-only (llm_token)
                yield item
            elif item.seq > self.last_seq:
                self.last_seq = item.seq
                yield item


class EventBus:
    """Fans committed events out to this process's subscribers, in seq order."""

    def __init__(self, db: Database, *, poll_interval: float = 1.0) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.pumped_seq = 0
        self._subscriptions: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Events this process committed, by seq, waiting for the pump (touched on the loop only).
        self._handed: dict[int, EventOut] = {}
        # Something else may have committed events (another process, a poll): read the log.
        self._read_log = True
        db.on_events_committed(self._committed)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.pumped_seq = await asyncio.to_thread(self._head_seq)
        self._tasks.append(asyncio.create_task(self._pump(), name="agentdeck-event-pump"))
        if self.db.dialect == "postgresql":
            self._tasks.append(asyncio.create_task(self._listen(), name="agentdeck-event-listen"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        try:
            # Collects the tasks' own CancelledError, yet lets a cancel of the caller through
            # (suppressing CancelledError around `await task` swallowed the caller's too).
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._loop = None
            self._wake = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    # -- producers -------------------------------------------------------------------------
    def notify(self) -> None:
        """Wake the pump to read the log; safe from any thread."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake_to_read)

    def _committed(self, events: list[EventOut]) -> None:
        """After a commit of this process (any thread): hand its events to the pump."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed meanwhile; a restarted pump reads the log.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._hand, list(events))

    def _hand(self, events: list[EventOut]) -> None:
        for event in events:
            assert event.seq is not None
            if event.seq > self.pumped_seq:
                self._handed[event.seq] = event
        if self._wake is not None:
            self._wake.set()

    def _wake_to_read(self) -> None:
        self._read_log = True
        if self._wake is not None:
            self._wake.set()

    def publish_ephemeral(
        self,
        type: EventType,
        workspace_id: uuid.UUID,
        data: dict[str, Any],
        *,
        agent_id: uuid.UUID | None = None,
        run_id: uuid.UUID | None = None,
    ) -> None:
        """Push an event that is not stored (llm_token); safe from any thread."""
        validate_payload(type, data)
        event = EventOut(
            seq=None,
            type=type,
            workspace_id=workspace_id,
            agent_id=agent_id,
            run_id=run_id,
            ts=utcnow(),
            data=data,
        )
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._fan_out, [event])

    # -- consumers -------------------------------------------------------------------------
    def subscribe(
        self,
        flt: EventFilter,
        since: int | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        """Subscribe from now (since=None) or from just after `since` (replay, then live)."""
        sub = Subscription(self, flt, since, maxsize)
        self._subscriptions.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def read(self, flt: EventFilter, since: int, limit: int) -> list[EventOut]:
        with self.db.read() as session:
            return read_events(session, flt, since, limit)

    # -- internals -------------------------------------------------------------------------
    def _head_seq(self) -> int:
        with self.db.read() as session:
            return head_seq(session)

    def _fan_out(self, events: Iterable[EventOut]) -> None:
        subscriptions = list(self._subscriptions)
        for event in events:
            for sub in subscriptions:
                if not sub.closed and sub.filter.matches(event):
                    sub._offer(event)

    def _deliver_handed(self) -> None:
        """Deliver the handed-over events that continue the log without a hole."""
        batch: list[EventOut] = []
        while (event := self._handed.pop(self.pumped_seq + 1, None)) is not None:
            batch.append(event)
            self.pumped_seq += 1
        if batch:
            self._fan_out(batch)
        for seq in [s for s in self._handed if s <= self.pumped_seq]:
            del self._handed[seq]
        if self._handed:
            # An earlier commit's hand-over is late, or another process committed in between:
            # the log says what comes next.
            self._read_log = True

    async def _pump(self) -> None:
        assert self._wake is not None
        while True:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the wait
            # completes (a commit racing stop()), and the pump would then never stop.
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
                    woken = True
            self._wake.clear()
            if not woken:
                self._read_log = True  # the periodic poll: commits of other writers, if any
            self._deliver_handed()
            if not self._read_log:
                continue
            self._read_log = False
            try:
                while True:
                    page = await asyncio.to_thread(self.read, EventFilter(), self.pumped_seq, REPLAY_PAGE)
                    if page and page[-1].seq is not None and page[-1].seq > self.pumped_seq:
                        fresh = [e for e in page if e.seq is not None and e.seq > self.pumped_seq]
                        self.pumped_seq = page[-1].seq
                        self._fan_out(fresh)
                    if len(page) < REPLAY_PAGE:
                        break
                self._deliver_handed()
            except Exception:  # the database may be briefly unavailable; retry on next wake
                self._read_log = True
                log.exception("event pump failed to read the log; retrying")

    async def _listen(self) -> None:
        """PostgreSQL only: wake the pump when another process commits events."""
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    async for notice in conn.notifies():
                        if notice.payload != self.db.writer_token:  # ours were handed over
                            self._wake_to_read()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
