"""Workspaces are sealed from each other over the API: a token of workspace A gets 404 — never
403, never data — for every id of workspace B on every route that takes one, its writes there
change nothing, and A's lists never show B's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from core.config import Settings
from core.context import ContextUpdate
from core.llm_profiles import LlmProfileCreate
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspacePublic
from core.services import Services, build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

SECRET_WORD = "zanzibar"  # appears only in workspace B's messages


@dataclass
class Tenant:
    """A workspace with one of everything, made beside the app through the services."""

    workspace: WorkspacePublic
    agent_id: uuid.UUID
    run_id: uuid.UUID
    profile_id: uuid.UUID


@dataclass
class World:
    app: AppProcess
    services: Services
    a: Tenant
    b: Tenant
    a_client: httpx.Client


def populate(services: Services, name: str) -> Tenant:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"{name}-{uuid.uuid4().hex[:8]}"))
    pm = services.agents.create(AgentCreate(workspace_id=ws.id, definition="product-manager", name=f"{name} pm"))
    services.agents.activate(pm.id, actor="setup")
    services.contexts.update(pm.id, ContextUpdate(data={"owner": name}), actor="setup")
    services.messages.append(pm.id, f"{SECRET_WORD} from {name}" if name == "b" else f"hello from {name}")
    # A run record nobody executes: enough for every read, and cancelling it only records it.
    run = services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=[pm.id], idea=f"{name}'s idea"))
    profile = services.llm_profiles.create(ws.id, LlmProfileCreate(name=f"{name} llm", api_type="openai", model="m"))
    return Tenant(ws, pm.id, run.id, profile.id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("isolation") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env={"AGENTDECK_RATE_LIMIT": "off"}) as app:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            a, b = populate(services, "a"), populate(services, "b")
            _, secret = services.tokens.create(a.workspace.id, "tenant-a")
            headers = {"Authorization": f"Bearer {secret}"}
            with httpx.Client(base_url=app.base_url, headers=headers, timeout=30) as client:
                yield World(app, services, a, b, client)
            services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


def snapshot(services: Services, tenant: Tenant) -> dict[str, object]:
    """Everything of B that a request from A could try to change."""
    agent, context = services.agents.get(tenant.agent_id), services.contexts.get(tenant.agent_id)
    return {
        "agent": (agent.name, agent.status, agent.config, agent.lock_version),
        "context": (context.version, context.data),
        "messages": services.messages.count(tenant.agent_id),
        "history": len(services.agents.status_history(tenant.agent_id).items),
        "run": services.runs.get(tenant.run_id).status,
        "profile": services.llm_profiles.get(tenant.profile_id).model_dump(),
    }


def requests_on_b(b: Tenant) -> list[tuple[str, str, dict[str, object]]]:
    """(method, url, httpx kwargs) for every route that takes an id, aimed at B's ids."""
    agent, run, profile, ws = b.agent_id, b.run_id, b.profile_id, b.workspace.id
    return [
        ("GET", f"/api/agents/{agent}", {}),
        ("PATCH", f"/api/agents/{agent}", {"json": {"name": "hijacked"}}),
        ("DELETE", f"/api/agents/{agent}", {}),
        ("POST", f"/api/agents/{agent}/activate", {}),
        ("POST", f"/api/agents/{agent}/status", {"json": {"status": "offline"}}),
        ("GET", f"/api/agents/{agent}/status/history", {}),
        ("GET", f"/api/agents/{agent}/context", {}),
        ("POST", f"/api/agents/{agent}/context", {"json": {"data": {"owner": "a"}}}),
        ("GET", f"/api/agents/{agent}/context/versions", {}),
        ("GET", f"/api/agents/{agent}/context/versions/1", {}),
        ("POST", f"/api/agents/{agent}/context/rollback", {"json": {"version": 1}}),
        ("GET", f"/api/agents/{agent}/context/diff", {"params": {"from": 1, "to": 2}}),
        ("GET", f"/api/agents/{agent}/messages", {}),
        ("POST", f"/api/agents/{agent}/messages", {"json": {"content": "psst"}}),
        ("GET", f"/api/runs/{run}", {}),
        ("POST", f"/api/runs/{run}/cancel", {}),
        ("GET", f"/api/runs/{run}/messages", {}),
        ("GET", f"/api/runs/{run}/files", {}),
        ("GET", f"/api/runs/{run}/files/docs/prd.json", {}),
        ("PATCH", f"/api/llm-profiles/{profile}", {"json": {"model": "hijacked"}}),
        ("POST", f"/api/llm-profiles/{profile}/test", {}),
        ("DELETE", f"/api/llm-profiles/{profile}", {}),
        ("GET", f"/api/workspaces/{ws}", {}),
        ("GET", f"/api/workspaces/{ws}/projects", {}),
        ("GET", f"/api/workspaces/{ws}/llm-profiles", {}),
        ("POST", f"/api/workspaces/{ws}/llm-profiles", {"json": {"name": "x", "api_type": "openai", "model": "m"}}),
        ("GET", "/api/agents", {"params": {"workspace_id": str(ws)}}),
        ("GET", "/api/runs", {"params": {"workspace_id": str(ws)}}),
        ("GET", "/api/events", {"params": {"workspace_id": str(ws)}}),
        ("GET", "/api/messages/search", {"params": {"q": SECRET_WORD, "workspace_id": str(ws)}}),
        ("POST", "/api/agents", {"json": {"workspace_id": str(ws), "definition": "assistant", "name": "intruder"}}),
        ("POST", "/api/runs", {"json": {"workspace_id": str(ws), "agent_ids": [str(agent)], "idea": "x"}}),
    ]


