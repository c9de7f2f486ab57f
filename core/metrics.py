"""Prometheus metrics of one AgentDeck process (served by api/metrics.py at GET /metrics).

Every series carries a `process` label (`host:pid`): several processes (servers and workers)
sharing one database are each scraped on their own, and their series never collide when a
Prometheus sums them. Counters and histograms are updated where things happen (HTTP middleware,
write transactions, the event log, the LLM-call hook); gauges that describe shared state (runs by
status, the event log's head) are read from the database when scraped, cached for a few seconds
so a fast scraper cannot load the database.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PROCESS = f"{socket.gethostname()}:{os.getpid()}"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATE_CACHE_SECONDS = 5.0

# No `_created` sample per series: it doubles the exposition (and the scrape time) for a
# timestamp Prometheus does not need.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

HTTP_REQUESTS = Counter(
    "agentdeck_http_requests",
    "HTTP requests answered, by route template and status",
    ["process", "method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "agentdeck_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["process", "method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
WEBSOCKETS = Gauge(
    "agentdeck_websocket_connections", "API WebSocket event streams open", ["process"], registry=REGISTRY
)
EVENTS_WRITTEN = Counter(
    "agentdeck_events_written", "Events committed to the log, by type", ["process", "type"], registry=REGISTRY
)
DB_WRITE_LATENCY = Histogram(
    "agentdeck_db_write_transaction_seconds",
    "Duration of write transactions (lock wait included), committed or rolled back",
    ["process", "outcome"],
    buckets=_DB_BUCKETS,
    registry=REGISTRY,
)
RUNS_IN_PROGRESS = Gauge(
    "agentdeck_runs_in_progress", "Team runs executing in this process", ["process"], registry=REGISTRY
)
LLM_CALLS = Counter(
    "agentdeck_llm_calls", "LLM calls made, by model and outcome", ["process", "model", "outcome"], registry=REGISTRY
)
LLM_LATENCY = Histogram(
    "agentdeck_llm_call_duration_seconds",
    "LLM call latency, by model and outcome",
    ["process", "model", "outcome"],
    buckets=_LLM_BUCKETS,
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "agentdeck_llm_tokens",
    "LLM tokens, by model and kind (prompt/completion)",
    ["process", "model", "kind"],
    registry=REGISTRY,
)
LLM_COST = Counter(
    "agentdeck_llm_cost_usd", "LLM cost in US dollars, by model", ["process", "model"], registry=REGISTRY
)
LLM_IN_FLIGHT = Gauge(
    "agentdeck_llm_calls_in_flight", "LLM calls waiting for their answer", ["process"], registry=REGISTRY
)


# -- recording helpers (cheap; called on hot paths) ------------------------------------------
def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(PROCESS, method, route, str(status)).inc()
    HTTP_LATENCY.labels(PROCESS, method, route).observe(seconds)


def websocket_opened() -> None:
    WEBSOCKETS.labels(PROCESS).inc()


def websocket_closed() -> None:
    WEBSOCKETS.labels(PROCESS).dec()


def events_written(counts: dict[str, int]) -> None:
    for event_type, n in counts.items():
        EVENTS_WRITTEN.labels(PROCESS, event_type).inc(n)


def db_write(seconds: float, committed: bool) -> None:
    DB_WRITE_LATENCY.labels(PROCESS, "commit" if committed else "rollback").observe(seconds)


def run_started() -> None:
    RUNS_IN_PROGRESS.labels(PROCESS).inc()


def run_ended() -> None:
    RUNS_IN_PROGRESS.labels(PROCESS).dec()


def llm_call_started() -> None:
    LLM_IN_FLIGHT.labels(PROCESS).inc()


def llm_call_finished(
    model: str, outcome: str, seconds: float, prompt_tokens: int, completion_tokens: int, cost: float
) -> None:
    LLM_IN_FLIGHT.labels(PROCESS).dec()
    LLM_CALLS.labels(PROCESS, model, outcome).inc()
    LLM_LATENCY.labels(PROCESS, model, outcome).observe(seconds)
    if prompt_tokens:
        LLM_TOKENS.labels(PROCESS, model, "prompt").inc(prompt_tokens)
    if completion_tokens:
        LLM_TOKENS.labels(PROCESS, model, "completion").inc(completion_tokens)
    if cost:
        LLM_COST.labels(PROCESS, model).inc(cost)


# -- state read at scrape time -----------------------------------------------------------------
StateReader = Callable[[], dict[str, Any]]


class StateCollector(Collector):
    """Gauges of shared state, read through `reader` (set by whoever wires the app) and cached.

    `reader()` returns {"runs_by_status": {status: n}, "head_seq": int, "delivered_seq": int,
    "dashboard_clients": int}; any key may be missing.
    """

    def __init__(self) -> None:
        self.reader: StateReader | None = None
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def set_reader(self, reader: StateReader | None) -> None:
        with self._lock:
            self.reader, self._cached = reader, None

    def _state(self) -> dict[str, Any]:
        with self._lock:
            if self.reader is None:
                return {}
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > STATE_CACHE_SECONDS:
                self._cached = (now, self.reader())
            return self._cached[1]

    def describe(self) -> Iterable[Any]:
        return []  # read lazily: describing must not touch the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state()
        runs = GaugeMetricFamily("agentdeck_runs", "Team runs in the database, by status", labels=["process", "status"])
        for status, n in sorted(state.get("runs_by_status", {}).items()):
            runs.add_metric([PROCESS, status], n)
        yield runs
        if "head_seq" in state:
            head = state["head_seq"]
            delivered = state.get("delivered_seq", head)
            yield _gauge("agentdeck_event_log_head_seq", "Newest event seq in the log", head)
            yield _gauge("agentdeck_event_bus_delivered_seq", "Newest seq this process's bus delivered", delivered)
            yield _gauge(
                "agentdeck_event_bus_lag", "Events committed but not yet delivered here", max(0, head - delivered)
            )
        if "dashboard_clients" in state:
            yield _gauge(
                "agentdeck_dashboard_clients", "Dashboard browser clients connected", state["dashboard_clients"]
            )
        if "event_subscribers" in state:
            yield _gauge(
                "agentdeck_event_subscribers",
                "Live event subscriptions (dashboard and API)",
                state["event_subscribers"],
            )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["process"])
    family.add_metric([PROCESS], value)
    return family


STATE = StateCollector()
REGISTRY.register(STATE)


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text exposition of every metric of this process."""
    return generate_latest(registry)


def database_state(db: Any, delivered_seq: int | None = None) -> dict[str, Any]:
    """Runs by status and the event log's head, read from the database (two index scans)."""
    import sqlalchemy as sa
    from sqlmodel import col, select

    from storage.models import Event, Run

    with db.read() as session:
        rows = session.exec(select(Run.status, sa.func.count()).group_by(col(Run.status))).all()
        head = session.exec(select(sa.func.max(Event.seq))).one() or 0
    state: dict[str, Any] = {"runs_by_status": {status: int(n) for status, n in rows}, "head_seq": int(head)}
    if delivered_seq is not None:
        state["delivered_seq"] = delivered_seq
    return state
