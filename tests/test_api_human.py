"""Human in the loop over the REST API against the real app process, on the offline demo model:
a person plays the product manager through `GET/POST /api/runs/{id}/inputs`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.config import Settings
from core.schemas import AgentCreate, WorkspaceCreate, WorkspacePublic
from core.services import Services, build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database
from tests.llm_server import default_responder
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WAIT = 120.0


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, Services]]:
    data_dir = tmp_path_factory.mktemp("human") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env={"AGENTDECK_RATE_LIMIT": "off"}) as process:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            yield process, services
            services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


def _client(app: tuple[AppProcess, Services], ws: WorkspacePublic) -> httpx.Client:
    process, services = app
    _, secret = services.tokens.create(ws.id, "person")
    return httpx.Client(base_url=process.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=WAIT)


def _team(services: Services) -> tuple[WorkspacePublic, uuid.UUID, uuid.UUID]:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:12]}"))
    ids = []
    for definition, name in (("product-manager", "Alice"), ("architect", "Bob")):
        agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))
        services.agents.activate(agent.id)
        ids.append(agent.id)
    return ws, ids[0], ids[1]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_a_person_plays_the_product_manager_through_the_api(app: tuple[AppProcess, Services]) -> None:
    ws, pm, architect = _team(app[1])
    api = _client(app, ws)
    run = ok(
        api.post(
            "/api/runs",
            json={
                "workspace_id": str(ws.id),
                "agent_ids": [str(pm), str(architect)],
                "idea": "a recipe organizer",
                "human_agent_ids": [str(pm)],
                "n_rounds": 5,
            },
        ),
        202,
    )
    members = {m["agent_id"]: m for m in run["members"]}
    assert members[str(pm)]["played_by_human"] and not members[str(architect)]["played_by_human"]

    def pending() -> list[dict[str, Any]]:
        return ok(api.get(f"/api/runs/{run['id']}/inputs", params={"status": "pending"}))["items"]

    first = wait_until(lambda: (pending() or [None])[0], WAIT, "the product manager's request")
    assert first["kind"] == "answer" and first["agent_id"] == str(pm) and first["status"] == "pending"
    assert set(first) >= {"id", "run_id", "prompt", "proposed", "created_at", "answered_at", "answered_by"}
    assert "a recipe organizer" in str(first["prompt"])
    assert ok(api.get(f"/api/runs/{run['id']}"))["status"] == "waiting"
    assert [r["id"] for r in ok(api.get("/api/inputs"))] == [first["id"]]  # the workspace's inbox

    answered_ids = []
    while ok(api.get(f"/api/runs/{run['id']}"))["status"] not in {"completed", "failed", "cancelled"}:
        for request in pending():
            body = {"text": default_responder({"messages": request["prompt"]})}
            answer = ok(api.post(f"/api/runs/{run['id']}/inputs/{request['id']}", json=body))
            assert answer["status"] == "answered" and answer["answered_by"] == "token:person"
            answered_ids.append(request["id"])
            again = api.post(f"/api/runs/{run['id']}/inputs/{request['id']}", json={"text": "twice"})
            assert again.status_code == 409, again.text
        wait_until(lambda: pending() or ok(api.get(f"/api/runs/{run['id']}"))["status"] != "waiting", WAIT, "news")

    final = ok(api.get(f"/api/runs/{run['id']}"))
    assert final["status"] == "completed", final["error"]
    answered = ok(api.get(f"/api/runs/{run['id']}/inputs", params={"status": "answered"}))["items"]
    assert [a["id"] for a in answered] == answered_ids
    senders = [m["sender"] for m in ok(api.get(f"/api/runs/{run['id']}/messages", params={"limit": 50}))["items"]]
    assert senders[:3] == ["user", "Alice", "Bob"]


def test_bad_answers_are_refused_and_another_workspace_sees_nothing(app: tuple[AppProcess, Services]) -> None:
    ws, pm, architect = _team(app[1])
    other_ws, _, _ = _team(app[1])
    api, stranger = _client(app, ws), _client(app, other_ws)
    run = ok(
        api.post(
            "/api/runs",
            json={"workspace_id": str(ws.id), "agent_ids": [str(pm)], "idea": "a timer", "human_agent_ids": [str(pm)]},
        ),
        202,
    )
    url = f"/api/runs/{run['id']}/inputs"
    request = wait_until(lambda: (ok(api.get(url, params={"status": "pending"}))["items"] or [None])[0], WAIT, "ask")

    assert stranger.get(url).status_code == 404
    assert stranger.post(f"{url}/{request['id']}", json={"text": "x"}).status_code == 404
    assert stranger.post(f"/api/inputs/{request['id']}", json={"text": "x"}).status_code == 404
    assert ok(stranger.get("/api/inputs")) == []
    for body in ({}, {"text": ""}, {"decision": "approve"}, {"text": "x\u0000y"}, {"decision": "maybe", "text": "x"}):
        assert api.post(f"{url}/{request['id']}", json=body).status_code == 422, body
    assert api.post(f"/api/runs/{uuid.uuid4()}/inputs/{request['id']}", json={"text": "x"}).status_code == 404
    assert ok(api.get(url, params={"status": "pending"}))["items"][0]["id"] == request["id"]  # unchanged

    bad_members = {
        "workspace_id": str(ws.id),
        "agent_ids": [str(pm)],
        "idea": "x",
        "approve_agent_ids": [str(architect)],
    }
    assert api.post("/api/runs", json=bad_members).status_code == 422
    ok(api.post(f"/api/runs/{run['id']}/cancel"))
    assert ok(api.get(url, params={"status": "pending"}))["items"] == []


def test_a_sigkill_while_waiting_loses_nothing_and_the_answer_after_restart_resumes_the_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("human-kill") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    env = {"AGENTDECK_RATE_LIMIT": "off"}
    process = AppProcess(data_dir, database_url=database_url, env=env).start()
    services = build_services(Settings(data_dir=data_dir, database_url=database_url))
    try:
        ws, pm, architect = _team(services)
        api = _client((process, services), ws)
        body = {
            "workspace_id": str(ws.id),
            "agent_ids": [str(pm), str(architect)],
            "idea": "a habit tracker",
            "human_agent_ids": [str(pm)],
            "n_rounds": 5,
        }
        run_id = ok(api.post("/api/runs", json=body), 202)["id"]
        url = f"/api/runs/{run_id}/inputs"

        def pending(client: httpx.Client) -> list[dict[str, Any]]:
            return ok(client.get(url, params={"status": "pending"}))["items"]

        asked = wait_until(lambda: (pending(api) or [None])[0], WAIT, "the product manager's request")
        assert process.proc is not None
        process.proc.kill()  # SIGKILL while the run waits for a person
        process.proc.wait()
        assert services.runs.get(uuid.UUID(run_id)).status == "waiting"

        process = AppProcess(data_dir, database_url=database_url, env=env).start()
        api = _client((process, services), ws)
        # Still the same request, still pending, and the resumed run waits on it (not a second one).
        wait_until(lambda: ok(api.get(f"/api/runs/{run_id}"))["attempts"] == 2, WAIT, "the run to resume")
        assert [r["id"] for r in pending(api)] == [asked["id"]]
        assert ok(api.get(f"/api/runs/{run_id}"))["status"] == "waiting"

        while ok(api.get(f"/api/runs/{run_id}"))["status"] not in {"completed", "failed", "cancelled"}:
            for request in pending(api):
                answer = {"text": default_responder({"messages": request["prompt"]})}
                ok(api.post(f"{url}/{request['id']}", json=answer))
            wait_until(lambda: pending(api) or ok(api.get(f"/api/runs/{run_id}"))["status"] != "waiting", WAIT, "news")
        final = ok(api.get(f"/api/runs/{run_id}"))
        assert final["status"] == "completed", final["error"]
        assert final["resumed_at_round"] == 1
        all_requests = ok(api.get(url, params={"limit": 100}))["items"]
        assert all_requests[0]["id"] == asked["id"] and all_requests[0]["status"] == "answered"
        senders = [m["sender"] for m in ok(api.get(f"/api/runs/{run_id}/messages", params={"limit": 50}))["items"]]
        assert senders[:3] == ["user", "Alice", "Bob"]
    finally:
        process.stop()
        services.db.dispose()
        if database_url:
            drop_pg_database(database_url)
