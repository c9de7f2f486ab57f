"""The API's common ground against the real app process: tokens, JSON errors, size and rate
limits, workspaces and projects, and the `token` command line.

One app process serves the whole module; every test makes its own workspace and token, and the
rate limit is per token, so the tests do not disturb each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.testclient import TestClient, WebSocketDenialResponse

from api.errors import install_error_handlers
from core.config import Settings
from core.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    StaleVersion,
    TooLarge,
    Unauthorized,
)
from core.schemas import WorkspaceCreate, WorkspacePublic
from core.services import Services, build_services
from core.tokens import TokenService
from main import main
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database

MAX_BODY = 4096
RATE = 15  # per minute


@dataclass
class Api:
    app: AppProcess
    services: Services
    tokens: TokenService
    cli_options: list[str]

    def workspace(self) -> WorkspacePublic:
        return self.services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:12]}"))

    def token(self, workspace: WorkspacePublic, name: str = "test") -> str:
        return self.tokens.create(workspace.id, name)[1]

    def client(self, secret: str | None = None, **headers: str) -> httpx.Client:
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        return httpx.Client(base_url=self.app.base_url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir = tmp_path_factory.mktemp("api") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    env = {"AGENTDECK_MAX_BODY": str(MAX_BODY), "AGENTDECK_RATE_LIMIT": f"{RATE}/minute"}
    try:
        with AppProcess(data_dir, database_url=database_url, env=env) as app:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            options = ["--data-dir", str(data_dir)] + (["--database-url", database_url] if database_url else [])
            yield Api(app, services, TokenService(services.db), options)
            services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


def assert_json_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str | list) and body["detail"]
    return body


# -- authentication ------------------------------------------------------------------------------
def test_health_answers_without_a_token(api: Api) -> None:
    with api.client() as client:
        response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_every_other_api_route_needs_a_token(api: Api) -> None:
    ws = api.workspace()
    with api.client() as client:
        for response in (
            client.get("/api/workspaces"),
            client.get(f"/api/workspaces/{ws.id}/projects"),
            client.post(f"/api/workspaces/{ws.id}/projects", json={"slug": "p", "name": "P"}),
            client.get("/api/workspaces", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        ):
            assert_json_error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
    assert api.services.workspaces.list_projects(ws.id) == []


def test_a_bad_token_is_401(api: Api) -> None:
    with api.client("adk_this-is-not-a-token") as client:
        assert_json_error(client.get("/api/workspaces"), 401)


def test_a_revoked_token_is_401_at_once(api: Api) -> None:
    ws = api.workspace()
    token, secret = api.tokens.create(ws.id, "soon revoked")
    with api.client(secret) as client:
        assert client.get("/api/workspaces").status_code == 200
        api.tokens.revoke(token.id)
        assert "revoked" in assert_json_error(client.get("/api/workspaces"), 401)["detail"]  # type: ignore[operator]


def test_using_a_token_records_when_it_was_last_used(api: Api) -> None:
    ws = api.workspace()
    token, secret = api.tokens.create(ws.id, "used")
    with api.client(secret) as client:
        assert client.get("/api/workspaces").status_code == 200
    assert api.tokens.get(token.id).last_used_at is not None


# -- JSON errors -------------------------------------------------------------------------------------
def test_an_unknown_api_path_is_a_json_404_and_a_wrong_method_a_405(api: Api) -> None:
    secret = api.token(api.workspace())
    with api.client(secret) as client:
        assert_json_error(client.get("/api/no-such-route"), 404)
        assert_json_error(client.delete("/api/no/such/route"), 404)
        assert_json_error(client.get("/api"), 404)
        wrong_method = client.delete("/api/workspaces")
        assert_json_error(wrong_method, 405)
        assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "POST"}
    with api.client() as client:
        assert_json_error(client.get("/api/no-such-route"), 404)


def test_dashboard_and_openapi_still_served_beside_the_api(api: Api) -> None:
    with api.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert {"/api/health", "/api/workspaces", "/api/workspaces/{workspace_id}/projects"} <= set(schema["paths"])
    assert not any("{path" in path for path in schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# -- size and rate limits ----------------------------------------------------------------------------
def test_an_oversized_body_is_413_and_writes_nothing(api: Api) -> None:
    ws = api.workspace()
    secret = api.token(ws)
    big = {"slug": "big", "name": "Big", "description": "x" * MAX_BODY}
    payload = httpx.Request("POST", "/", json=big).content

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    url = f"/api/workspaces/{ws.id}/projects"
    with api.client(secret) as client:
        assert "limit" in assert_json_error(client.post(url, json=big), 413)["detail"]  # type: ignore[operator]
        chunked = client.post(url, content=chunks(), headers={"Content-Type": "application/json"})
        assert_json_error(chunked, 413)
        assert client.get(url).json() == []
        small = client.post(url, json={**big, "description": "x" * (MAX_BODY // 2)})
        assert small.status_code == 201, small.text


def test_a_token_over_the_rate_limit_gets_429_with_retry_after(api: Api) -> None:
    ws = api.workspace()
    busy, calm = api.token(ws, "busy"), api.token(ws, "calm")
    with api.client(busy) as client:
        statuses = [client.get("/api/workspaces").status_code for _ in range(RATE)]
        assert statuses == [200] * RATE
        refused = client.get("/api/workspaces")
        assert_json_error(refused, 429)
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert client.get("/api/health").status_code == 200
    with api.client(calm) as client:
        assert client.get("/api/workspaces").status_code == 200


def test_requests_without_a_token_are_limited_per_client_address(api: Api) -> None:
    # The app trusts X-Forwarded-For from loopback (uvicorn's default), which lets one test
    # client stand for other addresses.
    with api.client(**{"X-Forwarded-For": "198.51.100.7"}) as client:
        statuses = [client.get("/api/workspaces").status_code for _ in range(RATE + 1)]
    assert statuses == [401] * RATE + [429]
    with api.client(**{"X-Forwarded-For": "198.51.100.8"}) as client:
        assert client.get("/api/workspaces").status_code == 401


# -- workspaces and projects -----------------------------------------------------------------------
def test_a_token_sees_only_its_own_workspace(api: Api) -> None:
    ws, other = api.workspace(), api.workspace()
    with api.client(api.token(ws)) as client:
        assert [w["id"] for w in client.get("/api/workspaces").json()] == [str(ws.id)]
        assert client.get(f"/api/workspaces/{ws.id}").json()["slug"] == ws.slug
        assert_json_error(client.get(f"/api/workspaces/{other.id}"), 404)
        assert_json_error(client.get(f"/api/workspaces/{other.id}/projects"), 404)
        assert_json_error(client.get(f"/api/workspaces/{uuid.uuid4()}/projects"), 404)
        created = client.post(f"/api/workspaces/{other.id}/projects", json={"slug": "sneaky", "name": "S"})
        assert_json_error(created, 404)
        assert_json_error(client.get("/api/workspaces/not-a-uuid"), 422)
    assert api.services.workspaces.list_projects(other.id) == []


def test_creating_a_workspace_over_the_api_grants_no_access_to_it(api: Api) -> None:
    ws = api.workspace()
    slug = f"made-{uuid.uuid4().hex[:8]}"
    with api.client(api.tokens.create(ws.id, "admin", admin=True)[1]) as client:  # issue 12: admin only
        created = client.post("/api/workspaces", json={"slug": slug, "name": "Made over the API"})
        assert created.status_code == 201, created.text
        assert created.json()["slug"] == slug and created.json()["name"] == "Made over the API"
        assert [w["id"] for w in client.get("/api/workspaces").json()] == [str(ws.id)]
        assert_json_error(client.get(f"/api/workspaces/{created.json()['id']}/projects"), 404)
        assert_json_error(client.post("/api/workspaces", json={"slug": slug}), 409)


def test_a_bad_workspace_slug_is_422_and_creates_nothing(api: Api) -> None:
    with api.client(api.tokens.create(api.workspace().id, "admin", admin=True)[1]) as client:
        for bad in ({"slug": "Not A Slug!"}, {"slug": ""}, {"slug": "-dash"}, {"name": "no slug"}):
            assert_json_error(client.post("/api/workspaces", json=bad), 422)
        assert_json_error(
            client.post("/api/workspaces", content=b"{not json", headers={"Content-Type": "application/json"}), 422
        )
    for slug in ("Not A Slug!", "not a slug!", "-dash"):
        with pytest.raises(NotFound):
            api.services.workspaces.get_by_slug(slug)


def test_projects_are_created_and_listed_in_the_token_workspace(api: Api) -> None:
    ws = api.workspace()
    url = f"/api/workspaces/{ws.id}/projects"
    with api.client(api.token(ws)) as client:
        created = client.post(url, json={"slug": "site", "name": "Web site", "description": "the shop"})
        assert created.status_code == 201, created.text
        project = created.json()
        assert (project["workspace_id"], project["slug"], project["description"]) == (str(ws.id), "site", "the shop")
        client.post(url, json={"slug": "app", "name": "App"}).raise_for_status()
        assert [p["slug"] for p in client.get(url).json()] == ["app", "site"]
        assert_json_error(client.post(url, json={"slug": "site", "name": "Again"}), 409)
        assert_json_error(client.post(url, json={"slug": "Bad Slug", "name": "Bad"}), 422)
        assert_json_error(client.post(url, json={"slug": "no-name"}), 422)
        assert [p["slug"] for p in client.get(url).json()] == ["app", "site"]


# -- command line ----------------------------------------------------------------------------------
def test_cli_token_create_prints_a_token_that_works_until_revoked(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    ws = api.workspace()
    assert main(["token", "create", "--workspace", ws.slug, "--name", "from-cli", *api.cli_options]) == 0
    captured = capsys.readouterr()
    secret = captured.out.strip()
    assert secret.startswith("adk_") and "\n" not in secret
    assert "shown" in captured.err or "copy it now" in captured.err
    with api.client(secret) as client:
        assert [w["slug"] for w in client.get("/api/workspaces").json()] == [ws.slug]

    assert main(["token", "list", *api.cli_options, "--workspace", ws.slug]) == 0
    [line] = capsys.readouterr().out.splitlines()
    token_id, name, prefix, state, _ = line.split("\t")
    assert (name, state) == ("from-cli", "active") and secret.startswith(prefix.rstrip("…"))
    assert secret not in line

    assert main([*api.cli_options, "token", "revoke", token_id]) == 0
    assert token_id in capsys.readouterr().out
    with api.client(secret) as client:
        assert_json_error(client.get("/api/workspaces"), 401)


def test_cli_token_commands_report_unknown_workspaces_and_ids(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--workspace", "no-such-workspace", *api.cli_options]) == 1
    assert main(["token", "revoke", str(uuid.uuid4()), *api.cli_options]) == 1
    assert main(["token", "revoke", "not-an-id", *api.cli_options]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("error:") == 3


def test_cli_token_revoke_needs_an_id(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["token", "revoke", "--data-dir", str(tmp_path)])


# -- the error mapping, in process (errors no route of this module can provoke yet) ----------------
@pytest.fixture
def error_app() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    raising = {
        "not-found": NotFound("agent", "42"),
        "invalid": InvalidInput("bad value"),
        "too-large": TooLarge("content over 10 characters"),
        "conflict": Conflict("name taken"),
        "transition": InvalidTransition("idle", "busy", ["active", "offline"]),
        "stale": StaleVersion(expected=3, current=5),
        "unauthorized": Unauthorized("invalid token"),
        "crash": RuntimeError("boom"),
    }

    @app.get("/api/raise/{kind}")
    def raise_it(kind: str) -> None:
        raise raising[kind]

    @app.websocket("/ws/raise/{kind}")
    async def raise_on_socket(websocket: WebSocket, kind: str, accept: bool = False) -> None:
        if accept:
            await websocket.accept()
        raise raising[kind]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("not-found", 404),
        ("invalid", 422),
        ("too-large", 413),
        ("conflict", 409),
        ("unauthorized", 401),
        ("crash", 500),
    ],
)
def test_domain_errors_map_to_one_http_status_each(error_app: TestClient, kind: str, status: int) -> None:
    response = error_app.get(f"/api/raise/{kind}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"detail"}


def test_a_refused_status_change_says_what_is_allowed(error_app: TestClient) -> None:
    response = error_app.get("/api/raise/transition")
    assert response.status_code == 409
    assert response.json() == {
        "detail": "cannot go from 'idle' to 'busy'; allowed: active, offline",
        "current": "idle",
        "target": "busy",
        "allowed": ["active", "offline"],
    }


def test_a_stale_version_says_which_version_is_current(error_app: TestClient) -> None:
    response = error_app.get("/api/raise/stale")
    assert response.status_code == 409
    assert response.json() | {"detail": ""} == {"detail": "", "current": 5, "expected": 3}


def test_a_websocket_error_refuses_the_handshake_or_closes_with_4000_plus_status(error_app: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as refused, error_app.websocket_connect("/ws/raise/unauthorized"):
        pass
    assert refused.value.status_code == 401
    assert refused.value.json() == {"detail": "invalid token"}
    with (
        error_app.websocket_connect("/ws/raise/not-found?accept=true") as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_text()
    assert closed.value.code == 4404
