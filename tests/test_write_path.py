"""The fast write path (issue 15) keeps every promise of the event log, on SQLite and PostgreSQL.

- 8 clients x 500 messages through the real API process: every message stored once, the thread's
  seq gap-free, event seq strictly increasing and one event per message, no 5xx, and no
  "database is locked" anywhere.
- SQLite writers of one process queue on a lock instead of meeting in the busy handler: with the
  busy timeout set to zero (any collision would fail at once) eight threads still all commit.
- The bus delivers handed-over events in seq order, and reads the log when a hand-over does not
  continue it (another process committed in between).
- A thread page encoded straight from the rows (on SQLite: from the stored text) is what the validated
  model gives, value for value and key for key.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from core.config import Settings
from core.db import Database
from core.events import EventBus, EventFilter, EventOut, EventType, append_event, read_events
from core.messages import MessagePublic, MessageService, thread_cursor
from core.runs import RunCreate
from core.schemas import AgentCreate, Page, WorkspaceCreate
from core.services import Services, build_services
from core.workspaces import WorkspaceService
from storage.models import AgentMessage
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

CLIENTS = 8
PER_CLIENT = 500


# -- through the API, in a real process ----------------------------------------------------------
@pytest.fixture
def app_database(tmp_path: Path) -> Iterator[str | None]:
    url = create_pg_database() if USE_POSTGRES else None
    yield url
    if url:
        drop_pg_database(url)


# 4,000 requests: on a loaded shared machine this takes minutes; the bound only catches a hang.
@pytest.mark.timeout(1800)
def test_eight_clients_posting_500_messages_each_lose_nothing_and_number_everything_once(
    tmp_path: Path, app_database: str | None
) -> None:
    data_dir = tmp_path / "data"
    env = {"AGENTDECK_RATE_LIMIT": "off", "AGENTDECK_PRELOAD_RUNTIME": "false"}
    with AppProcess(data_dir, database_url=app_database, env=env, startup_timeout=120) as app:
        services = build_services(Settings(data_dir=data_dir, database_url=app_database))
        try:
            ws = services.workspaces.create(WorkspaceCreate(slug="burst"))
            agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="sink"))
            _, secret = services.tokens.create(ws.id, "burst")
            head_before = _head(services)
            answers: list[tuple[int, str]] = []
            sent: list[str] = []
            lock = threading.Lock()
            start = threading.Barrier(CLIENTS)

            def client(n: int) -> None:
                headers = {"Authorization": f"Bearer {secret}"}
                with httpx.Client(base_url=app.base_url, headers=headers, timeout=120) as http:
                    start.wait()
                    for i in range(PER_CLIENT):
                        content = f"client {n} message {i}"
                        r = http.post(f"/api/agents/{agent.id}/messages", json={"content": content})
                        with lock:
                            answers.append((r.status_code, r.text))
                            sent.append(content)

            threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

            assert [a for a in answers if a[0] != 201] == []
            replies = [json.loads(text) for _, text in answers]
            total = CLIENTS * PER_CLIENT
            assert sorted(r["seq"] for r in replies) == list(range(1, total + 1))

            # The thread, read back through the API page by page (oldest first): each message once.
            stored: list[dict[str, Any]] = []
            with httpx.Client(base_url=app.base_url, headers={"Authorization": f"Bearer {secret}"}) as http:
                params: dict[str, Any] = {"limit": 500, "after": thread_cursor(0)}
                while True:
                    page = http.get(f"/api/agents/{agent.id}/messages", params=params).json()
                    stored.extend(page["items"])
                    if page["next_cursor"] is None:
                        break
                    params["after"] = page["next_cursor"]
            assert [m["seq"] for m in stored] == list(range(1, total + 1))
            assert sorted(m["content"] for m in stored) == sorted(sent)
            assert {m["id"] for m in stored} == {r["id"] for r in replies}

            # The event log: strictly increasing seq, one agent_message event per stored message.
            events = _events_after(services, head_before, agent.id)
            seqs = [e.seq for e in events]
            assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(seqs))
            message_events = [e for e in events if e.type == EventType.AGENT_MESSAGE]
            assert sorted(e.data["message"]["id"] for e in message_events) == sorted(m["id"] for m in stored)
            # Commit order is seq order in both logs: the thread's seq grows with the event's seq.
            assert [e.data["message"]["seq"] for e in message_events] == list(range(1, total + 1))
        finally:
            services.db.dispose()
        log = app.log()
    assert "database is locked" not in log
    assert "Traceback" not in log


def _head(services: Services) -> int:
    with services.db.read() as session:
        return int(session.execute(sa.text("SELECT coalesce(max(seq), 0) FROM events")).scalar_one())


def _events_after(services: Services, since: int, agent_id: uuid.UUID) -> list[EventOut]:
    out: list[EventOut] = []
    with services.db.read() as session:
        while page := read_events(session, EventFilter(agent_id=agent_id), since, 500):
            out.extend(page)
            since = page[-1].seq or since
    return out


# -- SQLite writers queue in the process ---------------------------------------------------------
@pytest.mark.skipif(USE_POSTGRES, reason="the in-process writer queue is SQLite's (PostgreSQL: the test above)")
def test_sqlite_writers_of_one_process_never_collide_even_without_a_busy_timeout(services: Services) -> None:
    # A second engine on the same file, whose connections give up at once on a locked database:
    # any two writers meeting in BEGIN IMMEDIATE would raise "database is locked".
    db = Database(services.db.url)

    @event.listens_for(db.engine, "connect")
    def _no_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    ws = services.workspaces.create(WorkspaceCreate(slug="queue"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="q"))
    messages = MessageService(db)
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def writer(n: int) -> None:
        start.wait()
        for i in range(50):
            try:
                messages.append(agent.id, f"{n}-{i}")
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.dispose()
    assert errors == []
    assert services.messages.count(agent.id) == CLIENTS * 50


def test_a_message_write_reads_what_it_needs_in_one_statement_and_inserts_two_rows(services: Services) -> None:
    """The agent, its thread's last seq and the event log's last seq come in one SELECT; then the
    message and its event are inserted. (SQLite's BEGIN IMMEDIATE is a statement of its own;
    PostgreSQL adds the writers' lock and the NOTIFY.)"""
    ws = services.workspaces.create(WorkspaceCreate(slug="statements"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="s"))
    services.messages.append(agent.id, "the first message")
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()).lower())

    event.listen(services.db.engine, "before_cursor_execute", record)
    try:
        second = services.messages.append(agent.id, "the second message")
    finally:
        event.remove(services.db.engine, "before_cursor_execute", record)
    kinds = [
        "lock" if "pg_advisory_xact_lock" in s else "notify" if "pg_notify" in s else " ".join(s.split()[:3])
        for s in seen
    ]
    read = "select agent_instances.workspace_id, agent_instances.status,"
    messages, events = "insert into agent_messages", "insert into events"
    if USE_POSTGRES:
        assert kinds == ["lock", read, messages, "notify", events]
    else:
        assert kinds == ["begin immediate", read, messages, events]
    agent_read = seen[kinds.index(read)]
    assert "max(agent_messages.seq)" in agent_read and "max(events.seq)" in agent_read
    assert second.seq == 2
    with services.db.read() as session:
        assert read_events(session, EventFilter(agent_id=agent.id), 0, 10)[-1].data["message"]["seq"] == 2


