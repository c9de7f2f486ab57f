"""OpenTelemetry export: spans of a real demo-model team run reach an OTLP/HTTP receiver started
here on 127.0.0.1, decoded with opentelemetry-proto, parented run → round → agent action → LLM call."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core import telemetry
from core.config import Settings
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services

pytestmark = pytest.mark.slow

try:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
except ImportError:  # fail, never skip: the export is a feature under test
    pytest.fail("these tests need the `otel` extra: uv sync --extra native --extra otel", pytrace=False)


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rec:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.endpoint)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        telemetry.reset()
        yield rec
        telemetry.reset()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    telemetry.reset()


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings)
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def test_a_team_runs_spans_reach_the_otlp_receiver_parented_run_round_action_call(
    receiver: OtlpReceiver, rt: Services
) -> None:
    ws = rt.workspaces.create(WorkspaceCreate(slug=f"otel-{uuid.uuid4().hex[:6]}")).id
    rt.workspaces.update(ws, WorkspaceUpdate(settings={"code_execution": False}))
    agents = []
    for slug, name in (("product-manager", "Priya"), ("architect", "Arjun")):
        agent = rt.agents.create(AgentCreate(workspace_id=ws, definition=slug, name=name))
        rt.agents.activate(agent.id)
        agents.append(agent.id)
    run_id = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=agents, idea="a CLI todo app")).id
    assert rt.runtime.wait_for_run(run_id, 120)
    assert rt.runs.get(run_id).status == "completed"
    assert telemetry.flush()

    assert receiver.paths and all(p == "/v1/traces" for p in receiver.paths)
    spans = {s.span_id: s for s in receiver.spans}
    [run] = [s for s in spans.values() if s.name == "run"]
    assert run.parent_span_id == b""
    assert _attrs(run)["agentdeck.run.id"] == str(run_id)
    assert _attrs(run)["agentdeck.run.status"] == "completed"
    rounds = [s for s in spans.values() if s.name.startswith("round ")]
    assert rounds and all(s.parent_span_id == run.span_id for s in rounds)
    actions = [s for s in spans.values() if s.name.startswith("invoke_agent ")]
    assert {s.name for s in actions} == {"invoke_agent Priya", "invoke_agent Arjun"}
    assert all(spans[s.parent_span_id] in rounds for s in actions)
    calls = [s for s in spans.values() if s.name.startswith("chat ")]
    recorded = rt.llm_calls.run_timeline(run_id)
    assert len(calls) == len(recorded) >= 2
    for call in calls:
        parent = spans[call.parent_span_id]
        assert parent in actions
        attrs = _attrs(call)
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "agentdeck-demo"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["gen_ai.agent.name"] == _attrs(parent)["gen_ai.agent.name"]
        assert attrs["agentdeck.round"] == _attrs(spans[parent.parent_span_id])["agentdeck.round"]
        assert call.trace_id == run.trace_id
    assert {_attrs(c)["agentdeck.llm_call.id"] for c in calls} == {str(c.id) for c in recorded}


def test_without_an_endpoint_tracing_is_off_and_makes_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    telemetry.reset()
    assert telemetry.tracer() is None
    assert telemetry.start_span("run") is None
    telemetry.end_span(None)  # a no-op, not an error
