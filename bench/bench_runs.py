"""Durable runs, measured (core/runtime/durable.py):

    uv run python bench/bench_runs.py                  # SQLite: checkpoint cost, restart -> resumed
    uv run python bench/bench_runs.py --database-url postgresql+psycopg://postgres@127.0.0.1/postgres
                                                       # ... and runs/minute with 1 vs 2 worker processes

1. Checkpoint cost: demo-model runs of the five-role SOP team; for every round, the time of
   `Team.serialize` + our state file, in ms and as a share of the round (the round includes it).
2. Restart -> resumed: a run (loopback LLM, slow stream) is stopped in round 2; the time from the
   new launch of DBOS to the run's resumed attempt starting (mark_running of the resume).
3. PostgreSQL only: N demo runs enqueued at once and executed by `main.py worker` processes (1, then
   2, sharing the data dir); runs/minute after a warm-up run per worker (MetaGPT's first import).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from core.llm_profiles import LlmProfileCreate  # noqa: E402
from core.registry import sync_definitions  # noqa: E402
from core.runs import RunCreate  # noqa: E402
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate  # noqa: E402
from core.services import Services, build_services  # noqa: E402
from core.status import RUN_FINISHED  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

SOP = [
    ("product-manager", "Priya"),
    ("architect", "Arjun"),
    ("project-manager", "Petra"),
    ("engineer", "Emil"),
    ("qa-engineer", "Quinn"),
]


def services_for(data_dir: Path, database_url: str | None, **settings: object) -> Services:
    data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(Settings(data_dir=data_dir, database_url=database_url, **settings))  # type: ignore[arg-type]
    upgrade(built.db.engine, built.settings.resolved_database_url, built.settings.sqlite_path)
    sync_definitions(built.db)
    return built


def team(services: Services, slug: str, roles: list[tuple[str, str]]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    ws = services.workspaces.create(WorkspaceCreate(slug=slug))
    services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
    ids = []
    for definition, name in roles:
        agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))
        services.agents.activate(agent.id)
        ids.append(agent.id)
    return ws.id, ids


def wait_finished(services: Services, run_ids: list[uuid.UUID], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(services.runs.get(r).status not in RUN_FINISHED for r in run_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"runs not finished within {timeout} s")
        time.sleep(0.2)


def checkpoint_cost(base: Path, database_url: str | None, runs: int) -> None:
    services = services_for(base / "ckpt", database_url)
    services.runtime.ensure_ready()
    ws, agents = team(services, "bench-ckpt", SOP)
    for _ in range(runs):
        run = services.runtime.start_run(
            RunCreate(workspace_id=ws, agent_ids=agents, idea="a CLI todo app", n_rounds=10)
        )
        wait_finished(services, [run.id], 600)
        services.runtime.wait_for_run(run.id, 30)
    stats = services.runtime.durable.round_stats
    services.runtime.shutdown()
    services.db.dispose()
    ckpt = [c * 1000 for c, _ in stats]
    share = [100 * c / r for c, r in stats if r > 0]
    print(
        f"checkpoint per round: median {statistics.median(ckpt):.1f} ms, max {max(ckpt):.1f} ms, "
        f"median {statistics.median(share):.1f} % of the round ({len(stats)} rounds, demo model, 5 roles)"
    )


def restart_to_resumed(base: Path, database_url: str | None) -> None:
    from tests.llm_server import LlmServer

    data = base / "restart"
    with LlmServer() as llm:
        llm.token_delay = 0.03
        services = services_for(data, database_url)
        services.runtime.ensure_ready()
        ws, agents = team(services, "bench-restart", SOP[:3])
        services.llm_profiles.create(
            ws,
            LlmProfileCreate(
                name="loopback", api_type="openai", model="gpt-4o-mini", base_url=llm.base_url, api_key="x"
            ),
        )
        run = services.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=agents, idea="a todo app", n_rounds=6))
        while services.runs.get(run.id).current_round < 2:
            time.sleep(0.05)
        services.runtime.shutdown()
        services.db.dispose()
        again = services_for(data, database_url)
        again.runtime.ensure_ready()  # MetaGPT's import is not what is measured
        started = time.perf_counter()
        again.runtime.launch()
        while again.runs.get(run.id).attempts < 2:
            time.sleep(0.01)
        resumed = time.perf_counter() - started
        wait_finished(again, [run.id], 300)
        print(
            f"restart -> resumed: {resumed * 1000:.0f} ms (DBOS launch, recovery, queue poll, session rebuilt "
            f"from the round-1 checkpoint); run then {again.runs.get(run.id).status}"
        )
        again.runtime.shutdown()
        again.db.dispose()


def throughput(base: Path, database_url: str, runs: int) -> None:
    data = base / "workers"
    local = services_for(data, database_url, executor=False)
    local.runtime.launch()
    ws, agents = team(local, "bench-workers", SOP[:3])
    for n_workers in (1, 2):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "main.py",
                    "worker",
                    "--data-dir",
                    str(data),
                    "--database-url",
                    database_url,
                    "--worker-id",
                    f"bench-{n_workers}-{i}",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(n_workers)
        ]
        try:
            # Warm-up: one run per worker pays MetaGPT's import.
            warm = [
                local.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=agents[:1], idea="warm", n_rounds=1))
                for _ in range(n_workers * 4)
            ]
            wait_finished(local, [r.id for r in warm], 600)
            started = time.perf_counter()
            batch = [
                local.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=agents, idea=f"app {i}", n_rounds=6))
                for i in range(runs)
            ]
            wait_finished(local, [r.id for r in batch], 1200)
            took = time.perf_counter() - started
            print(f"{n_workers} worker process(es): {runs} runs in {took:.1f} s = {runs * 60 / took:.1f} runs/minute")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
    local.runtime.shutdown()
    local.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--runs", type=int, default=3, help="runs for the checkpoint cost")
    parser.add_argument("--batch", type=int, default=12, help="runs for the throughput (PostgreSQL)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="agentdeck-bench-runs-"))
    if args.database_url:
        print("(PostgreSQL: each part uses its own database objects; the bench leaves its rows behind)")
    checkpoint_cost(base, args.database_url, args.runs)
    restart_to_resumed(base, args.database_url)
    if args.database_url:
        throughput(base, args.database_url, args.batch)


if __name__ == "__main__":
    main()
