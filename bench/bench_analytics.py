"""Analytics on a large history: every aggregate reads an index, and what it costs, measured.

    uv run python bench/bench_analytics.py                      # SQLite, 1,000,000 messages
    uv run python bench/bench_analytics.py --messages 200000 --status-changes 20000
    uv run python bench/bench_analytics.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

One database holds two workspaces over the same 90 days: a small history (1% of the large one)
and the large one (default 1,000,000 messages and 100,000 status changes, 40 agents). For every
SQL statement the analytics page runs (AnalyticsService.dashboard, captured as executed), it
prints the plan on the large history and fails if agent_messages or agent_status_changes is
read without an index. Then it times the page's whole data load per range (24 h, 7 d, 30 d, 90 d)
on both histories, with the rows in range and the ratio large/small in the same run.

What to expect: an aggregate over a range is one index range scan (index-only, through the
covering indexes of migration 007), so its cost follows the rows *in the range* (plus buckets x
agents), not the size of the history: compare the 24 h range of the large history with the 90 d
range of the small one (similar row counts). A range covering (nearly) a whole PostgreSQL table
may be read by a sequential scan when the planner finds that cheaper; the plan check therefore
uses the 30-day range, like the page's largest preset.

Measured on a shared 2-core machine (1,000,000 messages, 100,000 status changes, 90 days):

    range   rows in range   SQLite ms   PostgreSQL 15 ms
    24 h         11,103          27            30
    7 d          77,770          99            53
    30 d        333,328         480           175
    90 d      1,000,000        1342           570

The test suite (tests/test_analytics.py) checks the same plans on a 50,000-message history,
which is large enough for both planners to choose the indexes and fast enough to generate in a
test; a million rows is this benchmark's job.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pagination import median_ms
from core.analytics import AnalyticsService
from core.analytics_schemas import AnalyticsQuery
from core.config import Settings
from core.db import Database
from core.registry import sync_definitions
from core.schemas import WorkspaceCreate
from core.services import build_services
from storage.migrate import upgrade
from storage.models import AgentDefinition, AgentInstance
from storage.types import utcnow

BIG_TABLES = ("agent_messages", "agent_status_changes")
STATUS_CYCLE = ("active", "busy", "active", "busy", "error", "active", "offline", "idle")


# -- generating a history in the database (no rows through Python) ----------------------------
def make_agents(db: Database, workspace_id: uuid.UUID, count: int, prefix: str = "agent") -> list[uuid.UUID]:
    """`count` fresh agents (no messages yet, so message seq starts at 1)."""
    with db.write() as session:
        definition = session.execute(sa.select(AgentDefinition.id).where(AgentDefinition.slug == "assistant")).one()[0]
        ids = [uuid.uuid4() for _ in range(count)]
        session.add_all(
            AgentInstance(
                id=agent_id,
                workspace_id=workspace_id,
                definition_id=definition,
                name=f"{prefix}-{i:03d}",
                status="active",
            )
            for i, agent_id in enumerate(ids)
        )
    return ids


def generate_history(
    db: Database,
    workspace_id: uuid.UUID,
    agent_ids: list[uuid.UUID],
    *,
    messages: int,
    status_changes: int,
    start: datetime,
    end: datetime,
) -> None:
    """Insert `messages` messages and `status_changes` status changes spread evenly over
    [start, end), round-robin over the agents, with tokens and costs, by INSERT ... SELECT from
    a generated series inside the database (one transaction; a million rows in seconds)."""
    span = (end - start).total_seconds()
    with db.write() as session:
        if messages:
            session.execute(*_insert_messages(db.dialect, workspace_id, agent_ids, messages, start, span))
        if status_changes:
            session.execute(*_insert_status_changes(db.dialect, workspace_id, agent_ids, status_changes, start, span))


def _agents_values(dialect: str, agent_ids: list[uuid.UUID]) -> str:
    if dialect == "postgresql":
        rows = ", ".join(f"({i}, '{a}'::uuid)" for i, a in enumerate(agent_ids))
    else:  # SQLAlchemy's Uuid is 32 hex characters on SQLite
        rows = ", ".join(f"({i}, '{a.hex}')" for i, a in enumerate(agent_ids))
    return f"agents(idx, id) AS (VALUES {rows})"


def _series(dialect: str, count: int) -> str:
    if dialect == "postgresql":
        return f"n(i) AS (SELECT generate_series(0, {count - 1}))"
    return f"n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count})"


def _time(dialect: str, step: float) -> str:
    """The i-th instant: start + i * step seconds, in the column's stored form."""
    if dialect == "postgresql":
        return f"(CAST(:start AS timestamptz) + make_interval(secs => n.i * {step!r}))"
    # Naive UTC text with microseconds, exactly as SQLAlchemy stores it on SQLite.
    return f"(strftime('%Y-%m-%d %H:%M:%S', :start, '+' || CAST(n.i * {step!r} AS INTEGER) || ' seconds') || '.000000')"


