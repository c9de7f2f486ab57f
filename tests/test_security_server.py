"""Every door of the server, tried as an attacker with one workspace's token would (issue 12).

One real server process (tests/app_process.py) with the default rate limit; each test names the
point of the issue it proves.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.pagination import encode_cursor
from core.schemas import ProjectCreate, WorkspaceCreate
from core.services import Services, build_services
from core.tokens import TokenService
from tests.app_process import AppProcess
from tests.db import create_pg_database, drop_pg_database

USE_POSTGRES = bool(os.environ.get("TEST_DATABASE_URL"))


class Server:
    def __init__(self, app: AppProcess, services: Services) -> None:
        self.app = app
        self.services = services

    def workspace(self) -> uuid.UUID:
        return self.services.workspaces.create(WorkspaceCreate(slug=f"sec-{uuid.uuid4().hex[:10]}")).id

    def token(self, workspace_id: uuid.UUID, *, admin: bool = False) -> str:
        return self.services.tokens.create(workspace_id, "t", admin=admin)[1]

    def client(self, secret: str | None = None, **headers: str) -> httpx.Client:
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        return httpx.Client(base_url=self.app.base_url, headers=headers, timeout=30)


def start_server(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("sec") / "data"
    database_url = create_pg_database() if USE_POSTGRES else None
    try:
        with AppProcess(data_dir, database_url=database_url, env=env) as app:
            services = build_services(Settings(data_dir=data_dir, database_url=database_url))
            yield Server(app, services)
            services.db.dispose()
    finally:
        if database_url:
            drop_pg_database(database_url)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(tmp_path_factory, {"AGENTDECK_MAX_CONCURRENT_RUNS": "2", "AGENTDECK_MAX_WS_PER_TOKEN": "2"})


@pytest.fixture
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The default budget (600) over an hour, so how fast this machine sends the requests does not matter.
    yield from start_server(tmp_path_factory, {"AGENTDECK_RATE_LIMIT": "600/hour"})


# -- point 4: Host and Origin ------------------------------------------------------------------
def test_a_foreign_host_name_is_refused(server: Server) -> None:
    with server.client(Host="evil.example") as client:
        assert client.get("/api/health").status_code == 400
        assert client.get("/").status_code == 400
    with server.client(Host="localhost") as client:
        assert client.get("/api/health").status_code == 200


def test_a_foreign_origin_is_refused_on_socketio_and_api(server: Server) -> None:
    handshake = "/_nicegui_ws/socket.io/?EIO=4&transport=polling"
    with server.client(Origin="http://evil.example") as client:
        assert client.get(handshake).status_code == 403
        assert client.get("/api/health").status_code == 403
    with server.client(Origin=server.app.base_url) as client:
        assert client.get(handshake).status_code == 200


def test_the_api_lane_keeps_host_and_origin_checks_and_leaves_out_the_dashboard_session(server: Server) -> None:
    # API requests skip NiceGUI's middlewares (api/lane.py), never the guards.
    with server.client(Host="evil.example") as client:
        assert client.get("/metrics").status_code == 400
        assert client.get("/ws/agents/stream").status_code == 400
    with server.client(Origin="http://evil.example") as client:
        assert client.get("/metrics").status_code == 403
        assert client.post("/api/workspaces", json={}).status_code == 403
    with server.client() as client:
        assert "set-cookie" not in client.get("/api/health").headers
        assert client.get("/api/agents").status_code == 401
        assert "session=" in client.get("/").headers.get("set-cookie", ""), "pages keep their session"
        # The API's own gzip: big answers are compressed when the client asks.
        assert client.get("/metrics", headers={"Accept-Encoding": "gzip"}).headers["content-encoding"] == "gzip"


def test_an_empty_host_counts_as_non_loopback() -> None:
    from main import StartupError, check_bind_address

    with pytest.raises(StartupError):
        check_bind_address(Settings(host=""))


# -- point 7: limits -----------------------------------------------------------------------------
def test_distinct_bogus_tokens_share_the_clients_budget(limited_server: Server) -> None:
    statuses: list[int] = []
    with limited_server.client() as client:
        for _ in range(700):
            bogus = f"adk_{uuid.uuid4().hex}"
            statuses.append(client.get("/api/agents", headers={"Authorization": f"Bearer {bogus}"}).status_code)
    assert set(statuses) <= {401, 429}
    assert statuses.count(429) >= 100, "a fresh bogus token per request must not escape the limit"


def test_a_valid_token_has_its_own_budget_once_validated() -> None:
    from api.limits import rate_key

    scope = {"type": "http", "headers": [(b"authorization", b"Bearer adk_unknown")], "client": ("10.0.0.9", 1)}
    assert rate_key(scope) == "ip:10.0.0.9"


def agent(server: Server, ws: uuid.UUID, name: str = "a") -> uuid.UUID:
    from core.schemas import AgentCreate

    return server.services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name=name)).id


def queued_run(server: Server, ws: uuid.UUID) -> uuid.UUID:
    from core.runs import RunCreate

    return server.services.runs.create(
        RunCreate(workspace_id=ws, agent_ids=[agent(server, ws, uuid.uuid4().hex)], idea="i")
    ).id


def test_runs_per_workspace_are_capped_and_projects_must_be_the_workspaces(server: Server) -> None:
    ws = server.workspace()
    other = server.workspace()
    project = server.services.workspaces.create_project(other, ProjectCreate(slug="p", name="p"))
    member = agent(server, ws)
    with server.client(server.token(ws)) as client:
        body = {"workspace_id": str(ws), "agent_ids": [str(member)], "idea": "x", "project_id": str(project.id)}
        assert client.post("/api/runs", json=body).status_code == 404
        body["project_id"] = str(uuid.uuid4())
        assert client.post("/api/runs", json=body).status_code == 404
        assert server.services.runs.list(ws).items == [], "a refused run is not created"
        # Two queued runs (this server's limit), then a third is refused.
        queued_run(server, ws)
        queued_run(server, ws)
        body = {"workspace_id": str(ws), "agent_ids": [str(member)], "idea": "x"}
        response = client.post("/api/runs", json=body)
        assert response.status_code == 409 and "limit" in response.json()["detail"]


def test_websockets_per_token_are_capped(server: Server) -> None:
    from websockets.sync.client import connect

    ws = server.workspace()
    secret = server.token(ws)
    url = server.app.base_url.replace("http", "ws") + f"/ws/agents/stream?token={secret}"
    first, second = connect(url), connect(url)
    try:
        with pytest.raises(Exception):  # noqa: B017 - refused handshake
            connect(url).close()
    finally:
        first.close()
        second.close()
    connect(url).close()  # a slot is free again


# -- point 8: data -------------------------------------------------------------------------------
def test_data_dir_and_files_are_the_owners_only(server: Server) -> None:
    data_dir = server.app.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("storage_secret", "agentdeck.db"):
        path = data_dir / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert (data_dir / "storage_secret").exists()


def test_deep_json_is_422_and_reads_stay_200(server: Server) -> None:
    ws = server.workspace()
    deep: object = "leaf"
    for _ in range(300):
        deep = {"d": deep}
    with server.client(server.token(ws)) as client:
        agent = client.post("/api/agents", json={"workspace_id": str(ws), "definition": "assistant", "name": "deep"})
        assert agent.status_code == 201
        agent_id = agent.json()["id"]
        assert client.post(f"/api/agents/{agent_id}/context", json={"data": {"x": deep}}).status_code == 422
        assert client.patch(f"/api/agents/{agent_id}", json={"config": {"x": deep}}).status_code == 422
        bad = client.post(f"/api/agents/{agent_id}/messages", json={"content": "hi", "metadata": {"x": deep}})
        assert bad.status_code == 422
        assert client.get(f"/api/agents/{agent_id}/context").status_code == 200
        assert client.get(f"/api/agents/{agent_id}").status_code == 200


@pytest.mark.parametrize(
    "cursor",
    [
        # Fixed ids: parallel test workers must collect the same parameters.
        encode_cursor("2024-01-01T00:00:00", "7b8b5631-e793-403d-bc34-2a02a42bcf45"),  # naive
        encode_cursor("0001-01-01T00:00:00-01:00", "4843bc6d-45e4-468c-a17e-b31b1b662285"),  # overflows
        encode_cursor("9999-12-31T23:59:59+00:00", "a7c6b348-dfe5-4d75-a56c-8bdea1005bb3"),
        encode_cursor("2024-01-01T00:00:00+00:00", "not-a-uuid"),
        encode_cursor(2**70),
        "!!!",
        "x" * 5000,
    ],
)
def test_crafted_cursors_are_422_on_every_list(server: Server, cursor: str) -> None:
    ws = server.workspace()
    with server.client(server.token(ws)) as client:
        agent_id = client.post(
            "/api/agents", json={"workspace_id": str(ws), "definition": "assistant", "name": "c"}
        ).json()["id"]
        run_id = queued_run(server, ws)
        for path, param in (
            ("/api/runs", "cursor"),
            (f"/api/runs/{run_id}/messages", "cursor"),
            ("/api/agents", "cursor"),
            (f"/api/agents/{agent_id}/messages", "before"),
            (f"/api/agents/{agent_id}/messages", "after"),
            (f"/api/agents/{agent_id}/status/history", "cursor"),
            (f"/api/agents/{agent_id}/context/versions", "cursor"),
            ("/api/messages/search?q=x", "cursor"),
        ):
            response = client.get(path, params={param: cursor})
            assert response.status_code in {404, 422}, (path, response.status_code, response.text)
            assert response.status_code != 500


def test_a_5000_character_run_file_path_is_404(server: Server) -> None:
    ws = server.workspace()
    run_id = queued_run(server, ws)
    with server.client(server.token(ws)) as client:
        response = client.get(f"/api/runs/{run_id}/files/{'a' * 5000}")
        assert response.status_code == 404


def test_only_admin_tokens_create_workspaces_or_switch_code_execution(server: Server) -> None:
    ws = server.workspace()
    with server.client(server.token(ws)) as client:
        assert client.post("/api/workspaces", json={"slug": f"n-{uuid.uuid4().hex[:6]}"}).status_code == 403
        assert client.patch(f"/api/workspaces/{ws}", json={"code_execution": True}).status_code == 403
        assert client.patch(f"/api/workspaces/{server.workspace()}", json={"name": "x"}).status_code == 404
    with server.client(server.token(ws, admin=True)) as admin:
        assert admin.post("/api/workspaces", json={"slug": f"n-{uuid.uuid4().hex[:6]}"}).status_code == 201
        response = admin.patch(f"/api/workspaces/{ws}", json={"code_execution": True})
        assert response.status_code == 200 and response.json()["settings"]["code_execution"] is True


def test_new_workspaces_start_with_code_execution_off(server: Server) -> None:
    from core.workspaces import code_execution_enabled

    ws = server.services.workspaces.get(server.workspace())
    assert code_execution_enabled(ws.settings) is False


def test_workspace_set_command_switches_code_execution(server: Server) -> None:
    import subprocess
    import sys

    ws = server.services.workspaces.get(server.workspace())
    args = [sys.executable, "main.py", "--data-dir", str(server.app.data_dir)]
    env = dict(server.app.env)
    out = subprocess.run(
        [*args, "workspace", "set", ws.slug, "--code-execution", "on"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "code execution on" in out.stdout
    assert server.services.workspaces.get(ws.id).settings["code_execution"] is True


# -- the token cache -----------------------------------------------------------------------------
def test_the_validated_token_cache_expires_and_forgets_revoked_tokens(server: Server) -> None:
    from core.tokens import hash_secret

    now = [0.0]
    tokens = TokenService(server.services.db, cache_seconds=5, recheck_seconds=0.5, monotonic=lambda: now[0])
    other = TokenService(server.services.db, sleep=lambda seconds: None)  # "another process" revokes
    ws = server.workspace()
    token, secret = tokens.create(ws, "x")
    assert tokens.cached(hash_secret(secret)) is None, "not validated yet: rate-limited by address"
    tokens.authenticate(secret)
    assert tokens.cached(hash_secret(secret)) is not None
    other.revoke(token.id)  # (its wait for this process's window is skipped here...)
    now[0] += 0.5  # (... and made by hand)
    with pytest.raises(Exception, match="revoked"):
        tokens.authenticate(secret)  # revoked elsewhere: refused once the recheck window is over
    now[0] += 5.1
    assert tokens.cached(hash_secret(secret)) is None  # and it expires from the limiter's cache
    token2, secret2 = tokens.create(ws, "y")
    tokens.authenticate(secret2)
    tokens.revoke(token2.id)  # revoked here: forgotten at once
    assert tokens.cached(hash_secret(secret2)) is None
    with pytest.raises(Exception, match="revoked"):
        tokens.authenticate(secret2)


def test_a_token_revoked_by_another_process_is_refused_by_the_server_at_once(server: Server) -> None:
    ws = server.workspace()
    token, secret = server.services.tokens.create(ws, "soon revoked")
    with server.client(secret) as client:
        for _ in range(3):
            assert client.get("/api/workspaces").status_code == 200  # validated, cached by the server
        server.services.tokens.revoke(token.id)  # this test process is "another process"
        assert client.get("/api/workspaces").status_code == 401


def test_the_password_can_come_from_a_file_and_the_flag_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from main import StartupError, build_parser, settings_from_args

    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file\n")
    settings = settings_from_args(build_parser().parse_args(["--password-file", str(secret_file)]))
    assert settings.password == "from-a-file"
    with pytest.raises(StartupError):
        settings_from_args(build_parser().parse_args(["--password-file", str(tmp_path / "missing")]))
    settings_from_args(build_parser().parse_args(["--password", "on-the-command-line"]))
    assert "visible to every local user" in caplog.text
