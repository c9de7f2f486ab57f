"""Export and import of a big workspace: time and peak memory, which must stay flat (issue 17).

    uv run python bench/bench_bundles.py                       # SQLite -> SQLite, 100,000 messages
    uv run python bench/bench_bundles.py --messages 1000000
    uv run python bench/bench_bundles.py --target-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

Each phase runs in a process of its own, so its peak resident memory (ru_maxrss) is its own:
seeding (bulk inserts, not measured), export to a file through `BundleService.export_to`, and
import of that file into a fresh database through `BundleService.import_file`. Flat memory means
the export and import peaks hardly move between 100,000 and 1,000,000 messages. Compare peaks
measured on one commit: most of a peak is what `core.services` imports, which moves with the code.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import Services, build_services
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import AgentMessage
from storage.types import utcnow

AGENTS = 50
SLUG = "bench-bundle"


def services_for(url: str, data_dir: Path) -> Services:
    engine = make_engine(url)
    upgrade(engine, url)
    engine.dispose()
    data_dir.mkdir(parents=True, exist_ok=True)
    services = build_services(Settings(data_dir=data_dir, database_url=url))
    sync_definitions(services.db)
    return services


def seed(services: Services, messages: int) -> uuid.UUID:
    ws = services.workspaces.create(WorkspaceCreate(slug=SLUG))
    agents = [
        services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name=f"agent {n}")).id
        for n in range(AGENTS)
    ]
    run = services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=agents[:5], idea="bench"))
    files = services.runtime.run_dir(run.id) / "workspace" / "bench"
    files.mkdir(parents=True)
    for n in range(20):
        (files / f"module_{n}.py").write_text(f"def f{n}():\n    return {n}\n" * 50)
    start = utcnow() - timedelta(days=30)
    table = AgentMessage.__table__
    batch = 20_000
    for offset in range(0, messages, batch):
        rows = [
            {
                "id": uuid.uuid4(),
                "workspace_id": ws.id,
                "agent_id": agents[i % AGENTS],
                "run_id": run.id if i % 10 == 0 else None,
                "seq": i // AGENTS + 1,
                "sender": "agent",
                "role": "assistant",
                "content": f"Message {i}: a typical answer of a couple of sentences, with some detail. " * 3,
                "cause_by": "WriteCode",
                "send_to": ["<all>"],
                "metadata": {"n": i},
                "prompt_tokens": 120,
                "completion_tokens": 80,
                "cost": 0.0004,
                "created_at": start + timedelta(seconds=i),
                "updated_at": start + timedelta(seconds=i),
            }
            for i in range(offset, min(offset + batch, messages))
        ]
        with services.db.engine.begin() as conn:
            conn.execute(table.insert(), rows)
    return ws.id


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase(args: argparse.Namespace) -> dict[str, float]:
    data_dir = Path(args.data_dir)
    if args.phase == "seed":
        services = services_for(args.url, data_dir)
        started = time.perf_counter()
        seed(services, args.messages)
        return {"seconds": time.perf_counter() - started}
    if args.phase == "export":
        services = build_services(Settings(data_dir=data_dir, database_url=args.url))
        ws = services.workspaces.get_by_slug(SLUG)
        started = time.perf_counter()
        size = services.bundles.export_to(ws.id, Path(args.file))
        return {"seconds": time.perf_counter() - started, "peak_mib": peak_mib(), "bytes": size}
    services = services_for(args.url, data_dir)
    started = time.perf_counter()
    result = services.bundles.import_file(Path(args.file))
    return {
        "seconds": time.perf_counter() - started,
        "peak_mib": peak_mib(),
        "rows": sum(result.rows.values()),
        "files": result.files,
    }


def run_phase(name: str, url: str, data_dir: Path, file: Path, messages: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--phase", name, "--url", url, "--data-dir", str(data_dir)]
    command += ["--file", str(file), "--messages", str(messages)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--source-url", help="database to seed and export from (default: a SQLite file)")
    parser.add_argument("--target-url", help="empty database to import into (default: a SQLite file)")
    parser.add_argument("--phase", choices=["seed", "export", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-bundles-") as tmp:
        root = Path(tmp)
        source = args.source_url or f"sqlite:///{root / 'source.db'}"
        target = args.target_url or f"sqlite:///{root / 'target.db'}"
        bundle = root / "bench.agentdeck"
        seeded = run_phase("seed", source, root / "source-data", bundle, args.messages)
        print(f"seeded {args.messages:,} messages in {seeded['seconds']:.1f} s", flush=True)
        exported = run_phase("export", source, root / "source-data", bundle, args.messages)
        print(
            f"export: {exported['seconds']:.1f} s, {exported['bytes'] / 2**20:.1f} MiB bundle, "
            f"peak RSS {exported['peak_mib']:.0f} MiB",
            flush=True,
        )
        imported = run_phase("import", target, root / "target-data", bundle, args.messages)
        print(
            f"import: {imported['seconds']:.1f} s, {imported['rows']:,.0f} rows + {imported['files']:.0f} files, "
            f"peak RSS {imported['peak_mib']:.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