@pytest.mark.skipif(USE_POSTGRES, reason="SQLite's in-process writer queue")
def test_a_write_opened_inside_a_write_on_one_thread_is_refused_not_deadlocked(services: Services) -> None:
    with services.db.write(), pytest.raises(RuntimeError, match="nested write"), services.db.write():
        pass
    # The outer transaction ended normally; writing goes on.
    services.workspaces.create(WorkspaceCreate(slug="after-nested"))


# -- the bus: hand-over and the log --------------------------------------------------------------
def _append(db: Database, workspace_id: uuid.UUID, n: int) -> list[int]:
    with db.write() as session:
        return [
            append_event(
                session, EventType.AGENT_ACTIVITY, workspace_id, {"activity": "testing", "agent_name": "tester", "i": i}
            ).seq
            for i in range(n)
        ]


async def _take(sub: Any, n: int) -> list[int]:
    """The seqs of the next n stored events (a bound, not a timed assertion: a hang fails)."""
    out: list[int] = []
    it = aiter(sub)
    async with asyncio.timeout(60):
        while len(out) < n:
            event = await anext(it)
            if event.seq is not None:
                out.append(event.seq)
    return out


async def test_the_bus_reads_the_log_when_another_writer_committed_in_between(database_url: str) -> None:
    mine, other = Database(database_url), Database(database_url)  # `other` stands for a 2nd process
    bus = EventBus(mine, poll_interval=60)  # no poll in time: only hand-over and log reads deliver
    await bus.start()
    try:
        ws = WorkspaceService(mine).create(WorkspaceCreate(slug="between"))
        async with bus.subscribe(EventFilter(workspace_id=ws.id)) as sub:
            first = await asyncio.to_thread(_append, mine, ws.id, 2)
            middle = await asyncio.to_thread(_append, other, ws.id, 3)  # no hand-over to this bus
            last = await asyncio.to_thread(_append, mine, ws.id, 2)  # does not continue the bus's seq
            assert await _take(sub, 7) == first + middle + last
    finally:
        await bus.stop()
        mine.dispose()
        other.dispose()