def test_every_id_of_another_workspace_is_404_and_nothing_changes(world: World) -> None:
    before = snapshot(world.services, world.b)
    for method, url, kwargs in requests_on_b(world.b):
        response = world.a_client.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, f"{method} {url}: {response.status_code} {response.text}"
        body = response.json()
        assert set(body) == {"detail"} and "not found" in body["detail"], f"{method} {url}: {body}"
        assert "b pm" not in response.text and "b llm" not in response.text
    assert snapshot(world.services, world.b) == before
    assert world.services.agents.list(world.b.workspace.id).items[0].name == "b pm"


def test_a_run_in_my_workspace_cannot_enlist_another_workspaces_agent(world: World) -> None:
    body = {"workspace_id": str(world.a.workspace.id), "agent_ids": [str(world.b.agent_id)], "idea": "poach"}
    response = world.a_client.post("/api/runs", json=body)
    assert response.status_code == 404, response.text
    assert world.services.runs.list(world.a.workspace.id).items[0].id == world.a.run_id  # no new run


def test_lists_show_only_my_workspace(world: World) -> None:
    a, b, client = world.a, world.b, world.a_client

    def ids(url: str, **params: object) -> set[str]:
        response = client.get(url, params={"limit": 500, **params})  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        body = response.json()
        items = body if isinstance(body, list) else body["items"]
        assert str(b.workspace.id) not in response.text
        return {str(item["id"]) for item in items} if items and "id" in items[0] else set()

    assert ids("/api/agents") == {str(a.agent_id)}
    assert ids("/api/runs") == {str(a.run_id)}
    assert ids(f"/api/workspaces/{a.workspace.id}/llm-profiles") == {str(a.profile_id)}
    assert [w["id"] for w in client.get("/api/workspaces").json()] == [str(a.workspace.id)]

    assert ids("/api/messages/search", q=SECRET_WORD) == set()
    assert len(ids("/api/messages/search", q="hello")) == 1

    events = client.get("/api/events", params={"limit": 500}).json()
    assert events["items"] and {e["workspace_id"] for e in events["items"]} == {str(a.workspace.id)}
    assert str(b.agent_id) not in str(events)
    foreign = client.get("/api/events", params={"agent_id": str(b.agent_id)}).json()
    assert foreign["items"] == []

    # B's rows exist all the while: the lists above filtered them out.
    assert world.services.messages.search(b.workspace.id, SECRET_WORD).items
