"""Recorded LLM calls over the API and GET /metrics, against the real app process: a chat made
through the REST API reaches the loopback OpenAI-compatible server, and the calls, the pages and
the Prometheus counters say exactly what happened."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from core.config import Settings
from core.llm_profiles import LlmProfileCreate
from core.schemas import WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database
from tests.llm_server import LlmServer, count_words, default_responder, prompt_tokens
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ANSWER = "Forty-two is the answer you are looking for."
METRICS_TOKEN = "metrics-secret-0123456789"


@dataclass
class Deployment:
    app: AppProcess
    services: Services
    server: LlmServer

    def workspace(self) -> tuple[uuid.UUID, str]:
        ws = self.services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:10]}"))
        self.services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
        self.services.llm_profiles.create(
            ws.id,
            LlmProfileCreate(
                name="loopback", api_type="openai", model="gpt-4o-mini", base_url=self.server.base_url, api_key="sk-x"
            ),
        )
        return ws.id, self.services.tokens.create(ws.id, "obs")[1]

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.app.base_url, headers=headers, timeout=30)


def _database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str | None]:
    return tmp_path_factory.mktemp("obs") / "data", (create_pg_database() if USE_POSTGRES else None)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir, database_url = _database(tmp_path_factory)
    try:
        with LlmServer() as server, AppProcess(data_dir, database_url=database_url) as app:
            server.responder = lambda body: ANSWER
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            yield Deployment(app, services, server)
            services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


def _scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            assert sample.labels.get("process"), sample  # every series says which process it is
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "process"))
            samples[(sample.name, labels)] = sample.value
    return samples


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _chat(d: Deployment, secret: str, ws: uuid.UUID, name: str, text: str) -> uuid.UUID:
    with d.client(secret) as c:
        agent = c.post("/api/agents", json={"workspace_id": str(ws), "definition": "assistant", "name": name})
        assert agent.status_code == 201, agent.text
        agent_id = agent.json()["id"]
        assert c.post(f"/api/agents/{agent_id}/activate").status_code == 200
        assert c.post(f"/api/agents/{agent_id}/messages", json={"content": text}).status_code == 201

        def answered() -> bool:
            items = c.get(f"/api/agents/{agent_id}/messages").json()["items"]
            return bool(items) and items[0]["role"] == "assistant"

        wait_until(answered, 240, "the agent's answer (the first one waits for the MetaGPT import)")
        wait_until(lambda: c.get(f"/api/agents/{agent_id}").json()["status"] == "active", 30, "agent active again")
    return uuid.UUID(agent_id)


def test_a_chat_over_the_api_is_inspectable_and_scoped(deployment: Deployment) -> None:
    d = deployment
    ws, secret = d.workspace()
    _, stranger = d.workspace()
    agent = _chat(d, secret, ws, "oracle", "What is the answer to everything?")

    with d.client(secret) as c:
        page = c.get(f"/api/agents/{agent}/llm-calls").json()
        assert len(page["items"]) == 1 and page["next_cursor"] is None
        summary = page["items"][0]
        assert summary["outcome"] == "ok" and summary["latency_ms"] > 0 and "request" not in summary
        call = c.get(f"/api/llm-calls/{summary['id']}").json()
    assert "What is the answer to everything?" in json.dumps(call["request"])
    assert call["response"] == ANSWER
    assert call["completion_tokens"] == count_words(ANSWER)
    assert "sk-x" not in json.dumps(call)

    with d.client(stranger) as c:
        assert c.get(f"/api/agents/{agent}/llm-calls").status_code == 404
        assert c.get(f"/api/llm-calls/{summary['id']}").status_code == 404
    with d.client() as c:
        assert c.get(f"/api/llm-calls/{summary['id']}").status_code == 401


def test_a_runs_calls_come_in_keyset_pages_newest_first(deployment: Deployment) -> None:
    d = deployment
    ws, secret = d.workspace()
    _, stranger = d.workspace()
    with d.client(secret) as c:
        ids = []
        for name, definition in (("Alice", "product-manager"), ("Bob", "architect")):
            r = c.post("/api/agents", json={"workspace_id": str(ws), "definition": definition, "name": name})
            ids.append(r.json()["id"])
        d.server.responder = default_responder  # echoes MetaGPT's format example
        try:
            run = c.post("/api/runs", json={"workspace_id": str(ws), "agent_ids": ids, "idea": "a todo CLI"}).json()
            wait_until(
                lambda: c.get(f"/api/runs/{run['id']}").json()["status"] in {"completed", "failed"}, 90, "run end"
            )
        finally:
            d.server.responder = lambda body: ANSWER
        assert c.get(f"/api/runs/{run['id']}").json()["status"] == "completed"
        seen, cursor = [], None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = c.get(f"/api/runs/{run['id']}/llm-calls", params=params).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert c.get(f"/api/runs/{run['id']}/llm-calls", params={"cursor": "garbage"}).status_code == 422
    assert len(seen) >= 2 and len({s["id"] for s in seen}) == len(seen)
    started = [s["started_at"] for s in seen]
    assert started == sorted(started, reverse=True)
    assert all(s["round"] >= 1 and s["action"] in {"WritePRD", "WriteDesign"} for s in seen)
    with d.client(stranger) as c:
        assert c.get(f"/api/runs/{run['id']}/llm-calls").status_code == 404


def test_metrics_parse_and_move_by_the_right_amounts_after_a_chat(deployment: Deployment) -> None:
    d = deployment
    ws, secret = d.workspace()
    with d.client() as anonymous:  # a loopback bind: open
        before = _scrape(anonymous)
        d.server.clear_requests()
        _chat(d, secret, ws, f"counter-{uuid.uuid4().hex[:6]}", "count me")
        body = d.server.chat_bodies[-1]
        # The stream of events and the agent's status settle after the answer: wait for the call's end.
        wait_until(
            lambda: (
                _value(_scrape(anonymous), "agentdeck_llm_calls_total", model="gpt-4o-mini", outcome="ok")
                > _value(before, "agentdeck_llm_calls_total", model="gpt-4o-mini", outcome="ok")
            ),
            30,
            "the call counted",
        )
        after = _scrape(anonymous)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("agentdeck_llm_calls_total", model="gpt-4o-mini", outcome="ok") == 1
    assert moved("agentdeck_llm_call_duration_seconds_count", model="gpt-4o-mini", outcome="ok") == 1
    assert moved("agentdeck_llm_tokens_total", model="gpt-4o-mini", kind="prompt") == prompt_tokens(body)
    assert moved("agentdeck_llm_tokens_total", model="gpt-4o-mini", kind="completion") == count_words(ANSWER)
    assert moved("agentdeck_llm_cost_usd_total", model="gpt-4o-mini") > 0
    assert moved("agentdeck_events_written_total", type="llm_call") == 2  # started and finished
    assert moved("agentdeck_events_written_total", type="agent_message") == 2  # question and answer
    route = "/api/agents/{agent_id}/messages"
    assert moved("agentdeck_http_requests_total", method="POST", route=route, status="201") == 1
    assert moved("agentdeck_http_request_duration_seconds_count", method="POST", route=route) == 1
    assert moved("agentdeck_http_requests_total", method="POST", route="/api/agents", status="201") == 1
    assert moved("agentdeck_db_write_transaction_seconds_count", outcome="commit") >= 6
    assert ("agentdeck_event_bus_lag", ()) in after
    assert _value(after, "agentdeck_runs_in_progress") == 0


def test_open_websocket_streams_are_counted(deployment: Deployment) -> None:
    d = deployment
    ws, secret = d.workspace()
    url = d.app.base_url.replace("http://", "ws://") + f"/ws/agents/stream?workspace_id={ws}&token={secret}"
    with d.client() as anonymous:
        before = _value(_scrape(anonymous), "agentdeck_websocket_connections")
        with connect(url):
            wait_until(
                lambda: _value(_scrape(anonymous), "agentdeck_websocket_connections") == before + 1, 30, "one more"
            )
        wait_until(lambda: _value(_scrape(anonymous), "agentdeck_websocket_connections") == before, 30, "closed")


def test_metrics_on_a_non_loopback_bind_need_the_metrics_token(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir, database_url = _database(tmp_path_factory)
    env = {"AGENTDECK_HOST": "0.0.0.0", "AGENTDECK_PASSWORD": "pw-123456", "AGENTDECK_METRICS_TOKEN": METRICS_TOKEN}
    try:
        with AppProcess(data_dir, database_url=database_url, env=env) as app:
            assert httpx.get(f"{app.base_url}/metrics").status_code == 401
            wrong = httpx.get(f"{app.base_url}/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and "agentdeck_" not in wrong.text
            right = httpx.get(f"{app.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert right.status_code == 200
            names = {f.name for f in text_string_to_metric_families(right.text)}
            assert {"agentdeck_http_requests", "agentdeck_llm_calls", "agentdeck_runs"} <= names
            # An admin API token scrapes too; a workspace token does not.
            local = build_services(Settings(data_dir=data_dir, database_url=database_url))
            try:
                ws = local.workspaces.create(WorkspaceCreate(slug="metrics"))
                _, admin = local.tokens.create(ws.id, "ops", admin=True)
                _, plain = local.tokens.create(ws.id, "ci")
            finally:
                local.db.dispose()
            as_admin = httpx.get(f"{app.base_url}/metrics", headers={"Authorization": f"Bearer {admin}"})
            assert as_admin.status_code == 200 and "agentdeck_runs" in as_admin.text
            as_plain = httpx.get(f"{app.base_url}/metrics", headers={"Authorization": f"Bearer {plain}"})
            assert as_plain.status_code == 401
    finally:
        if database_url:
            drop_pg_database(database_url)