async def test_concurrent_writers_reach_a_subscriber_in_seq_order_without_gaps(services: Services) -> None:
    await services.start()
    try:
        ws = services.workspaces.create(WorkspaceCreate(slug="order"))
        async with services.bus.subscribe(EventFilter(workspace_id=ws.id)) as sub:

            def writers() -> list[int]:
                seqs: list[int] = []
                lock = threading.Lock()

                def one() -> None:
                    for _ in range(25):
                        got = _append(services.db, ws.id, 2)
                        with lock:
                            seqs.extend(got)

                threads = [threading.Thread(target=one) for _ in range(CLIENTS)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                return sorted(seqs)

            written = await asyncio.to_thread(writers)
            assert await _take(sub, len(written)) == written
    finally:
        await services.stop()


# -- pages encoded once --------------------------------------------------------------------------
def test_a_thread_page_encoded_from_the_rows_equals_the_validated_page(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="json"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="j"))
    run = services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=[agent.id], idea="an idea"))
    for i in range(12):
        services.messages.append(
            agent.id,
            f'message {i} with ünïcode, "quotes", \u2028, \x7f, \\ and <b>tags</b>',
            sender="user" if i % 2 else "j",
            role="user" if i % 2 else "assistant",
            metadata={"i": i, "nested": {"ok": [1, 2.5, None, -(2**63)]}, "ключ": "é ✓", "": 1e-7},
            send_to=["a", "b"] if i % 3 == 0 else None,
            prompt_tokens=i,
            completion_tokens=2 * i,
            cost=0.1 + 0.2 * i,
            run_id=run.id if i % 4 == 0 else None,
        )
    # A time without a fraction of a second, and a JSON value this service no longer accepts but
    # an older row may hold (an integer beyond 64 bits): both read back as the model writes them.
    table = AgentMessage.__table__  # type: ignore[attr-defined]
    with services.db.write() as session:
        session.connection().execute(
            sa.update(table)
            .where(table.c.agent_id == agent.id, table.c.seq == 2)
            .values(created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), metadata={"big": 10**30})
        )
    for kwargs in ({}, {"limit": 5}, {"limit": 5, "before": thread_cursor(8)}, {"limit": 4, "after": thread_cursor(1)}):
        encoded = json.loads(services.messages.list_json(agent.id, scope=ws.id, **kwargs))  # type: ignore[arg-type]
        page = services.messages.list(agent.id, scope=ws.id, **kwargs)  # type: ignore[arg-type]
        validated = Page[MessagePublic](
            items=[MessagePublic.model_validate(m.model_dump()) for m in page.items], next_cursor=page.next_cursor
        )
        assert encoded == validated.model_dump(mode="json")
        assert [list(item) for item in encoded["items"]] == [list(MessagePublic.model_fields)] * len(page.items)
    second = json.loads(services.messages.list_json(agent.id, after=thread_cursor(1), limit=1))["items"][0]
    assert (second["created_at"], second["metadata"]) == ("2026-01-02T03:04:05Z", {"big": 10**30})


@pytest.mark.skipif(USE_POSTGRES, reason="PostgreSQL's jsonb cannot hold NaN or Infinity at all")
def test_a_page_stays_json_when_an_old_row_holds_nan_or_infinity(services: Services) -> None:
    """Bundles imported before their lines were checked could store NaN/Infinity on SQLite; a page
    holding such a row is still JSON (null in their place), and the row next to it is untouched."""
    ws = services.workspaces.create(WorkspaceCreate(slug="nan"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="n"))
    old = services.messages.append(agent.id, "an old row")
    services.messages.append(agent.id, "a new row", metadata={"says": "NaN is not JSON", "n": 1})
    table = AgentMessage.__table__  # type: ignore[attr-defined]
    with services.db.write() as session:
        session.connection().execute(
            sa.update(table).where(table.c.id == old.id).values(metadata={"x": float("nan"), "y": float("inf")})
        )

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in the page")

    page = json.loads(services.messages.list_json(agent.id), parse_constant=no_constants)
    assert [item["metadata"] for item in page["items"]] == [{"says": "NaN is not JSON", "n": 1}, {"x": None, "y": None}]
