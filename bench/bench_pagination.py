"""Page cost must not grow with history size (the keyset promise), measured.

    uv run python bench/bench_pagination.py                 # SQLite, 100,000 messages
    uv run python bench/bench_pagination.py --messages 1000000
    uv run python bench/bench_pagination.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

For each list it times the first page (the baseline) and pages deep in the history through the
real services, and prints the median time and the ratio to the baseline in the same run. A ratio
near 1.0 at any depth is the claim; an OFFSET query would grow linearly (shown for contrast).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings
from core.events import EventFilter, read_events
from core.pagination import encode_cursor
from core.registry import sync_definitions
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import Services, build_services
from storage.migrate import upgrade
from storage.models import AgentInstance, AgentMessage, Event
from storage.types import utcnow


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and the statement cache
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def seed(services: Services, messages: int, agents: int) -> tuple[uuid.UUID, uuid.UUID]:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"bench-{uuid.uuid4().hex[:6]}"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="busy-agent"))
    definition = services.agents.definition("assistant")
    start = utcnow() - timedelta(days=30)
    with services.db.engine.begin() as conn:
        batch = 20_000
        for offset in range(0, messages, batch):
            rows = [
                {
                    "id": uuid.uuid4(),
                    "workspace_id": ws.id,
                    "agent_id": agent.id,
                    "seq": i + 1,
                    "sender": "user" if i % 2 == 0 else "busy-agent",
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": f"message number {i} about the quarterly plan",
                    "cause_by": "",
                    "send_to": [],
                    "metadata": {},
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cost": 0.0,
                    "created_at": start + timedelta(seconds=i),
                    "updated_at": start + timedelta(seconds=i),
                }
                for i in range(offset, min(offset + batch, messages))
            ]
            conn.execute(sa.insert(AgentMessage.__table__), rows)  # type: ignore[attr-defined]
            conn.execute(
                sa.insert(Event.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "id": uuid.uuid4(),
                        "seq": 10 + r["seq"],
                        "workspace_id": ws.id,
                        "agent_id": agent.id,
                        "run_id": None,
                        "type": "agent_message",
                        "payload": {"seq": r["seq"]},
                        "created_at": r["created_at"],
                        "updated_at": r["created_at"],
                    }
                    for r in rows
                ],
            )
        other_agents = [
            {
                "id": uuid.uuid4(),
                "workspace_id": ws.id,
                "project_id": None,
                "definition_id": definition.id,
                "name": f"agent-{i:05d}",
                "status": "idle",
                "status_reason": "",
                "config": {},
                "lock_version": 1,
                "created_at": start + timedelta(seconds=i),
                "updated_at": start + timedelta(seconds=i),
            }
            for i in range(agents)
        ]
        if other_agents:  # an empty list would be taken as one row of defaults
            conn.execute(sa.insert(AgentInstance.__table__), other_agents)  # type: ignore[attr-defined]
        conn.exec_driver_sql("ANALYZE")
    return ws.id, agent.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-bench-"))
    settings = Settings(data_dir=tmp, database_url=args.database_url)
    services = build_services(settings)
    upgrade(services.db.engine, settings.resolved_database_url)
    sync_definitions(services.db)
    print(f"database: {services.db.dialect}; seeding {args.messages:,} messages, {args.agents:,} agents ...")
    started = time.perf_counter()
    ws_id, agent_id = seed(services, args.messages, args.agents)
    print(f"seeded in {time.perf_counter() - started:.1f} s\n")

    n = args.messages
    depths = [("newest page", None), ("10% deep", int(n * 0.9)), ("50% deep", n // 2), ("oldest page", 60)]
    rows: list[tuple[str, str, float]] = []

    for label, before_seq in depths:
        cursor = encode_cursor(before_seq) if before_seq else None
        ms = median_ms(lambda c=cursor: services.messages.list(agent_id, limit=50, before=c), args.repeat)
        rows.append(("messages.list (50, before)", label, ms))
    for label, after_seq in [("from start", 0), ("from middle", n // 2), ("near end", n - 60)]:
        cursor = encode_cursor(after_seq)
        ms = median_ms(lambda c=cursor: services.messages.list(agent_id, limit=50, after=c), args.repeat)
        rows.append(("messages.list (50, after)", label, ms))
    for label, since in [("since 0", 0), ("since middle", n // 2), ("since near end", n - 60)]:
        flt = EventFilter(workspace_id=ws_id)

        def replay(s: int = since, f: EventFilter = flt) -> None:
            with services.db.read() as session:
                read_events(session, f, s, 50)

        rows.append(("events replay (50)", label, median_ms(replay, args.repeat)))

    first_agents = services.agents.list(ws_id, limit=50)
    ms = median_ms(lambda: services.agents.list(ws_id, limit=50), args.repeat)
    rows.append(("agents.list (50)", "first page", ms))
    cursor = first_agents.next_cursor
    for _ in range(args.agents // 50 - 2):
        cursor = services.agents.list(ws_id, limit=50, cursor=cursor).next_cursor
    rows.append(
        (
            "agents.list (50)",
            "last pages",
            median_ms(lambda: services.agents.list(ws_id, limit=50, cursor=cursor), args.repeat),
        )
    )

    # Contrast: what OFFSET pagination would cost at the same depths (not used by AgentDeck).
    with services.db.engine.connect() as conn:
        for label, offset in [("OFFSET 0", 0), ("OFFSET 50%", n // 2), ("OFFSET 100%-50", n - 50)]:
            stmt = (
                sa.select(AgentMessage.__table__)  # type: ignore[attr-defined]
                .where(sa.column("agent_id") == agent_id)
                .order_by(sa.column("seq").desc())
                .limit(50)
                .offset(offset)
            )
            rows.append(
                (
                    "contrast: OFFSET query",
                    label,
                    median_ms(lambda s=stmt: conn.execute(s).all(), max(5, args.repeat // 20)),
                )
            )

    print(f"{'list':32} {'position':16} {'median ms':>10} {'x baseline':>11}")
    baseline: dict[str, float] = {}
    for name, label, ms in rows:
        base = baseline.setdefault(name, ms)
        print(f"{name:32} {label:16} {ms:10.3f} {ms / base:11.2f}")
    services.db.dispose()


if __name__ == "__main__":
    main()
