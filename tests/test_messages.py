"""Agent message threads (SPEC §2, §5, §6) on the real database (SQLite or PostgreSQL).

Large threads are inserted in bulk with the storage model (setup only); every assertion goes
through MessageService. Query plans are read from the database itself (EXPLAIN), on statements
captured while the service ran, so "a page costs the same at any depth" is checked, not assumed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, func, select

from core.db import Database
from core.errors import InvalidInput, NotFound, TooLarge
from core.messages import (
    FTS_PENDING_TABLE,
    FTS_TABLE,
    MAX_METADATA_BYTES,
    MessageCreate,
    MessagePublic,
    MessageService,
    index_pending_messages,
    thread_cursor,
)
from core.schemas import AgentCreate, AgentPublic, Page, WorkspaceCreate, WorkspacePublic
from core.services import Services
from storage.models import AgentMessage, Event, Run
from storage.types import utcnow
from tests.db import USE_POSTGRES

THREAD = 10_000
PAGE = 500


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def messages(services: Services) -> MessageService:
    return MessageService(services.db, max_content_chars=1000)


def make_workspace(services: Services, slug: str) -> WorkspacePublic:
    return services.workspaces.create(WorkspaceCreate(slug=slug))


def make_agent(services: Services, workspace: WorkspacePublic, name: str) -> AgentPublic:
    return services.agents.create(AgentCreate(workspace_id=workspace.id, definition="assistant", name=name))


def make_run(db: Database, workspace: WorkspacePublic) -> uuid.UUID:
    with db.write() as session:
        run = Run(workspace_id=workspace.id, idea="build a todo app")
        session.add(run)
        session.flush()
        return run.id


def bulk_thread(db: Database, agent: AgentPublic, n: int, run_id: uuid.UUID | None = None) -> None:
    """Setup only: n messages with seq 1..n and increasing created_at, in one statement."""
    start = utcnow() - timedelta(days=1)
    rows = [
        {
            "id": uuid.uuid4(),
            "workspace_id": agent.workspace_id,
            "agent_id": agent.id,
            "run_id": run_id,
            "seq": seq,
            "sender": "user",
            "role": "user",
            "content": f"message number {seq}",
            "cause_by": "",
            "send_to": [],
            "meta": {},
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
            "created_at": start + timedelta(milliseconds=seq),
            "updated_at": start,
        }
        for seq in range(1, n + 1)
    ]
    with db.write() as session:
        session.execute(sa.insert(AgentMessage), rows)
        index_pending_messages(session.connection())  # as a bundle import does after its rows


def message_events(db: Database) -> list[Event]:
    with db.read() as session:
        return list(session.exec(select(Event).where(Event.type == "agent_message").order_by(col(Event.seq))))


def stored_messages(db: Database) -> int:
    with db.read() as session:
        return int(session.exec(select(func.count()).select_from(AgentMessage)).one())


@contextmanager
def captured_sql(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def plan_of_page_query(db: Database, run: Any) -> str:
    """Run `run()` (a service call), then EXPLAIN the SELECT it issued on agent_messages."""
    with captured_sql(db.engine) as statements:
        run()
    pages = [(s, p) for s, p in statements if "FROM agent_messages" in s and "ORDER BY" in s]
    assert len(pages) == 1, statements
    statement, parameters = pages[0]
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            for prelude, _ in statements:  # a search's temporary index of queued messages
                if prelude.startswith("CREATE VIRTUAL TABLE IF NOT EXISTS temp."):
                    conn.exec_driver_sql(prelude)
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        return "\n".join(str(row[0]) for row in rows)


def index_on(db: Database, table: str, columns: list[str]) -> str:
    """The name of the index on exactly `columns` (SQLite names a UNIQUE constraint's index)."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            for row in conn.exec_driver_sql(f"PRAGMA index_list('{table}')").all():
                cols = [r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info('{row[1]}')").all()]
                if cols == columns:
                    return str(row[1])
        else:
            for name, definition in conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s", {"t": table}
            ).all():
                if definition.endswith("(" + ", ".join(columns) + ")"):
                    return str(name)
    raise AssertionError(f"no index on {table}{columns}")


def assert_range_scan(db: Database, plan: str, index: str, bound: str) -> None:
    """The plan reads `index` as a range bounded by the keyset condition (`bound`), never the table."""
    if db.dialect == "sqlite":
        assert f"USING INDEX {index} (" in plan or f"USING COVERING INDEX {index} (" in plan, plan
        assert bound in plan.split(index, 1)[1].splitlines()[0], plan
        assert "SCAN agent_messages" not in plan, plan
    else:
        # An index scan in order, or (for a range that holds only a few pages) a bitmap of it.
        assert f"using {index} on agent_messages" in plan or f"Bitmap Index Scan on {index}" in plan, plan
        assert any(line.strip().startswith("Index Cond:") and bound in line for line in plan.splitlines()), plan
        assert "Seq Scan" not in plan, plan


# -- long threads: keyset pages -------------------------------------------------------------------
def test_a_10000_message_thread_walks_both_ways_exactly_once_on_the_index(
    services: Services, messages: MessageService
) -> None:
    ws = make_workspace(services, "long")
    agent = make_agent(services, ws, "talker")
    other = make_agent(services, ws, "bystander")
    run_id = make_run(services.db, ws)
    bulk_thread(services.db, agent, THREAD, run_id=run_id)
    bulk_thread(services.db, other, 2000)
    if services.db.dialect == "postgresql":
        with services.db.engine.begin() as conn:  # statistics, so the planner sees the real table
            conn.exec_driver_sql("ANALYZE agent_messages")
    assert messages.count(agent.id) == THREAD

    # Newest first, next_cursor back as `before`.
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = messages.list(agent.id, scope=ws.id, limit=PAGE, before=cursor)
        pages += 1
        seen.extend(m.seq for m in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(range(THREAD, 0, -1))
    assert pages == THREAD // PAGE

    # Oldest first from the start, next_cursor back as `after`.
    seen = []
    cursor = thread_cursor(0)
    while cursor is not None:
        page = messages.list(agent.id, scope=ws.id, limit=PAGE, after=cursor)
        seen.extend(m.seq for m in page.items)
        cursor = page.next_cursor
    assert seen == list(range(1, THREAD + 1))

    # Resuming after a known message gives exactly what follows it.
    page = messages.list(agent.id, limit=3, after=thread_cursor(THREAD - 2))
    assert [m.seq for m in page.items] == [THREAD - 1, THREAD] and page.next_cursor is None

    # The run's transcript, oldest first, on (created_at, id).
    transcript: list[int] = []
    cursor = None
    while True:
        page = messages.list_run(run_id, scope=ws.id, limit=PAGE, cursor=cursor)
        transcript.extend(m.seq for m in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert transcript == list(range(1, THREAD + 1))

    # The first page and pages deep in the history are range scans of the same index.
    sqlite = services.db.dialect == "sqlite"
    thread_index = index_on(services.db, "agent_messages", ["agent_id", "seq"])
    for call, bound in (
        (lambda: messages.list(agent.id, limit=PAGE), "agent_id"),
        (lambda: messages.list(agent.id, limit=PAGE, before=thread_cursor(THREAD // 2)), "seq<" if sqlite else "seq <"),
        (lambda: messages.list(agent.id, limit=PAGE, before=thread_cursor(PAGE + 1)), "seq<" if sqlite else "seq <"),
        (lambda: messages.list(agent.id, limit=PAGE, after=thread_cursor(THREAD // 2)), "seq>" if sqlite else "seq >"),
    ):
        assert_range_scan(services.db, plan_of_page_query(services.db, call), thread_index, bound)
    deep_run_cursor = messages.list_run(run_id, limit=PAGE).next_cursor
    for _ in range(THREAD // PAGE // 2 - 1):
        deep_run_cursor = messages.list_run(run_id, limit=PAGE, cursor=deep_run_cursor).next_cursor
    for call, bound in (
        (lambda: messages.list_run(run_id, limit=PAGE), "run_id"),
        (
            lambda: messages.list_run(run_id, limit=PAGE, cursor=deep_run_cursor),
            "(created_at,id)>" if sqlite else "ROW(created_at, id) >",
        ),
    ):
        assert_range_scan(services.db, plan_of_page_query(services.db, call), "ix_agent_messages_run_created", bound)

    # Search is driven by the full-text index, not by reading the workspace's messages.
    assert [m.seq for m in messages.search(ws.id, "9876").items] == [9876]
    plan = plan_of_page_query(services.db, lambda: messages.search(ws.id, "9876"))
    if sqlite:
        assert "SCAN agent_messages_fts VIRTUAL TABLE" in plan and "INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        # The messages queued for the index are matched through its temporary index, not read.
        assert "SCAN temp.agent_messages_fts_unindexed VIRTUAL TABLE INDEX" in plan, plan
    else:
        assert "Bitmap Index Scan on ix_agent_messages_fts" in plan and "Seq Scan" not in plan, plan


def test_newest_first_is_the_default_and_the_last_page_has_no_cursor(
    services: Services, messages: MessageService
) -> None:
    ws = make_workspace(services, "short")
    agent = make_agent(services, ws, "a")
    for text in ("one", "two", "three"):
        messages.append(agent.id, text)
    page = messages.list(agent.id, limit=2)
    assert [m.content for m in page.items] == ["three", "two"]
    last = messages.list(agent.id, limit=2, before=page.next_cursor)
    assert [m.content for m in last.items] == ["one"] and last.next_cursor is None
    exact = messages.list(agent.id, limit=3)
    assert len(exact.items) == 3 and exact.next_cursor is None
    assert messages.list(make_agent(services, ws, "silent").id).items == []


def test_before_and_after_together_or_a_malformed_cursor_is_invalid_input(
    services: Services, messages: MessageService
) -> None:
    ws = make_workspace(services, "cursors")
    agent = make_agent(services, ws, "a")
    with pytest.raises(InvalidInput):
        messages.list(agent.id, before=thread_cursor(5), after=thread_cursor(1))
    for bad in ("not-a-cursor", thread_cursor(-1), "W10"):  # "W10" is base64 of []
        with pytest.raises(InvalidInput):
            messages.list(agent.id, before=bad)
    with pytest.raises(InvalidInput):
        messages.list_run(make_run(services.db, ws), cursor=thread_cursor(3))
    with pytest.raises(InvalidInput):
        messages.list(agent.id, limit=0)


# -- appending -----------------------------------------------------------------------------------
def test_append_numbers_each_thread_and_writes_its_event_in_the_same_transaction(
    services: Services, messages: MessageService
) -> None:
    ws = make_workspace(services, "numbers")
    a, b = make_agent(services, ws, "a"), make_agent(services, ws, "b")
    run_id = make_run(services.db, ws)
    first = messages.append(a.id, "hello", metadata={"client": "test"}, scope=ws.id)
    messages.append(b.id, "hi b")
    reply = messages.append(
        a.id,
        "hello yourself",
        sender="a",
        role="assistant",
        run_id=run_id,
        cause_by="Chat",
        send_to=["user"],
        prompt_tokens=12,
        completion_tokens=3,
        cost=0.001,
        actor="agent:a",
    )
    assert [first.seq, reply.seq, messages.append(b.id, "again").seq] == [1, 2, 2]
    assert first.metadata == {"client": "test"} and first.workspace_id == ws.id and first.run_id is None
    assert (reply.run_id, reply.role, reply.send_to, reply.prompt_tokens) == (run_id, "assistant", ["user"], 12)
    assert messages.list(a.id).items == [reply, first]  # what append returned is what is stored

    events = message_events(services.db)
    assert len(events) == 4
    event = events[0]  # in commit order: the first append's
    assert event.agent_id == a.id and event.run_id is None and event.workspace_id == ws.id
    assert MessagePublic.model_validate(event.payload["message"]) == first
    assert event.payload["actor"] == "user"
    reply_event = next(e for e in events if e.run_id == run_id)
    assert reply_event.payload["message"]["content"] == "hello yourself"
    assert reply_event.payload["actor"] == "agent:a"


def test_a_failed_transaction_leaves_neither_the_message_nor_its_event(
    services: Services, messages: MessageService
) -> None:
    ws = make_workspace(services, "atomic")
    agent = make_agent(services, ws, "a")
    before = len(message_events(services.db))
    with pytest.raises(RuntimeError), services.db.write() as session:
        messages.append_in(session, agent.id, "written, then rolled back")
        raise RuntimeError("the caller failed after appending")
    assert messages.count(agent.id) == 0 and len(message_events(services.db)) == before


def test_append_in_records_a_reply_and_a_status_change_together(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "runtime")
    agent = make_agent(services, ws, "a")
    services.agents.activate(agent.id)
    with services.db.write() as session:
        services.agents.transition_in(session, agent.id, "busy")
        messages.append_in(session, agent.id, "thinking out loud", sender="a", role="assistant", actor="agent:a")
        services.agents.transition_in(session, agent.id, "active")
    assert services.agents.get(agent.id).status == "active"
    assert [m.content for m in messages.list(agent.id).items] == ["thinking out loud"]


def test_empty_or_oversize_content_is_refused_and_writes_nothing(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "refused")
    agent = make_agent(services, ws, "a")
    events = len(message_events(services.db))
    for content, error, says in [
        ("", InvalidInput, "must not be empty"),
        ("   \n\t", InvalidInput, "must not be empty"),
        ("x" * 1001, TooLarge, "1001 characters; the limit is 1000"),
        ("nul \x00 byte", InvalidInput, "NUL"),
    ]:
        with pytest.raises(error, match=says):
            messages.append(agent.id, content)
    assert stored_messages(services.db) == 0 and len(message_events(services.db)) == events
    assert messages.append(agent.id, "x" * 1000).seq == 1  # exactly at the limit is fine


def test_metadata_must_be_a_small_json_object(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "meta")
    agent = make_agent(services, ws, "a")
    for metadata, error in [
        (["not", "an", "object"], InvalidInput),
        ("text", InvalidInput),
        (42, InvalidInput),
        ({"big": "x" * MAX_METADATA_BYTES}, TooLarge),
        ({"nan": float("nan")}, InvalidInput),
        ({"o": object()}, InvalidInput),
        ({"nul": "\x00"}, InvalidInput),
    ]:
        with pytest.raises(error):
            messages.append(agent.id, "hello", metadata=metadata)
    assert stored_messages(services.db) == 0 and message_events(services.db) == []
    nested = {"nested": {"ok": [1, 2.5, None]}}
    assert messages.append(agent.id, "hello", metadata=nested).metadata == nested


def test_json_columns_read_back_what_the_fast_json_reader_refuses(services: Services, messages: MessageService) -> None:
    # JSON columns are read with orjson (storage/db.py), which refuses integers beyond 64 bits;
    # the service no longer stores them, but rows written before it checked can hold them.
    ws = make_workspace(services, "json-read")
    agent = make_agent(services, ws, "a")
    message = messages.append(agent.id, "hello", metadata={"n": 1, "text": "é ✓"})
    assert messages.list(agent.id).items[0].metadata == {"n": 1, "text": "é ✓"}
    legacy = {"big": 10**30, "negative": -(2**70), "list": [1.5, True, None]}
    table = AgentMessage.__table__  # type: ignore[attr-defined]
    with services.db.write() as session:
        session.connection().execute(sa.update(table).where(table.c.id == message.id).values(metadata=legacy))
    assert messages.list(agent.id).items[0].metadata == legacy
    assert json.loads(messages.list_json(agent.id))["items"][0]["metadata"] == legacy


def test_other_fields_are_checked_before_writing(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "fields")
    agent = make_agent(services, ws, "a")
    for bad in (
        {"sender": ""},
        {"role": "r" * 33},
        {"send_to": "everyone"},
        {"prompt_tokens": -1},
        {"cost": float("inf")},
    ):
        with pytest.raises(InvalidInput):
            messages.append(agent.id, "hello", **bad)
    assert stored_messages(services.db) == 0


def test_message_create_schema_is_what_the_api_accepts() -> None:
    assert MessageCreate(content="hi").metadata == {}
    with pytest.raises(ValueError):
        MessageCreate(content="")
    with pytest.raises(ValueError):
        MessageCreate(content="hi", metadata=["x"])  # type: ignore[arg-type]


# -- scoping -------------------------------------------------------------------------------------
def test_another_workspaces_agent_or_run_is_not_found_and_nothing_is_written(
    services: Services, messages: MessageService
) -> None:
    mine, theirs = make_workspace(services, "mine"), make_workspace(services, "theirs")
    agent = make_agent(services, mine, "a")
    foreign_run = make_run(services.db, theirs)
    with pytest.raises(NotFound):
        messages.append(agent.id, "hello", scope=theirs.id)
    with pytest.raises(NotFound):
        messages.append(uuid.uuid4(), "hello")
    with pytest.raises(NotFound):
        messages.append(agent.id, "hello", run_id=foreign_run)
    with services.db.write() as session, pytest.raises(NotFound):
        messages.append_in(session, agent.id, "hello", scope=theirs.id)
    assert stored_messages(services.db) == 0 and message_events(services.db) == []

    messages.append(agent.id, "hello")
    for call in (
        lambda: messages.list(agent.id, scope=theirs.id),
        lambda: messages.count(agent.id, scope=theirs.id),
        lambda: messages.list_run(foreign_run, scope=mine.id),
        lambda: messages.list_run(uuid.uuid4()),
        lambda: messages.search(mine.id, "hello", scope=theirs.id),
        lambda: messages.search(uuid.uuid4(), "hello"),
    ):
        with pytest.raises(NotFound):
            call()


def test_a_run_transcript_interleaves_its_agents_oldest_first(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "team")
    pm, eng = make_agent(services, ws, "pm"), make_agent(services, ws, "engineer")
    run_id = make_run(services.db, ws)
    messages.append(pm.id, "outside the run")
    expected = []
    for i in range(5):
        for agent in (pm, eng):
            expected.append(messages.append(agent.id, f"round {i} from {agent.name}", run_id=run_id).content)
    walked: list[str] = []
    cursor = None
    while True:
        page = messages.list_run(run_id, scope=ws.id, limit=3, cursor=cursor)
        walked.extend(m.content for m in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert walked == expected


# -- search --------------------------------------------------------------------------------------
def test_search_finds_words_within_one_workspace_newest_first(services: Services, messages: MessageService) -> None:
    ws, other_ws = make_workspace(services, "search"), make_workspace(services, "elsewhere")
    a, b = make_agent(services, ws, "a"), make_agent(services, ws, "b")
    stranger = make_agent(services, other_ws, "stranger")
    staging = messages.append(a.id, "Deploy the staging server")
    messages.append(a.id, "The build is green")
    again = messages.append(b.id, "deploy again tomorrow, please")
    rollback = messages.append(a.id, "Rollback the DEPLOY now")
    foreign = messages.append(stranger.id, "deploy in another workspace")

    assert [m.id for m in messages.search(ws.id, "deploy").items] == [rollback.id, again.id, staging.id]
    assert [m.id for m in messages.search(ws.id, "DEPLOY staging").items] == [staging.id]
    assert [m.id for m in messages.search(other_ws.id, "deploy").items] == [foreign.id]
    assert messages.search(ws.id, "kubernetes").items == []

    walked: list[uuid.UUID] = []
    cursor = None
    while True:
        page = messages.search(ws.id, "deploy", limit=2, cursor=cursor)
        walked.extend(m.id for m in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert walked == [rollback.id, again.id, staging.id]


HOSTILE_QUERIES = [
    '"foo OR', "*", "NEAR(", "NEAR(foo bar)", "foo AND", '"', "'", "(", "foo)", "^", "-foo", "content:foo",
    "a:b:c", "\\", "NOT", "'; DROP TABLE agent_messages; --", "foo*", "\x00", "", "   ", "ünïcödé 漢字", "{foo}",
    "foo & bar | !baz", "<->", ":*",
]  # fmt: skip


def test_search_is_safe_with_hostile_input(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "hostile")
    agent = make_agent(services, ws, "a")
    messages.append(agent.id, "foo or bar baz")
    messages.append(agent.id, "near the end")
    for query in HOSTILE_QUERIES:
        page = messages.search(ws.id, query)
        assert all(m.workspace_id == ws.id for m in page.items), query
    assert messages.count(agent.id) == 2  # still there


def test_search_treats_operators_as_words(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "operators")
    agent = make_agent(services, ws, "a")
    either = messages.append(agent.id, "foo or bar baz")
    messages.append(agent.id, "just foo here")
    assert [m.id for m in messages.search(ws.id, '"foo OR').items] == [either.id]
    assert messages.search(ws.id, "*").items == []
    assert messages.search(ws.id, "NEAR(").items == []
    assert [m.id for m in messages.search(ws.id, 'baz"').items] == [either.id]
    with pytest.raises(InvalidInput):
        messages.search(ws.id, "word " * 40)


# -- SQLite: the search index is written in batches (migration 015) ---------------------------
sqlite_only = pytest.mark.skipif(USE_POSTGRES, reason="PostgreSQL's GIN index is updated in each write")


def _pending(db: Database) -> int:
    with db.read() as session:
        return int(session.connection().execute(sa.text(f"SELECT count(*) FROM {FTS_PENDING_TABLE}")).scalar_one())


def _index_queued(db: Database) -> None:
    with db.write() as session:
        index_pending_messages(session.connection())


def _index_matches_the_messages(db: Database) -> None:
    """The queue indexed, then FTS5's own check that its index holds exactly the content table's
    rows (SQLite fails it as 'database disk image is malformed' otherwise), e.g. after a 'delete'
    of a row that was never indexed."""
    with db.write() as session:
        index_pending_messages(session.connection())
        session.connection().execute(
            sa.text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('integrity-check', 1)")
        )


@sqlite_only
def test_a_search_finds_messages_still_waiting_for_the_index(services: Services) -> None:
    messages = MessageService(services.db, search_index_batch=1000)
    ws = make_workspace(services, "pending")
    agent = make_agent(services, ws, "a")
    written = [messages.append(agent.id, f"pending word {i}").id for i in range(5)]
    assert _pending(services.db) == 5  # written, not yet indexed
    _index_queued(services.db)
    written += [messages.append(agent.id, f"pending word {i}").id for i in range(5, 8)]
    assert _pending(services.db) == 3
    # Indexed and queued alike, newest first, one page after the other; the search wrote nothing.
    first = messages.search(ws.id, "pending word", limit=4)
    rest = messages.search(ws.id, "pending word", limit=4, cursor=first.next_cursor)
    assert [m.id for m in first.items + rest.items] == written[::-1] and rest.next_cursor is None
    assert messages.search(ws.id, "word 6").items[0].id == written[6]
    assert _pending(services.db) == 3
    _index_matches_the_messages(services.db)


def test_a_search_never_waits_for_a_writer(services: Services) -> None:
    """Searching reads only (on SQLite too, with messages queued for the index): it answers while
    another thread holds the database's write transaction open."""
    messages = MessageService(services.db, search_index_batch=1000)
    ws = make_workspace(services, "no-wait")
    agent = make_agent(services, ws, "a")
    written = messages.append(agent.id, "queued words")
    holding, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with services.db.write():
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    holding.wait()
    try:
        found: list[Page[MessagePublic]] = []
        searcher = threading.Thread(target=lambda: found.append(messages.search(ws.id, "queued")))
        searcher.start()
        searcher.join(timeout=60)  # only a failure waits this long: the search would be blocked
        assert not searcher.is_alive(), "the search waited for the writer"
        assert [m.id for m in found[0].items] == [written.id]
    finally:
        release.set()
        holder.join()


@sqlite_only
def test_messages_are_indexed_in_batches_inside_the_writes(services: Services) -> None:
    messages = MessageService(services.db, search_index_batch=3)
    ws = make_workspace(services, "batches")
    agent = make_agent(services, ws, "a")
    pending = []
    for i in range(7):
        messages.append(agent.id, f"batch {i}")
        pending.append(_pending(services.db))
    assert pending == [1, 2, 0, 1, 2, 0, 1]


@sqlite_only
def test_the_index_stays_exact_through_deletes_updates_and_reused_rowids(services: Services) -> None:
    messages = MessageService(services.db, search_index_batch=1000)
    ws = make_workspace(services, "exact")
    agent = make_agent(services, ws, "a")
    table = AgentMessage.__table__  # type: ignore[attr-defined]

    def edit(message_id: uuid.UUID, content: str | None) -> None:
        with services.db.write() as session:  # no service edits or deletes one message: the index follows anyway
            where = table.c.id == message_id
            statement = sa.delete(table) if content is None else sa.update(table).values(content=content)
            session.connection().execute(statement.where(where))

    def found(words: str) -> list[str]:
        return [m.content for m in messages.search(ws.id, words).items]

    indexed = [messages.append(agent.id, f"indexed {word}").id for word in ("alpha", "beta", "gamma")]
    _index_queued(services.db)
    assert len(found("indexed")) == 3 and _pending(services.db) == 0
    waiting = [messages.append(agent.id, f"waiting {word}").id for word in ("delta", "epsilon")]
    edit(waiting[1], None)  # deleted before it was ever indexed: FTS5 must not be told to delete it
    edit(waiting[0], "waiting changed")  # changed while waiting: indexed with what it says now
    edit(indexed[0], "indexed renamed")  # changed after indexing: out of the index, then in again
    edit(indexed[1], None)
    assert sorted(found("indexed")) == ["indexed gamma", "indexed renamed"]
    assert found("waiting") == ["waiting changed"] and found("delta") == found("epsilon") == []
    _index_matches_the_messages(services.db)

    # SQLite gives the next row the rowid of the newest one deleted: queued again, with new words.
    newest = messages.append(agent.id, "newest zeta")
    _index_queued(services.db)
    assert found("zeta") == ["newest zeta"] and _pending(services.db) == 0
    edit(newest.id, None)
    messages.append(agent.id, "reused eta")
    assert found("zeta") == [] and found("eta") == ["reused eta"]
    _index_matches_the_messages(services.db)


def test_search_follows_updates_and_deletes(services: Services, messages: MessageService) -> None:
    ws = make_workspace(services, "sync")
    keep, gone = make_agent(services, ws, "keep"), make_agent(services, ws, "gone")
    kept = messages.append(keep.id, "quarterly report draft")
    for i in range(3):
        messages.append(gone.id, f"quarterly numbers {i}")
    assert len(messages.search(ws.id, "quarterly").items) == 4

    services.agents.delete(gone.id)  # its thread goes by ON DELETE CASCADE
    assert [m.id for m in messages.search(ws.id, "quarterly").items] == [kept.id]

    with services.db.write() as session:  # no service edits content; the index must follow anyway
        session.execute(
            sa.update(AgentMessage).where(col(AgentMessage.id) == kept.id).values(content="annual summary final")
        )
    assert messages.search(ws.id, "quarterly").items == []
    assert [m.id for m in messages.search(ws.id, "annual").items] == [kept.id]

    services.workspaces.delete(ws.id)
    other = make_workspace(services, "after")
    assert messages.search(other.id, "annual").items == []
