"""The event log and the live bus (SPEC §5), on the real database (SQLite or PostgreSQL).

Every await on a subscription runs under `asyncio.timeout`, so a broken bus fails a test instead
of hanging it. "Exactly once" is checked by appending an end marker afterwards: the next event a
subscriber gets must be that marker, so nothing was duplicated or left behind.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import Database
from core.events import (
    NOTIFY_CHANNEL,
    REPLAY_PAGE,
    EventBus,
    EventFilter,
    EventOut,
    EventType,
    Subscription,
    append_event,
    head_seq,
    purge_events_older_than,
    read_events,
)
from core.schemas import WorkspaceCreate, WorkspacePublic
from core.services import Services
from core.workspaces import WorkspaceService
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import Event
from storage.types import utcnow
from tests.db import create_pg_database, drop_pg_database

TIMEOUT = 10.0


# -- helpers -------------------------------------------------------------------------------------
def make_workspace(services: Services, slug: str) -> WorkspacePublic:
    return services.workspaces.create(WorkspaceCreate(slug=slug))


def append(
    db: Database,
    workspace_id: uuid.UUID,
    n: int = 1,
    *,
    agent_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    **data: object,
) -> list[int]:
    """Append `n` events in one write transaction; returns their seqs."""
    with db.write() as session:
        rows = [
            append_event(
                session,
                EventType.AGENT_ACTIVITY,
                workspace_id,
                {"activity": "testing", "agent_name": "tester", "i": i, **data},
                agent_id=agent_id or uuid.uuid4(),
                run_id=run_id,
            )
            for i in range(n)
        ]
    return [row.seq for row in rows]


def append_each(db: Database, workspace_id: uuid.UUID, n: int) -> list[int]:
    """Append `n` events, one write transaction each."""
    return [seq for _ in range(n) for seq in append(db, workspace_id)]


def current_head(db: Database) -> int:
    with db.read() as session:
        return head_seq(session)


def persisted(db: Database, flt: EventFilter | None = None, since: int = 0) -> list[EventOut]:
    with db.read() as session:
        return read_events(session, flt or EventFilter(), since, 100_000)


async def next_event(it: AsyncIterator[EventOut]) -> EventOut:
    async with asyncio.timeout(TIMEOUT):
        return await anext(it)


async def take(it: AsyncIterator[EventOut], n: int) -> list[EventOut]:
    async with asyncio.timeout(TIMEOUT):
        return [await anext(it) for _ in range(n)]


async def take_until(it: AsyncIterator[EventOut], last_seq: int) -> list[EventOut]:
    """Events up to and including the one with `last_seq` (fails if it never comes)."""
    got: list[EventOut] = []
    async with asyncio.timeout(TIMEOUT):
        while not got or got[-1].seq is None or got[-1].seq < last_seq:
            got.append(await anext(it))
    return got


async def take_until_marker(it: AsyncIterator[EventOut]) -> list[EventOut]:
    """Events up to and including the first one whose data has `end`."""
    got: list[EventOut] = []
    async with asyncio.timeout(TIMEOUT):
        while not got or not got[-1].data.get("end"):
            got.append(await anext(it))
    return got


async def assert_next_is_marker(db: Database, it: AsyncIterator[EventOut], workspace_id: uuid.UUID) -> None:
    """Nothing is pending for this subscriber: the next event it gets is a fresh end marker."""
    [marker] = await asyncio.to_thread(append, db, workspace_id, end=True)
    event = await next_event(it)
    assert (event.seq, event.data.get("end")) == (marker, True)


def seqs_of(events: list[EventOut]) -> list[int | None]:
    return [e.seq for e in events]


# -- the log: seq ------------------------------------------------------------------------------
async def test_seq_is_gap_free_across_transactions_and_a_rolled_back_append_is_neither_stored_nor_delivered(
    live_services: Services,
) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "seq")
    base = current_head(db)
    async with bus.subscribe(EventFilter(workspace_id=ws.id)) as sub:
        it = aiter(sub)
        seqs = append(db, ws.id, 3) + append(db, ws.id, 1) + append(db, ws.id, 2)
        assert seqs == list(range(base + 1, base + 7))

        with pytest.raises(RuntimeError, match="boom"), db.write() as session:
            append_event(session, EventType.AGENT_ACTIVITY, ws.id, {"activity": "doomed", "agent_name": "tester"})
            append_event(session, EventType.AGENT_ACTIVITY, ws.id, {"activity": "doomed", "agent_name": "tester"})
            session.flush()  # the rows really reached the database before the rollback
            raise RuntimeError("boom")

        assert current_head(db) == base + 6
        after = append(db, ws.id, 2)
        assert after == [base + 7, base + 8]  # no hole where the rolled-back events were

        got = await take(it, 8)
        assert seqs_of(got) == list(range(base + 1, base + 9))
        assert not any(e.data.get("doomed") for e in got)
        await assert_next_is_marker(db, it, ws.id)

    stored = persisted(db, since=base)
    assert seqs_of(stored) == list(range(base + 1, base + 10))
    assert not any(e.data.get("doomed") for e in stored)


async def test_concurrent_writers_get_unique_contiguous_seqs_and_a_live_subscriber_sees_each_once_in_order(
    live_services: Services,
) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "concurrent")
    threads, transactions = 4, 50
    rng = random.Random(5)
    plan = [[rng.randint(1, 3) for _ in range(transactions)] for _ in range(threads)]
    total = sum(map(sum, plan))
    base = current_head(db)
    barrier = threading.Barrier(threads, timeout=TIMEOUT)

    def writer(t: int) -> list[int]:
        barrier.wait()
        mine: list[int] = []
        for n in plan[t]:
            seqs = append(db, ws.id, n, thread=t)
            # A transaction's events are consecutive: writers never interleave inside one.
            assert seqs == list(range(seqs[0], seqs[0] + n))
            mine.extend(seqs)
        return mine

    async with bus.subscribe(EventFilter(workspace_id=ws.id)) as sub:
        it = aiter(sub)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(threads) as pool:
            writing = asyncio.gather(*(loop.run_in_executor(pool, writer, t) for t in range(threads)))
            got = await take(it, total)
            async with asyncio.timeout(TIMEOUT):
                per_thread = await writing

        all_seqs = sorted(seq for seqs in per_thread for seq in seqs)
        assert all_seqs == list(range(base + 1, base + total + 1))  # unique and contiguous
        assert all(seqs == sorted(seqs) for seqs in per_thread)
        assert seqs_of(got) == all_seqs  # every event once, in seq order
        assert seqs_of(persisted(db, since=base)) == all_seqs
        await assert_next_is_marker(db, it, ws.id)


# -- resume --------------------------------------------------------------------------------------
async def test_resume_since_k_replays_exactly_the_events_after_k_then_live_without_duplicates(
    live_services: Services,
) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "resume")
    base = current_head(db)
    backlog = 2 * REPLAY_PAGE + 200
    async with bus.subscribe(EventFilter()) as probe:
        for _ in range(4):
            last = append(db, ws.id, backlog // 4)[-1]
        # The bus is past the backlog: only reading the log, page after page, can deliver it.
        await take_until(aiter(probe), last)
    k = base + 100

    async with bus.subscribe(EventFilter(workspace_id=ws.id), since=k) as sub:
        it = aiter(sub)
        got = [await next_event(it)]
        assert got[0].seq == k + 1
        # Appended while the first replay page is being consumed ...
        await asyncio.to_thread(append, db, ws.id, 30)
        got += await take(it, REPLAY_PAGE + 50)
        # ... and while the second page is.
        last = (await asyncio.to_thread(append, db, ws.id, 30))[-1]
        got += await take_until(it, last)
        assert last == base + backlog + 60
        # Replay is over: what comes next is live.
        live = await asyncio.to_thread(append_each, db, ws.id, 5)
        got += await take(it, 5)

        assert seqs_of(got) == list(range(k + 1, live[-1] + 1))
        await assert_next_is_marker(db, it, ws.id)


async def test_resuming_during_a_burst_that_overflows_the_queue_still_gets_every_event_once_without_resume(
    live_services: Services,
) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "resume-burst")
    base = current_head(db)
    append(db, ws.id, REPLAY_PAGE + 100)
    async with bus.subscribe(EventFilter(workspace_id=ws.id), since=base, maxsize=5) as sub:
        it = aiter(sub)
        got = [await next_event(it)]
        # Live events overflow its small queue while it is still replaying: it is not slow, it
        # just has the log to read, so it must not be told to resume.
        burst = await asyncio.to_thread(append_each, db, ws.id, 50)
        got += await take_until(it, burst[-1])
        assert seqs_of(got) == list(range(base + 1, burst[-1] + 1))
        await assert_next_is_marker(db, it, ws.id)


async def test_resume_since_the_head_replays_nothing_and_continues_live(live_services: Services) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "resume-head")
    head = append(db, ws.id, 3)[-1]
    async with bus.subscribe(EventFilter(workspace_id=ws.id), since=head) as sub:
        it = aiter(sub)
        await assert_next_is_marker(db, it, ws.id)


# -- filtering -----------------------------------------------------------------------------------
async def test_a_workspace_subscriber_never_sees_another_workspaces_events_live_or_replayed(
    live_services: Services,
) -> None:
    db, bus = live_services.db, live_services.bus
    a = make_workspace(live_services, "ws-a")
    b = make_workspace(live_services, "ws-b")
    base = current_head(db)
    history_a: list[int] = []
    async with bus.subscribe(EventFilter()) as probe:
        for _ in range(10):
            history_a += append(db, a.id)
            last_b = append(db, b.id)
        # Once the bus has delivered the history, a subscriber "from now" must not get it.
        await take_until(aiter(probe), last_b[-1])

    only_a, only_b = EventFilter(workspace_id=a.id), EventFilter(workspace_id=b.id)
    async with (
        bus.subscribe(only_a) as live_a,
        bus.subscribe(only_a, since=base) as replay_a,
        bus.subscribe(only_b, since=base) as replay_b,
    ):
        live_a_it, replay_a_it, replay_b_it = aiter(live_a), aiter(replay_a), aiter(replay_b)
        live_seqs_a: list[int] = []
        live_seqs_b: list[int] = []
        for _ in range(10):
            live_seqs_b += append(db, b.id)
            live_seqs_a += append(db, a.id)
        end_b = append(db, b.id, end=True)
        end_a = append(db, a.id, end=True)

        got_live_a = await take_until_marker(live_a_it)
        got_replay_a = await take_until_marker(replay_a_it)
        got_replay_b = await take_until_marker(replay_b_it)

    assert {e.workspace_id for e in got_live_a + got_replay_a} == {a.id}
    assert {e.workspace_id for e in got_replay_b} == {b.id}
    assert seqs_of(got_live_a) == live_seqs_a + end_a
    assert seqs_of(got_replay_a) == history_a + live_seqs_a + end_a
    assert len(got_replay_b) == 10 + 10 + 1
    assert seqs_of(got_replay_b)[-11:] == live_seqs_b + end_b
    assert {e.workspace_id for e in persisted(db, only_a, since=base)} == {a.id}


async def test_agent_and_run_filters_select_only_their_events_live_and_replayed(live_services: Services) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "filters")
    alice, bob, run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    base = current_head(db)
    by_alice, by_bob = EventFilter(workspace_id=ws.id, agent_id=alice), EventFilter(agent_id=bob)
    of_run = EventFilter(workspace_id=ws.id, run_id=run)
    async with (
        bus.subscribe(by_alice) as alice_live,
        bus.subscribe(by_bob) as bob_live,
        bus.subscribe(of_run) as run_live,
    ):
        a1 = append(db, ws.id, agent_id=alice, run_id=run)
        a2 = append(db, ws.id, agent_id=alice)
        b1 = append(db, ws.id, agent_id=bob, run_id=run)
        b2 = append(db, ws.id, agent_id=bob)
        # Other runs and agents that must not show up anywhere.
        append(db, ws.id, 2, run_id=uuid.uuid4())
        end_alice = append(db, ws.id, agent_id=alice, run_id=run, end=True)
        end_bob = append(db, ws.id, agent_id=bob, end=True)

        expected_alice = a1 + a2 + end_alice
        expected_bob = b1 + b2 + end_bob
        expected_run = a1 + b1 + end_alice
        assert seqs_of(await take_until_marker(aiter(alice_live))) == expected_alice
        assert seqs_of(await take_until_marker(aiter(bob_live))) == expected_bob
        assert seqs_of(await take_until_marker(aiter(run_live))) == expected_run

    for flt, expected in ((by_alice, expected_alice), (by_bob, expected_bob), (of_run, expected_run)):
        async with bus.subscribe(flt, since=base) as replay:
            assert seqs_of(await take_until_marker(aiter(replay))) == expected
        assert seqs_of(persisted(db, flt, since=base)) == expected

    only_created = EventFilter(workspace_id=ws.id, types=frozenset({EventType.AGENT_CREATED}))
    assert persisted(db, only_created, since=base) == []


# -- slow subscribers ---------------------------------------------------------------------------
async def test_a_slow_subscriber_never_blocks_writers_or_others_and_resumes_with_every_event_once(
    live_services: Services,
) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "slow")
    flt = EventFilter(workspace_id=ws.id)
    async with bus.subscribe(flt, maxsize=2) as slow, bus.subscribe(flt) as fast:
        slow_it, fast_it = aiter(slow), aiter(fast)
        since = slow.last_seq
        # The fast subscriber reads while the writes happen; the slow one reads nothing.
        fast_reader = asyncio.create_task(take(fast_it, 100))
        async with asyncio.timeout(TIMEOUT):  # writes complete although nobody drains `slow`
            seqs = await asyncio.to_thread(append_each, db, ws.id, 100)
        async with asyncio.timeout(TIMEOUT):
            fast_got = await fast_reader
        # The pump offers each event to every subscriber at once, so all 100 were offered to `slow`.
        assert seqs_of(fast_got) == seqs
        assert slow.queue.qsize() <= 2  # its queue stayed bounded

        marker = await next_event(slow_it)
        assert marker.type == EventType.RESUME
        assert marker.seq is None
        assert marker.workspace_id == ws.id
        assert marker.data == {"since": since}

        got = await take_until(slow_it, seqs[-1])
        assert seqs_of(got) == seqs  # every persisted event, once, in order
        [end] = await asyncio.to_thread(append, db, ws.id, end=True)
        assert (await next_event(slow_it)).seq == end
        assert (await next_event(fast_it)).seq == end


# -- pushed-only events --------------------------------------------------------------------------
async def test_llm_tokens_are_pushed_live_to_matching_subscribers_and_never_stored(live_services: Services) -> None:
    db, bus = live_services.db, live_services.bus
    a = make_workspace(live_services, "tok-a")
    b = make_workspace(live_services, "tok-b")
    alice, other = uuid.uuid4(), uuid.uuid4()
    base = current_head(db)
    async with (
        bus.subscribe(EventFilter(workspace_id=a.id)) as sub_a,
        bus.subscribe(EventFilter(workspace_id=b.id)) as sub_b,
        bus.subscribe(EventFilter(workspace_id=a.id, agent_id=other)) as sub_other,
    ):
        it_a, it_b, it_other = aiter(sub_a), aiter(sub_b), aiter(sub_other)
        bus.publish_ephemeral(EventType.LLM_TOKEN, b.id, {"text": "bee", "agent_name": "tester"}, agent_id=uuid.uuid4())
        bus.publish_ephemeral(EventType.LLM_TOKEN, a.id, {"text": "Hel", "agent_name": "tester"}, agent_id=alice)
        # From a worker thread too, as the agent runtime does.
        await asyncio.to_thread(
            bus.publish_ephemeral, EventType.LLM_TOKEN, a.id, {"text": "lo", "agent_name": "tester"}, agent_id=alice
        )

        got_a = await take(it_a, 2)
        assert [(e.type, e.seq, e.agent_id, e.data["text"]) for e in got_a] == [
            (EventType.LLM_TOKEN, None, alice, "Hel"),
            (EventType.LLM_TOKEN, None, alice, "lo"),
        ]
        assert {e.workspace_id for e in got_a} == {a.id}
        token_b = await next_event(it_b)
        assert (token_b.type, token_b.workspace_id, token_b.data) == (
            EventType.LLM_TOKEN,
            b.id,
            {"text": "bee", "agent_name": "tester"},
        )

        # Another agent's subscriber got no token: its next event is a persisted one for it.
        [end] = append(db, a.id, agent_id=other, end=True)
        assert (await next_event(it_other)).seq == end
        assert (await next_event(it_a)).seq == end
        await assert_next_is_marker(db, it_b, b.id)

    stored = persisted(db, since=base)
    assert EventType.LLM_TOKEN not in {e.type for e in stored}
    assert len(stored) == 2  # the two end markers, nothing else

    with pytest.raises(ValueError, match="llm_token"), db.write() as session:
        append_event(session, EventType.LLM_TOKEN, a.id, {"text": "x"})
    assert current_head(db) == stored[-1].seq


# -- unsubscribe ---------------------------------------------------------------------------------
async def test_closing_a_subscription_removes_it_and_it_receives_nothing_more(live_services: Services) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "close")
    flt = EventFilter(workspace_id=ws.id)
    before = bus.subscriber_count

    sub = bus.subscribe(flt)
    assert bus.subscriber_count == before + 1
    sub.close()
    sub.close()  # idempotent
    assert bus.subscriber_count == before
    append(db, ws.id, 3)
    async with asyncio.timeout(TIMEOUT):
        assert [e async for e in sub] == []

    async with bus.subscribe(flt) as scoped:
        assert bus.subscriber_count == before + 1
    assert bus.subscriber_count == before
    assert scoped.closed

    # A consumer blocked waiting for the next event is woken by close() and its loop ends.
    waiting = bus.subscribe(flt, since=current_head(db))
    received: list[EventOut] = []
    first_seen = asyncio.Event()

    async def consume(s: Subscription) -> None:
        async for event in s:
            received.append(event)
            first_seen.set()

    consumer = asyncio.create_task(consume(waiting))
    [first] = append(db, ws.id)
    async with asyncio.timeout(TIMEOUT):
        await first_seen.wait()
    waiting.close()
    async with asyncio.timeout(TIMEOUT):
        await consumer
    append(db, ws.id, 2)
    assert bus.subscriber_count == before
    assert seqs_of(received) == [first]


async def test_a_closed_replaying_subscription_stops_mid_replay(live_services: Services) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "close-replay")
    base = current_head(db)
    append(db, ws.id, 20)
    async with bus.subscribe(EventFilter(workspace_id=ws.id), since=base) as sub:
        received: list[EventOut] = []
        async with asyncio.timeout(TIMEOUT):
            async for event in sub:
                received.append(event)
                if len(received) == 5:
                    sub.close()
    assert seqs_of(received) == list(range(base + 1, base + 6))


# -- lifecycle ----------------------------------------------------------------------------------
async def test_the_bus_stops_even_when_a_commit_wakes_it_at_the_same_moment(services: Services) -> None:
    db = services.db
    ws = make_workspace(services, "stop-race")
    # A commit schedules the pump's wake-up; stopping a few loop turns later lands the cancel in
    # every phase of that wake-up (one of them is where asyncio.wait_for loses a cancel on 3.11).
    for turns in range(8):
        bus = EventBus(db, poll_interval=30)
        await bus.start()
        append(db, ws.id)
        for _ in range(turns):
            await asyncio.sleep(0)
        async with asyncio.timeout(TIMEOUT):
            await bus.stop()
        assert not bus.running


# -- retention -----------------------------------------------------------------------------------
def _age(db: Database, seqs: list[int], days: int) -> None:
    with db.write() as session:
        stmt = sa.update(Event).where(col(Event.seq).in_(seqs)).values(created_at=utcnow() - timedelta(days=days))
        session.exec(stmt)  # type: ignore[call-overload]


def test_purge_deletes_only_events_older_than_the_cutoff_and_zero_keeps_everything(services: Services) -> None:
    db = services.db
    ws = make_workspace(services, "retention")
    old = append(db, ws.id, 3)
    middle = append(db, ws.id, 2)
    new = append(db, ws.id, 2)
    _age(db, old, 30)
    _age(db, middle, 5)

    assert purge_events_older_than(db, 0) == 0
    assert seqs_of(persisted(db)) == old + middle + new

    assert purge_events_older_than(db, 10) == 3
    assert seqs_of(persisted(db)) == middle + new
    assert purge_events_older_than(db, 10) == 0

    assert purge_events_older_than(db, 3) == 2
    assert seqs_of(persisted(db)) == new
    assert append(db, ws.id) == [new[-1] + 1]


async def test_purging_every_old_event_keeps_the_newest_so_seq_never_restarts(live_services: Services) -> None:
    db, bus = live_services.db, live_services.bus
    ws = make_workspace(live_services, "retention-all")
    async with bus.subscribe(EventFilter(workspace_id=ws.id)) as sub:
        it = aiter(sub)
        seqs = append(db, ws.id, 4)
        assert seqs_of(await take(it, 4)) == seqs  # the pump has read up to seqs[-1]
        _age(db, seqs, 60)

        assert purge_events_older_than(db, 30) == 3
        assert seqs_of(persisted(db)) == seqs[-1:]
        [fresh] = append(db, ws.id)
        assert fresh == seqs[-1] + 1
        assert (await next_event(it)).seq == fresh  # the running pump still sees new events


# -- PostgreSQL: several processes ---------------------------------------------------------------
@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database of its own (PostgreSQL is always available for the suite)."""
    url = create_pg_database("agentdeck_events")
    try:
        engine = make_engine(url)
        upgrade(engine, url)
        engine.dispose()
        yield url
    finally:
        drop_pg_database(url)


