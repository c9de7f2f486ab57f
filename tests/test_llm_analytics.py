"""LLM analytics: latency p50/p95 per model per bucket and error rate per profile, computed by the
database (nearest-rank percentiles from window functions), served by the API and the dashboard."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from api.analytics import router as analytics_router
from api.errors import install_error_handlers
from core.analytics_schemas import AnalyticsQuery
from core.schemas import AgentCreate, WorkspaceCreate
from core.services import Services
from storage.models import LlmCall

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)


def _call(
    services: Services,
    ws: uuid.UUID,
    agent: uuid.UUID,
    model: str,
    profile: str,
    ms: float,
    at: datetime,
    outcome: str = "ok",
) -> None:
    call_id = services.llm_calls.start(
        ws, [{"role": "user", "content": "q"}], agent_id=agent, model=model, profile=profile
    )
    services.llm_calls.finish(call_id, outcome, latency_ms=ms, error="boom" if outcome == "error" else "")
    with services.db.write() as session:
        row = session.get(LlmCall, call_id)
        assert row is not None
        row.created_at = row.started_at = at
        session.add(row)


@pytest.fixture
def seeded(services: Services) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    ws = services.workspaces.create(WorkspaceCreate(slug="llm-analytics")).id
    a = services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="a")).id
    b = services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="b")).id
    for i in range(1, 21):  # model x in hour 10: 1..20 ms -> p50 10, p95 19
        _call(services, ws, a, "x", "fast", float(i), HOUR + timedelta(minutes=i))
    for i, ms in enumerate((100.0, 300.0, 200.0)):  # model y in hour 11 -> p50 200, p95 300
        _call(services, ws, b, "y", "slow", ms, HOUR + timedelta(hours=1, minutes=i))
    _call(services, ws, b, "y", "slow", 5000.0, HOUR + timedelta(hours=1, minutes=9), outcome="error")
    # A running call and another workspace's call count nowhere.
    services.llm_calls.start(ws, [{"role": "user", "content": "still going"}], agent_id=a, model="x", profile="fast")
    other = services.workspaces.create(WorkspaceCreate(slug="elsewhere")).id
    _call(services, other, a, "x", "fast", 99999.0, HOUR)
    return ws, a, b


def test_latency_percentiles_per_model_per_hour_and_error_rate_per_profile(
    services: Services, seeded: tuple[uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    ws, _, _ = seeded
    figures = services.analytics.llm(AnalyticsQuery(workspace_id=ws, since=HOUR, until=HOUR + timedelta(hours=2)))
    assert figures.bucket == "hour"
    points = {(p.bucket, p.model): p for p in figures.latency}
    assert set(points) == {("2026-03-01T10:00:00", "x"), ("2026-03-01T11:00:00", "y")}
    x = points[("2026-03-01T10:00:00", "x")]
    assert (x.calls, x.p50_ms, x.p95_ms) == (20, 10.0, 19.0)
    y = points[("2026-03-01T11:00:00", "y")]
    assert (y.calls, y.p50_ms, y.p95_ms) == (4, 200.0, 5000.0)
    profiles = {p.profile: p for p in figures.profiles}
    assert (profiles["fast"].calls, profiles["fast"].errors, profiles["fast"].error_rate) == (20, 0, 0.0)
    assert (profiles["slow"].calls, profiles["slow"].errors, profiles["slow"].error_rate) == (4, 1, 0.25)


def test_the_agent_filter_and_the_dashboard_carry_the_llm_figures(
    services: Services, seeded: tuple[uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    ws, _, b = seeded
    query = AnalyticsQuery(workspace_id=ws, since=HOUR, until=HOUR + timedelta(hours=2), agent_ids=[b])
    assert {p.model for p in services.analytics.llm(query).latency} == {"y"}
    dashboard = services.analytics.dashboard(query)
    assert dashboard.llm is not None and [p.profile for p in dashboard.llm.profiles] == ["slow"]


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(analytics_router)
    app.state.services = services  # as main.py does: the API reads them from the app
    with TestClient(app) as c:
        yield c


def test_the_api_serves_llm_figures_scoped_by_the_token(
    client: TestClient, services: Services, seeded: tuple[uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    ws, _, _ = seeded
    headers = {"Authorization": f"Bearer {services.tokens.create(ws, 'llm')[1]}"}
    params = {"since": HOUR.isoformat(), "until": (HOUR + timedelta(hours=2)).isoformat()}
    body = client.get("/api/analytics/llm", params=params, headers=headers).json()
    assert {(p["model"], p["p95_ms"]) for p in body["latency"]} == {("x", 19.0), ("y", 5000.0)}
    assert {p["profile"]: p["error_rate"] for p in body["profiles"]} == {"fast": 0.0, "slow": 0.25}
    other = services.workspaces.create(WorkspaceCreate(slug="third")).id
    assert (
        client.get("/api/analytics/llm", params={**params, "workspace_id": str(other)}, headers=headers).status_code
        == 404
    )
    assert client.get("/api/analytics/llm", params=params).status_code == 401
