"""Templates and bundles over the REST API, against the real app process (issue 17)."""

from __future__ import annotations

import base64
import os
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


class Server:
    def __init__(self, app: AppProcess, services: Services) -> None:
        self.app = app
        self.services = services

    def workspace(self) -> WorkspacePublic:
        return self.services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:12]}"))

    def client(self, workspace: WorkspacePublic) -> httpx.Client:
        _, secret = self.services.tokens.create(workspace.id, "bundles")
        return httpx.Client(base_url=self.app.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("bundles-api") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env={"AGENTDECK_RATE_LIMIT": "off"}) as app:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            yield Server(app, services)
            services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_templates_are_listed_saved_and_instantiated(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        slugs = [t["slug"] for t in ok(client.get("/api/templates"))]
        assert slugs == ["software-company", "assistant-pair"]
        first = ok(client.post("/api/templates/software-company/instantiate", json={"workspace_id": str(ws.id)}), 201)
        second = ok(client.post("/api/templates/software-company/instantiate", json={"workspace_id": str(ws.id)}), 201)
        assert len(first) == len(second) == 5
        assert {a["name"] for a in first}.isdisjoint({a["name"] for a in second})
        assert second[0]["name"] == "Alice (PM) 2" and second[0]["definition"] == "product-manager"

        saved = ok(
            client.post(
                "/api/templates/from-agents",
                json={"slug": "pm-and-dev", "name": "PM and dev", "agent_ids": [first[0]["id"], first[3]["id"]]},
            ),
            201,
        )
        assert [m["name"] for m in saved["members"]] == ["Alice (PM)", "Dave (Engineer)"]
        assert "pm-and-dev" in [t["slug"] for t in ok(client.get("/api/templates"))]
        made = ok(client.post("/api/templates", json={**saved, "slug": "copy"}), 201)
        assert made["builtin"] is False
        # A member's definition with NUL is refused by the request model, like an agent's.
        nul = {**saved, "slug": "nul", "members": [{**saved["members"][0], "definition": "engi\x00neer"}]}
        assert client.post("/api/templates", json=nul).status_code == 422

        run = ok(
            client.post("/api/runs", json={"workspace_id": str(ws.id), "agent_ids": [first[1]["id"]], "idea": "x"}), 202
        )
        from_run = ok(client.post("/api/templates/from-run", json={"run_id": run["id"], "slug": "r", "name": "R"}), 201)
        assert [m["definition"] for m in from_run["members"]] == ["architect"] and from_run["idea"] == "x"
        # A run whose agents were all deleted has no team to save: 409, not a server error.
        ok(client.delete(f"/api/agents/{first[1]['id']}"), 204)
        gone = client.post("/api/templates/from-run", json={"run_id": run["id"], "slug": "r2", "name": "R2"})
        assert gone.status_code == 409 and "none of the run's agents" in gone.json()["detail"]

        assert client.post("/api/templates/nope/instantiate", json={"workspace_id": str(ws.id)}).status_code == 404
        other = server.workspace()
        refused = client.post("/api/templates/assistant-pair/instantiate", json={"workspace_id": str(other.id)})
        assert refused.status_code == 404
        assert client.delete("/api/templates/software-company").status_code == 409
        assert client.delete("/api/templates/copy").status_code == 204


def test_export_streams_and_import_takes_a_bundle_larger_than_the_body_limit(server: Server) -> None:
    ws = server.workspace()
    agent = server.services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="big"))
    # Incompressible enough that the bundle passes the API's 2 MiB body limit.
    for _ in range(40):
        server.services.messages.append(agent.id, base64.b64encode(os.urandom(75_000)).decode())
    with server.client(ws) as client:
        with client.stream("GET", f"/api/workspaces/{ws.id}/export") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/zip"
            assert f'filename="{ws.slug}.agentdeck"' in response.headers["content-disposition"]
            assert "content-length" not in response.headers  # streamed, not buffered
            bundle = b"".join(response.iter_bytes())
        assert len(bundle) > 2 * 1024 * 1024

        twice = client.post("/api/workspaces/import", content=bundle, headers={"Content-Type": "application/zip"})
        assert twice.status_code == 409 and "--as NEW_SLUG" in twice.json()["detail"]

        new_slug = f"copy-{uuid.uuid4().hex[:8]}"
        imported = ok(
            client.post(
                "/api/workspaces/import",
                params={"as_slug": new_slug},
                content=bundle,
                headers={"Content-Type": "application/zip"},
            ),
            201,
        )
        assert imported["slug"] == new_slug and imported["rows"]["agent_messages"] == 40
        copy = server.services.workspaces.get_by_slug(new_slug)
        (copied,) = server.services.agents.list(copy.id).items
        assert server.services.messages.count(copied.id) == 40

        bad = client.post("/api/workspaces/import", content=b"not a zip", headers={"Content-Type": "application/zip"})
        assert bad.status_code == 422 and "not a bundle" in bad.json()["detail"]
        other = server.workspace()
        assert client.get(f"/api/workspaces/{other.id}/export").status_code == 404