async def _wait_for_listeners(db: Database, n: int) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = :q"
    ).bindparams(q=f"LISTEN {NOTIFY_CHANNEL}")

    def count() -> int:
        with db.read() as session:
            return int(session.connection().execute(query).scalar_one())

    async with asyncio.timeout(TIMEOUT):
        while await asyncio.to_thread(count) < n:  # noqa: ASYNC110 - another connection's state
            await asyncio.sleep(0.05)


async def test_postgres_a_commit_in_one_process_reaches_subscribers_of_another_through_notify(pg_url: str) -> None:
    db1, db2 = Database(pg_url), Database(pg_url)  # two processes: nothing shared but the database
    bus1 = EventBus(db1)
    bus2 = EventBus(db2, poll_interval=30)  # far beyond the timeout: only NOTIFY can wake it in time
    await bus1.start()
    await bus2.start()
    try:
        ws = WorkspaceService(db1).create(WorkspaceCreate(slug="two-procs"))
        await _wait_for_listeners(db1, 2)
        flt = EventFilter(workspace_id=ws.id)
        async with bus1.subscribe(flt) as sub1, bus2.subscribe(flt) as sub2:
            it1, it2 = aiter(sub1), aiter(sub2)
            seqs = await asyncio.to_thread(append, db1, ws.id, 3)
            assert seqs_of(await take(it2, 3)) == seqs
            assert seqs_of(await take(it1, 3)) == seqs

            # And the other way round, for a second transaction.
            more = await asyncio.to_thread(append, db2, ws.id, 2)
            assert seqs_of(await take(it1, 2)) == more
            assert seqs_of(await take(it2, 2)) == more

            # Woken by both its own commit hook and NOTIFY, each bus still delivers once.
            [end] = await asyncio.to_thread(append, db1, ws.id, end=True)
            assert (await next_event(it1)).seq == end
            assert (await next_event(it2)).seq == end
    finally:
        await bus1.stop()
        await bus2.stop()
        db1.dispose()
        db2.dispose()
