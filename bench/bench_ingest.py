"""The write path, measured through the real API (issue 15): messages per second, POST latency
under load, and walking a long thread — each as a ratio to raw database writes in the same run.

    uv run python bench/bench_ingest.py                       # SQLite (about a minute)
    uv run python bench/bench_ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    uv run python bench/bench_ingest.py --walk-messages 100000 --repeat 3
    uv run python bench/bench_ingest.py --app-root /tmp/agentdeck-old   # the same bench, older code

One AgentDeck process is started with the README's command (`python main.py`, rate limit off) on
a fresh database (a SQLite file, or a scratch PostgreSQL database created on the given server and
dropped afterwards). Its figures:

- `1 client` / `8 clients`: `POST /api/agents/{id}/messages` to one idle agent (so nothing
  answers), back to back from 1 and 8 threads, in messages per second;
- `GET /api/health`: the cheapest request this server answers (no database), one client: the
  floor that the framework and the machine set for any request;
- `server CPU ms/req`: CPU time the server process used per request (all threads), read from
  /proc: the figure least disturbed by other programs on a shared machine;
- `floor`: the same figures from bench/floor_app.py, the same web stack (uvicorn, FastAPI, a
  pydantic body, a sync route in the thread pool) inserting one plain row per POST with sqlite3:
  what any request costs on this machine before AgentDeck does anything of its own;
- `raw sqlite` / `raw psycopg`: the same rows inserted by plain sqlite3 / psycopg, one INSERT
  and one COMMIT per row (WAL, synchronous as the app sets it), from one thread — the floor
  that "how much does the app cost" is measured against. Every app figure is printed as a
  ratio to it;
- `POST latency at N/s`: requests offered at a fixed rate (open loop: latency counts from the
  moment a request was due, so a server that falls behind shows it), p50 / p95 / max;
- `walk`: reading a thread of `--walk-messages` messages through `GET ...messages?limit=500`,
  following `next_cursor` to the end, in seconds.

The machine is usually shared: compare the ratios of one run, repeat (`--repeat`), and compare
old and new code with `--app-root` in the same session rather than across days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pagination import seed  # noqa: E402
from core.config import Settings  # noqa: E402
from core.registry import sync_definitions  # noqa: E402
from core.schemas import AgentCreate, WorkspaceCreate  # noqa: E402
from core.services import build_services  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests.app_process import clean_env, free_port  # noqa: E402

CONTENT = "a message of ordinary length about the quarterly plan, with a few words more to read"
RAW_SCHEMA = (
    "CREATE TABLE msgs (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "content TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (agent_id, seq))"
)


# -- the app -------------------------------------------------------------------------------------
class Server:
    """A server process on a free port, started with `command` in `cwd`, until `stop()`."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, cwd=cwd, env=clean_env(**env), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.base_url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system, all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class App(Server):
    """`python main.py` from `root` (this checkout or an older one) on `database_url`."""

    def __init__(self, root: Path, data_dir: Path, database_url: str) -> None:
        port = free_port()
        env = {
            "AGENTDECK_DATA_DIR": str(data_dir),
            "AGENTDECK_PORT": str(port),
            "AGENTDECK_RATE_LIMIT": "off",
            "AGENTDECK_PRELOAD_RUNTIME": "false",
            "DATABASE_URL": database_url,
        }
        super().__init__([sys.executable, "main.py"], root, env, data_dir.parent / f"app-{port}.log", port)


class Floor(Server):
    """bench/floor_app.py: the same web stack writing one plain row per POST (its docstring)."""

    def __init__(self, tmp: Path) -> None:
        port = free_port()
        command = [sys.executable, str(ROOT / "bench" / "floor_app.py"), "--port", str(port)]
        command += ["--db", str(tmp / f"floor-{port}.db")]
        super().__init__(command, ROOT, {}, tmp / f"floor-{port}.log", port)


