"""What recording every LLM call costs, and what a /metrics scrape costs, measured.

    uv run python bench/bench_llm_calls.py                       # SQLite file in a temp dir
    uv run python bench/bench_llm_calls.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

1. µs per recorded call: `LlmCallService.start` + `finish` (two short write transactions, each with
   its `llm_call` event) for a call with a ~6 KB prompt and a ~2 KB response.
2. Write throughput with recording on vs off: the writes the runtime makes per LLM call without
   recording (an `agent_activity` event, the reply message) against those with it (the call's start
   carrying the activity event, the message, the call's finish: one write transaction more); and end to end, demo-model chat answers per second with `record_llm_calls`
   on and off (MetaGPT, the runtime's worker threads and every write included).
3. GET /metrics: time to render the Prometheus text with 10,000 series in the registry.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import metrics
from core.config import Settings
from core.events import EventType, append_event
from core.registry import sync_definitions
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import Services, build_services
from storage.migrate import upgrade

PROMPT = [
    {"role": "system", "content": "You are a careful product manager. " * 60},
    {"role": "user", "content": "Write the PRD for a CLI todo app. " * 120},
]
RESPONSE = "## Product Requirement Document\n" + "- a requirement of the product\n" * 64


def build(url: str, data_dir: Path, record: bool) -> Services:
    settings = Settings(data_dir=data_dir, database_url=url, record_llm_calls=record, preload_runtime=False)
    services = build_services(settings)
    return services


def per_call_us(services: Services, ws: uuid.UUID, agent: uuid.UUID, n: int) -> float:
    calls = services.llm_calls
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call = calls.start(ws, PROMPT, agent_id=agent, agent_name="pm", action="WritePRD", model="gpt-4o-mini")
        calls.finish(call, "ok", response=RESPONSE, prompt_tokens=900, completion_tokens=300, latency_ms=1200.0)
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def write_set_per_second(services: Services, ws: uuid.UUID, agent: uuid.UUID, n: int, record: bool) -> float:
    started = time.perf_counter()
    activity = {"activity": "calling_llm", "agent_name": "pm", "stream": True}
    for i in range(n):
        if record:  # as the runtime does it: the activity event rides in the call's first write
            call = services.llm_calls.start(ws, PROMPT, agent_id=agent, agent_name="pm", activity=activity)
        else:
            with services.db.write() as session:
                append_event(session, EventType.AGENT_ACTIVITY, ws, activity, agent_id=agent)
        services.messages.append(agent, RESPONSE + str(i), sender="pm", role="assistant")
        if record:
            services.llm_calls.finish(call, "ok", response=RESPONSE, prompt_tokens=900, completion_tokens=300)
    return n / (time.perf_counter() - started)


def chats_per_second(url: str, data_dir: Path, record: bool, n: int) -> float:
    services = build(url, data_dir, record)
    services.runtime.ensure_ready()
    ws = services.workspaces.create(WorkspaceCreate(slug=f"chat-{uuid.uuid4().hex[:6]}")).id
    agent = services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="demo")).id
    services.agents.activate(agent)
    services.runtime.send_message(agent, "warm up")
    services.runtime.wait_for_chat(agent, 120)
    started = time.perf_counter()
    for i in range(n):
        services.runtime.send_message(agent, f"question {i}: what is a todo app?")
        assert services.runtime.wait_for_chat(agent, 120)
    rate = n / (time.perf_counter() - started)
    recorded = len(services.llm_calls.list_agent(agent, limit=500).items)
    assert recorded == (n + 1 if record else 0), recorded
    services.runtime.shutdown()
    services.db.dispose()
    return rate


def scrape_ms(series: int, repeat: int) -> tuple[float, int]:
    # 10k series as a busy deployment could have them: models x outcomes on the call counter.
    for i in range(series):
        metrics.LLM_CALLS.labels(
            metrics.PROCESS, f"model-{i // 4}", ("ok", "error", "cancelled", "running")[i % 4]
        ).inc()
    text = metrics.render()
    lines = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        metrics.render()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--chats", type=int, default=30)
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-llm-calls-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        url = args.database_url or f"sqlite:///{data_dir / 'agentdeck.db'}"
        services = build(url, data_dir, True)
        upgrade(services.db.engine, url, None)
        sync_definitions(services.db)
        ws = services.workspaces.create(WorkspaceCreate(slug=f"bench-{uuid.uuid4().hex[:6]}")).id
        agent = services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="pm")).id
        print(f"database: {services.db.dialect}")
        print(
            f"recording one call (start + finish, ~6 KB prompt): {per_call_us(services, ws, agent, args.calls):,.0f} µs median"
        )
        off = write_set_per_second(services, ws, agent, args.calls, record=False)
        on = write_set_per_second(services, ws, agent, args.calls, record=True)
        print(f"per-call write set: {off:,.0f}/s without recording, {on:,.0f}/s with ({on / off:.0%})")
        services.db.dispose()
        chats_off = chats_per_second(url, data_dir, False, args.chats)
        chats_on = chats_per_second(url, data_dir, True, args.chats)
        print(
            f"demo-model chat answers: {chats_off:,.1f}/s recording off, {chats_on:,.1f}/s on ({chats_on / chats_off:.0%})"
        )
    ms, lines = scrape_ms(args.series, 20)
    print(f"/metrics render with {args.series:,} series ({lines:,} sample lines): {ms:,.1f} ms median")


if __name__ == "__main__":
    main()