def _start_param(dialect: str, start: datetime) -> str:
    if dialect == "postgresql":
        return start.isoformat()
    return start.strftime("%Y-%m-%d %H:%M:%S")


def _insert_messages(
    dialect: str, workspace_id: uuid.UUID, agent_ids: list[uuid.UUID], count: int, start: datetime, span: float
) -> tuple[Any, dict[str, Any]]:
    k = len(agent_ids)
    at = _time(dialect, span / count)
    if dialect == "postgresql":
        new_id, ws, empty_list, empty_obj = "gen_random_uuid()", f"'{workspace_id}'::uuid", "'[]'::jsonb", "'{}'::jsonb"
        recursive = ""
    else:
        new_id, ws, empty_list, empty_obj = "lower(hex(randomblob(16)))", f"'{workspace_id.hex}'", "'[]'", "'{}'"
        recursive = "RECURSIVE "
    sql = f"""
        INSERT INTO agent_messages (id, workspace_id, agent_id, run_id, seq, sender, role, content, cause_by,
                                    send_to, metadata, prompt_tokens, completion_tokens, cost, created_at, updated_at)
        WITH {recursive}{_series(dialect, count)}, {_agents_values(dialect, agent_ids)}
        SELECT {new_id}, {ws}, agents.id, NULL, n.i / {k} + 1, 'bench', 'assistant',
               'generated message ' || n.i, '', {empty_list}, {empty_obj},
               n.i % 700, n.i % 300, (n.i % 100) / 10000.0, {at}, {at}
        FROM n JOIN agents ON agents.idx = n.i % {k}
    """
    return sa.text(sql), {"start": _start_param(dialect, start)}


def _insert_status_changes(
    dialect: str, workspace_id: uuid.UUID, agent_ids: list[uuid.UUID], count: int, start: datetime, span: float
) -> tuple[Any, dict[str, Any]]:
    k = len(agent_ids)
    at = _time(dialect, span / count)
    cycle = ", ".join(f"({i}, '{s}')" for i, s in enumerate(STATUS_CYCLE))
    if dialect == "postgresql":
        new_id, ws, recursive = "gen_random_uuid()", f"'{workspace_id}'::uuid", ""
    else:
        new_id, ws, recursive = "lower(hex(randomblob(16)))", f"'{workspace_id.hex}'", "RECURSIVE "
    sql = f"""
        INSERT INTO agent_status_changes (id, workspace_id, agent_id, from_status, to_status, reason, actor,
                                          at, created_at, updated_at)
        WITH {recursive}{_series(dialect, count)}, {_agents_values(dialect, agent_ids)},
             cycle(idx, status) AS (VALUES {cycle})
        SELECT {new_id}, {ws}, agents.id, NULL, cycle.status, 'generated', 'bench', {at}, {at}, {at}
        FROM n JOIN agents ON agents.idx = n.i % {k}
               JOIN cycle ON cycle.idx = (n.i / {k}) % {len(STATUS_CYCLE)}
    """
    return sa.text(sql), {"start": _start_param(dialect, start)}


def analyze(db: Database) -> None:
    """Planner statistics, as a live database has them (autovacuum on PostgreSQL; on SQLite, the
    numbers `ANALYZE` / `PRAGMA optimize` keep)."""
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) agent_messages, agent_status_changes, agent_instances, runs")
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# -- what the database does with each statement ------------------------------------------------
@contextmanager
def captured_statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every (SQL, parameters) the engine sends while the block runs."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def explain(db: Database, statement: str, parameters: Any) -> list[str]:
    """The plan of one captured statement, one line per step."""
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            return [r[0] for r in rows]
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return [r[-1] for r in rows]


def unindexed_reads(dialect: str, plan: list[str]) -> list[str]:
    """The plan lines that read agent_messages or agent_status_changes without an index."""
    bad = []
    for line in plan:
        text = line.strip()
        for table in BIG_TABLES:
            if dialect == "postgresql":
                if f"Seq Scan on {table}" in text:
                    bad.append(text)
            elif (text.startswith(f"SCAN {table}") and "INDEX" not in text) or text == f"SCAN {table}":
                bad.append(text)
    return bad