def prepare(database_url: str, data_dir: Path, walk_messages: int) -> dict[str, Any]:
    """Schema, one idle agent to post to, one agent with a long thread, a token for each."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    services = build_services(settings)
    upgrade(services.db.engine, settings.resolved_database_url, settings.sqlite_path)
    sync_definitions(services.db)
    ws = services.workspaces.create(WorkspaceCreate(slug=f"ingest-{uuid.uuid4().hex[:6]}"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="sink"))
    _, secret = services.tokens.create(ws.id, "bench")
    walk_ws, walk_agent = seed(services, walk_messages, 0)
    _, walk_secret = services.tokens.create(walk_ws, "walk")
    services.db.dispose()
    return {"agent": agent.id, "token": secret, "walk_agent": walk_agent, "walk_token": walk_secret}


# -- raw baselines -------------------------------------------------------------------------------
def raw_sqlite(path: Path, rows: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(RAW_SCHEMA)
    agent = str(uuid.uuid4())
    started = time.perf_counter()
    for i in range(rows):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO msgs VALUES (?, ?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), agent, i + 1, CONTENT, "{}", time.strftime("%Y-%m-%dT%H:%M:%S")),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed


def raw_psycopg(url: str, rows: int) -> float:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        conn.execute(RAW_SCHEMA.replace("CREATE TABLE msgs", "CREATE TABLE raw_msgs"))
        conn.commit()
        agent = str(uuid.uuid4())
        started = time.perf_counter()
        for i in range(rows):
            conn.execute(
                "INSERT INTO raw_msgs VALUES (%s, %s, %s, %s, %s, now()::text)",
                (str(uuid.uuid4()), agent, i + 1, CONTENT, "{}"),
            )
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE raw_msgs")
        conn.commit()
    return rows / elapsed


# -- through the API -----------------------------------------------------------------------------
def post_rate(app: Server, agent: uuid.UUID, token: str, clients: int, total: int) -> tuple[float, float, list[str]]:
    """Messages per second posted by `clients` threads, the server's CPU milliseconds per
    message, and every non-201 answer seen."""
    url = f"{app.base_url}/api/agents/{agent}/messages"
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        with httpx.Client(headers=headers, timeout=60) as http:
            http.get(f"{app.base_url}/api/health")  # connect before the clock starts
            barrier.wait()
            for _ in range(n):
                r = http.post(url, json={"content": CONTENT})
                if r.status_code != 201:
                    failures.append(f"{r.status_code} {r.text[:200]}")

    per = total // clients
    threads = [threading.Thread(target=client, args=(per,)) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    cpu = app.cpu_seconds()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return per * clients / elapsed, (app.cpu_seconds() - cpu) * 1000 / (per * clients), failures


def health_rate(app: Server, total: int) -> tuple[float, float]:
    """The floor of any request on this server and machine: `GET /api/health`, one client."""
    with httpx.Client(timeout=60) as http:
        http.get(f"{app.base_url}/api/health")
        cpu = app.cpu_seconds()
        started = time.perf_counter()
        for _ in range(total):
            http.get(f"{app.base_url}/api/health")
        elapsed = time.perf_counter() - started
    return total / elapsed, (app.cpu_seconds() - cpu) * 1000 / total


def wrk_rate(
    server: Server, path: str, token: str | None, connections: int, seconds: float, body: str | None = None
) -> tuple[float, float, int]:
    """Requests per second from wrk (C, one thread per connection up to 2, so the load generator
    costs little of the machine), the server's CPU ms per request, and the failed requests."""
    folder = Path(tempfile.mkdtemp(prefix="wrk-"))
    script = folder / "request.lua"
    lines = ['wrk.headers["Content-Type"] = "application/json"']
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    if body is not None:
        lines += ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    script.write_text("\n".join(lines) + "\n")
    threads = str(min(connections, 2))
    command = ["wrk", "-t", threads, "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "-s", str(script)]
    cpu = server.cpu_seconds()
    try:
        done = subprocess.run([*command, server.base_url + path], capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(folder)
    requests = int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    # Non-2xx answers, and socket errors (connect, read, write, timeout): each a failed request.
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout)
    failures = (int(failed.group(1)) if failed else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return rate, (server.cpu_seconds() - cpu) * 1000 / max(requests, 1), failures


async def _offered(app: App, agent: uuid.UUID, token: str, rate: float, seconds: float) -> list[float]:
    url = f"{app.base_url}/api/agents/{agent}/messages"
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits) as http:
        await asyncio.gather(*(http.get(f"{app.base_url}/api/health") for _ in range(16)))

        async def one(due: float) -> None:
            try:
                r = await http.post(url, json={"content": CONTENT})
                ok = r.status_code == 201
            except httpx.HTTPError:  # an overloaded server may drop connections: a failure too
                ok = False
            latencies.append((time.perf_counter() - due) * 1000 if ok else float("inf"))

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
    return latencies


def offered_latency(app: App, agent: uuid.UUID, token: str, rate: float, seconds: float) -> dict[str, float]:
    """p50 / p95 / max latency in ms (a failed request counts as infinitely late) and failures."""
    lat = sorted(asyncio.run(_offered(app, agent, token, rate, seconds)))
    failed = sum(1 for x in lat if x == float("inf"))
    return {"p50": lat[len(lat) // 2], "p95": lat[int(len(lat) * 0.95)], "max": lat[-1], "failed": failed}


def walk(app: App, agent: uuid.UUID, token: str) -> tuple[float, int, float]:
    """Seconds to read the whole thread in pages of 500, messages read, median ms per page."""
    url = f"{app.base_url}/api/agents/{agent}/messages"
    pages: list[float] = []
    seen = 0
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        http.get(url, params={"limit": 1})
        started = time.perf_counter()
        params: dict[str, Any] = {"limit": 500}
        while True:
            t = time.perf_counter()
            r = http.get(url, params=params)
            r.raise_for_status()
            body = r.json()
            pages.append((time.perf_counter() - t) * 1000)
            seen += len(body["items"])
            if body["next_cursor"] is None:
                break
            params["before"] = body["next_cursor"]
        total = time.perf_counter() - started
    return total, seen, statistics.median(pages) if pages else 0.0


# -- the run -------------------------------------------------------------------------------------
def scratch_pg(server_url: str) -> tuple[str, Callable[[], None]]:
    base = make_url(server_url)
    name = f"agentdeck_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server URL; default: SQLite")
    parser.add_argument("--messages", type=int, default=1000, help="messages per throughput figure")
    parser.add_argument("--raw-rows", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=500.0, help="offered messages/s for the latency figure")
    parser.add_argument("--seconds", type=float, default=4.0, help="how long the rate is offered")
    parser.add_argument("--walk-messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="repeat the throughput figures")
    parser.add_argument(
        "--client",
        choices=("wrk", "httpx"),
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator for the rate figures: wrk (default when installed; apt-get install wrk) "
        "costs the 2-core machine far less than Python threads with httpx",
    )
    parser.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose main.py is measured")
    args = parser.parse_args()
    # A terminated bench still stops the app it started (the `finally` blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-ingest-"))
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if args.database_url:
        database_url, drop = scratch_pg(args.database_url)
    else:
        database_url = f"sqlite:///{tmp / 'data' / 'agentdeck.db'}"
    try:
        backend = make_url(database_url).get_backend_name()
        print(f"database: {backend}; app: {args.app_root}; client: {args.client}; load: {os.getloadavg()}")
        ids = prepare(database_url, tmp / "data", args.walk_messages)
        app = App(args.app_root, tmp / "data", database_url)
        floor: Floor | None = None
        try:
            floor = Floor(tmp)
            rows: list[tuple[str, float, float, float | None]] = []
            for _ in range(args.repeat):
                raw = raw_sqlite(tmp / f"raw-{uuid.uuid4().hex[:6]}.db", args.raw_rows)
                rows.append(("raw sqlite, 1 commit/row", raw, raw, None))
                if args.database_url:
                    base = raw_psycopg(database_url, args.raw_rows // 2)
                    rows.append(("raw psycopg, 1 commit/row", base, base, None))
                else:
                    base = raw
                for name, server in (("floor", floor), ("API", app)):
                    if args.client == "wrk":
                        health, health_cpu, _ = wrk_rate(server, "/api/health", None, 1, args.seconds)
                    else:
                        health, health_cpu = health_rate(server, args.messages // 2)
                    rows.append((f"{name} GET /api/health, 1 client", health, base, health_cpu))
                    for clients in (1, 8):
                        if args.client == "wrk":
                            path, body = f"/api/agents/{ids['agent']}/messages", json.dumps({"content": CONTENT})
                            rate, cpu_ms, failed = wrk_rate(server, path, ids["token"], clients, args.seconds, body)
                            failures = [f"{failed} non-2xx answers"] if failed else []
                        else:
                            rate, cpu_ms, failures = post_rate(
                                server, ids["agent"], ids["token"], clients, args.messages
                            )
                        rows.append((f"{name} POST, {clients} client{'s' if clients > 1 else ''}", rate, base, cpu_ms))
                        if failures:
                            print(f"  {len(failures)} failed requests, e.g. {failures[0]}")
            print(f"\n{'figure':34} {'msg/s':>9} {'x raw':>8} {'server CPU ms/req':>18}")
            for name, rate, base, cpu_ms in rows:
                cpu = f"{cpu_ms:18.2f}" if cpu_ms is not None else ""
                print(f"{name:34} {rate:9.0f} {rate / base:8.1%} {cpu}")
            lat = offered_latency(app, ids["agent"], ids["token"], args.rate, args.seconds)
            print(
                f"\nPOST latency at {args.rate:.0f}/s offered for {args.seconds:.0f} s: "
                f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, max {lat['max']:.1f} ms, "
                f"{lat['failed']:.0f} failed"
            )
            total, seen, page_ms = walk(app, ids["walk_agent"], ids["walk_token"])
            print(f"walk {seen:,} messages, limit=500: {total:.2f} s (median page {page_ms:.1f} ms)")
            print(f"load average after: {os.getloadavg()}")
        finally:
            app.stop()
            if floor is not None:
                floor.stop()
    finally:
        drop()


if __name__ == "__main__":
    main()