def full_index_scans(dialect: str, plan: list[str]) -> list[str]:
    """SQLite plan lines that walk a whole index of a big table (no range seek)."""
    if dialect == "postgresql":
        return []
    return [line for line in plan if any(line.strip().startswith(f"SCAN {t} ") for t in BIG_TABLES)]


# -- the benchmark -----------------------------------------------------------------------------


def rows_in_range(db: Database, workspace_id: uuid.UUID, since: datetime, until: datetime) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM agent_messages WHERE workspace_id = :w AND created_at >= :s AND created_at < :u"
                ),
                {
                    "w": workspace_id if db.dialect == "postgresql" else workspace_id.hex,
                    "s": _db_time(db, since),
                    "u": _db_time(db, until),
                },
            ).scalar_one()
        )


def _db_time(db: Database, value: datetime) -> Any:
    return value if db.dialect == "postgresql" else value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--status-changes", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-bench-analytics-"))
    settings = Settings(data_dir=tmp, database_url=args.database_url)
    services = build_services(settings)
    upgrade(services.db.engine, settings.resolved_database_url)
    sync_definitions(services.db)
    db, analytics = services.db, AnalyticsService(services.db)

    now = utcnow().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=args.days)
    histories: dict[str, uuid.UUID] = {}
    for label, share in (("small", 0.01), ("large", 1.0)):
        ws = services.workspaces.create(WorkspaceCreate(slug=f"bench-{label}-{uuid.uuid4().hex[:6]}"))
        agents = make_agents(db, ws.id, args.agents)
        n_messages, n_status = int(args.messages * share), int(args.status_changes * share)
        started = time.perf_counter()
        generate_history(
            db, ws.id, agents, messages=n_messages, status_changes=n_status, start=start, end=now - timedelta(minutes=1)
        )
        print(
            f"{db.dialect}: {label} history: {n_messages:,} messages, {n_status:,} status changes over "
            f"{args.days} days, {args.agents} agents, generated in {time.perf_counter() - started:.1f} s"
        )
        histories[label] = ws.id
    analyze(db)

    # 1. Plans: every statement of the page's data load, on the large history, 30-day range.
    query = AnalyticsQuery(workspace_id=histories["large"], since=now - timedelta(days=30), until=now)
    with captured_statements(db) as statements:
        analytics.dashboard(query)
    print(f"\n== plans of the {len(statements)} statements of one page load (large history, 30 days) ==")
    failures = 0
    for statement, parameters in statements:
        plan = explain(db, statement, parameters)
        first = " ".join(statement.split())[:110]
        print(f"\n-- {first}...")
        for line in plan:
            print(f"   {line}")
        bad = unindexed_reads(db.dialect, plan)
        if bad:
            failures += 1
            print(f"   !! reads a big table without an index: {bad}")

    # 2. Timings of the whole page data load per range, large vs small.
    print(f"\n== AnalyticsService.dashboard (all aggregates), median of {args.repeat} ==")
    print(f"{'range':8} {'small rows':>11} {'small ms':>9} {'large rows':>11} {'large ms':>9} {'x small':>8}")
    for label, days in (("24 h", 1), ("7 d", 7), ("30 d", 30), (f"{args.days} d", args.days)):
        since = now - timedelta(days=days)
        figures = []
        for name in ("small", "large"):
            q = AnalyticsQuery(workspace_id=histories[name], since=since, until=now)
            figures.append(
                (
                    rows_in_range(db, histories[name], since, now),
                    median_ms(lambda q=q: analytics.dashboard(q), args.repeat),
                )
            )
        (small_rows, small_ms), (large_rows, large_ms) = figures
        print(f"{label:8} {small_rows:11,} {small_ms:9.1f} {large_rows:11,} {large_ms:9.1f} {large_ms / small_ms:8.1f}")
    per_row = []
    for name in ("large",):
        q = AnalyticsQuery(workspace_id=histories[name], since=start, until=now)
        per_row.append(median_ms(lambda q=q: analytics.dashboard(q), args.repeat) / max(1, args.messages) * 1000)
    print(f"\nwhole large history: {per_row[0]:.2f} µs per message in range (all aggregates together)")
    services.db.dispose()
    if failures:
        print(f"\nFAILED: {failures} statement(s) read a big table without an index")
        raise SystemExit(1)
    print("\nOK: every statement reads agent_messages / agent_status_changes through an index")


if __name__ == "__main__":
    main()
