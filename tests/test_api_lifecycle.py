"""The REST API end to end against the real app process: an agent's whole life (create, activate,
statuses, context versions, messages, deletion), a team run on the offline demo model, the event
log, LLM profiles, and bad input that must change nothing.

One app process serves the module; every test makes its own workspace and token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from core.config import Settings
from core.runs import RunCreate
from core.schemas import WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from core.services import Services, build_services
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database
from tests.llm_server import LlmServer
from tests.waiting import wait_until

RUN_WAIT = 120.0
FINISHED = {"completed", "failed", "cancelled", "interrupted"}


@dataclass
class Server:
    app: AppProcess
    services: Services  # a second connection to the app's database, for set-up only

    def workspace(self, code_execution: bool = False) -> WorkspacePublic:
        ws = self.services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:12]}"))
        # There is no API for workspace settings (yet): set it the way the dashboard does.
        return self.services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": code_execution}))

    def client(self, workspace: WorkspacePublic, token_name: str = "lifecycle") -> httpx.Client:
        _, secret = self.services.tokens.create(workspace.id, token_name)
        return httpx.Client(base_url=self.app.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("lifecycle") / "data"
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


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["detail"]
    return body


def create_agent(client: httpx.Client, ws: WorkspacePublic, name: str, definition: str = "assistant") -> Any:
    return ok(
        client.post("/api/agents", json={"workspace_id": str(ws.id), "definition": definition, "name": name}), 201
    )


# -- agents ----------------------------------------------------------------------------------------
def test_an_agent_is_created_activated_refused_a_transition_renamed_and_deleted(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        definitions = ok(client.get("/api/agents/definitions"))
        slugs = {d["slug"] for d in definitions}
        assert {"product-manager", "architect", "project-manager", "engineer", "qa-engineer", "assistant"} <= slugs

        agent = create_agent(client, ws, "Ada")
        assert (agent["status"], agent["definition"], agent["workspace_id"]) == ("idle", "assistant", str(ws.id))
        assert ok(client.get(f"/api/agents/{agent['id']}")) == agent

        active = ok(client.post(f"/api/agents/{agent['id']}/activate"))
        assert active["status"] == "active" and active["lock_version"] == agent["lock_version"] + 1

        refused = error(client.post(f"/api/agents/{agent['id']}/status", json={"status": "initializing"}), 409)
        assert refused["current"] == "active" and refused["target"] == "initializing"
        assert refused["allowed"] == ["busy", "idle", "error", "offline"]
        assert ok(client.get(f"/api/agents/{agent['id']}"))["status"] == "active"

        stale = client.post(f"/api/agents/{agent['id']}/status", json={"status": "offline", "expected_lock_version": 0})
        assert error(stale, 409)["current"] == active["lock_version"]
        offline = ok(client.post(f"/api/agents/{agent['id']}/status", json={"status": "offline", "reason": "night"}))
        assert (offline["status"], offline["status_reason"]) == ("offline", "night")

        history = ok(client.get(f"/api/agents/{agent['id']}/status/history"))
        assert [(c["from_status"], c["to_status"]) for c in history["items"]] == [
            ("active", "offline"),
            ("idle", "active"),
            (None, "idle"),
        ]
        assert history["items"][0]["actor"] == "token:lifecycle" and history["next_cursor"] is None
        first = ok(client.get(f"/api/agents/{agent['id']}/status/history", params={"limit": 2}))
        rest = ok(client.get(f"/api/agents/{agent['id']}/status/history", params={"cursor": first["next_cursor"]}))
        assert first["items"] + rest["items"] == history["items"] and rest["next_cursor"] is None

        other = create_agent(client, ws, "Grace")
        listed = ok(client.get("/api/agents"))
        assert [a["name"] for a in listed["items"]] == ["Ada", "Grace"] and listed["next_cursor"] is None
        assert [a["name"] for a in ok(client.get("/api/agents", params={"status": "offline"}))["items"]] == ["Ada"]
        assert [a["name"] for a in ok(client.get("/api/agents", params={"name": "rac"}))["items"]] == ["Grace"]
        page = ok(client.get("/api/agents", params={"limit": 1, "workspace_id": str(ws.id)}))
        assert [a["name"] for a in page["items"]] == ["Ada"]
        page = ok(client.get("/api/agents", params={"limit": 1, "cursor": page["next_cursor"]}))
        assert [a["name"] for a in page["items"]] == ["Grace"] and page["next_cursor"] is None

        error(client.patch(f"/api/agents/{other['id']}", json={"name": "Ada"}), 409)
        renamed = ok(client.patch(f"/api/agents/{other['id']}", json={"name": "Grace H.", "config": {"prompt": "hi"}}))
        assert renamed["name"] == "Grace H." and renamed["config"]["prompt"] == "hi"

        deleted = client.delete(f"/api/agents/{other['id']}")
        assert deleted.status_code == 204 and deleted.content == b""
        error(client.get(f"/api/agents/{other['id']}"), 404)
        error(client.delete(f"/api/agents/{other['id']}"), 404)
        error(client.get(f"/api/agents/{other['id']}/context"), 404)
        assert [a["name"] for a in ok(client.get("/api/agents"))["items"]] == ["Ada"]


# -- context ---------------------------------------------------------------------------------------
def test_context_versions_conflicts_rollback_and_diff(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        agent = create_agent(client, ws, "Keeper")
        url = f"/api/agents/{agent['id']}/context"
        assert ok(client.get(url))["version"] == 1 and ok(client.get(url))["data"] == {}

        v2 = ok(client.post(url, json={"data": {"goal": "ship", "notes": ["a"]}, "reason": "plan"}))
        assert (v2["version"], v2["data"]) == (2, {"goal": "ship", "notes": ["a"]})
        v3 = ok(client.post(url, json={"patch": {"notes": None, "owner": "ada"}, "expected_version": 2}))
        assert (v3["version"], v3["data"]) == (3, {"goal": "ship", "owner": "ada"})

        stale = error(client.post(url, json={"data": {"lost": True}, "expected_version": 2}), 409)
        assert (stale["current"], stale["expected"]) == (3, 2)
        assert ok(client.get(url))["version"] == 3

        back = ok(client.post(f"{url}/rollback", json={"version": 2, "reason": "undo"}))
        assert (back["version"], back["data"]) == (4, v2["data"])
        error(client.post(f"{url}/rollback", json={"version": 99}), 404)

        versions = ok(client.get(f"{url}/versions"))
        assert [v["version"] for v in versions["items"]] == [4, 3, 2, 1] and versions["next_cursor"] is None
        assert [v["reason"] for v in versions["items"]] == ["undo", "", "plan", "created"]
        assert {v["author"] for v in versions["items"]} == {"token:lifecycle"}
        first = ok(client.get(f"{url}/versions", params={"limit": 3}))
        rest = ok(client.get(f"{url}/versions", params={"limit": 3, "cursor": first["next_cursor"]}))
        assert [v["version"] for v in first["items"] + rest["items"]] == [4, 3, 2, 1] and rest["next_cursor"] is None

        assert ok(client.get(f"{url}/versions/3"))["data"] == {"goal": "ship", "owner": "ada"}
        assert ok(client.get(f"{url}/versions/1"))["data"] == {}
        error(client.get(f"{url}/versions/5"), 404)

        diff = ok(client.get(f"{url}/diff", params={"from": 2, "to": 3}))
        assert diff["from_data"] == v2["data"] and diff["to_data"] == v3["data"]
        assert sorted(op["op"] for op in diff["operations"]) == ["add", "remove"]
        error(client.get(f"{url}/diff", params={"from": 1, "to": 9}), 404)


# -- messages --------------------------------------------------------------------------------------
def test_messages_are_stored_answered_when_active_and_paged_both_ways(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        agent = create_agent(client, ws, "Chatty")
        url = f"/api/agents/{agent['id']}/messages"
        ok(client.post(f"/api/agents/{agent['id']}/activate"))

        sent = ok(client.post(url, json={"content": "hello there", "metadata": {"via": "test"}}), 201)
        assert (sent["seq"], sent["sender"], sent["role"], sent["metadata"]) == (1, "user", "user", {"via": "test"})

        def answered() -> Any:
            page = ok(client.get(url))
            status = ok(client.get(f"/api/agents/{agent['id']}"))["status"]
            return page if len(page["items"]) == 2 and status == "active" else None

        thread = wait_until(answered, 90, "the active agent's answer")
        reply = thread["items"][0]
        assert reply["seq"] == 2 and reply["sender"] == "Chatty" and reply["content"].startswith("(demo model)")

        # An idle agent keeps messages without answering them.
        ok(client.post(f"/api/agents/{agent['id']}/status", json={"status": "idle"}))
        for n in range(3, 8):
            assert ok(client.post(url, json={"content": f"note {n}"}), 201)["seq"] == n
        everything = ok(client.get(url, params={"limit": 500}))
        assert [m["seq"] for m in everything["items"]] == [7, 6, 5, 4, 3, 2, 1] and everything["next_cursor"] is None

        backwards, cursors, cursor = [], [], None
        while True:
            page = ok(client.get(url, params={"limit": 2, **({"before": cursor} if cursor else {})}))
            backwards += [m["seq"] for m in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            cursors.append(cursor)
        assert backwards == [7, 6, 5, 4, 3, 2, 1] and len(cursors) == 3

        # `after` walks forward (oldest first) from any cursor: here from the one after seq 2.
        forwards, cursor = [], cursors[-1]
        while cursor is not None:
            page = ok(client.get(url, params={"limit": 2, "after": cursor}))
            forwards += [m["seq"] for m in page["items"]]
            cursor = page["next_cursor"]
        assert forwards == [3, 4, 5, 6, 7]

        error(client.get(url, params={"before": cursors[0], "after": cursors[0]}), 422)
        error(client.get(url, params={"before": "not a cursor"}), 422)

        found = ok(client.get("/api/messages/search", params={"q": "hello"}))
        assert sent["id"] in [m["id"] for m in found["items"]]  # the demo reply may quote it
        assert ok(client.get("/api/messages/search", params={"q": "note 5"}))["items"][0]["seq"] == 5


# -- team runs -------------------------------------------------------------------------------------
def test_a_demo_model_team_run_completes_with_messages_files_and_events(server: Server) -> None:
    ws = server.workspace(code_execution=False)
    with server.client(ws) as client:
        pm = create_agent(client, ws, "Alice", "product-manager")
        architect = create_agent(client, ws, "Bob", "architect")
        for agent in (pm, architect):
            ok(client.post(f"/api/agents/{agent['id']}/activate"))

        body = {"workspace_id": str(ws.id), "agent_ids": [pm["id"], architect["id"]], "idea": "a CLI todo app"}
        queued = ok(client.post("/api/runs", json={**body, "n_rounds": 5, "investment": 2.0}), 202)
        assert queued["status"] == "queued" and {m["agent_name"] for m in queued["members"]} == {"Alice", "Bob"}

        def finished() -> Any:
            run = ok(client.get(f"/api/runs/{queued['id']}"))
            return run if run["status"] in FINISHED else None

        run = wait_until(finished, RUN_WAIT, "the run to finish")
        assert run["status"] == "completed", run["error"]
        assert run["llm_label"] == "demo model" and run["finished_at"] is not None
        assert run["tokens"] == run["prompt_tokens"] + run["completion_tokens"]
        assert [r["id"] for r in ok(client.get("/api/runs"))["items"]] == [run["id"]]
        assert ok(client.get("/api/runs", params={"status": "completed"}))["items"][0]["id"] == run["id"]
        assert ok(client.get("/api/runs", params={"status": "running"}))["items"] == []
        error(client.post(f"/api/runs/{run['id']}/cancel"), 409)

        transcript = ok(client.get(f"/api/runs/{run['id']}/messages", params={"limit": 500}))
        causes = [m["cause_by"] for m in transcript["items"]]
        assert causes[:3] == ["UserRequirement", "WritePRD", "WriteDesign"], causes
        assert all(m["run_id"] == run["id"] for m in transcript["items"])
        first = ok(client.get(f"/api/runs/{run['id']}/messages", params={"limit": 1}))
        second = ok(client.get(f"/api/runs/{run['id']}/messages", params={"limit": 1, "cursor": first["next_cursor"]}))
        assert [m["id"] for m in first["items"] + second["items"]] == [m["id"] for m in transcript["items"][:2]]

        files = ok(client.get(f"/api/runs/{run['id']}/files"))
        prd = [f for f in files if "/docs/prd/" in f and f.endswith(".json")]
        assert prd, files
        text = client.get(f"/api/runs/{run['id']}/files/{prd[0]}")
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
        assert text.text.strip().startswith("{")
        # %2F: httpx would resolve a literal "../" before sending it.
        error(client.get(f"/api/runs/{run['id']}/files/..%2F..%2F..%2Fsecret.key"), 404)
        error(client.get(f"/api/runs/{run['id']}/files/%2Fetc%2Fpasswd"), 404)
        error(client.get(f"/api/runs/{run['id']}/files/no/such/file.txt"), 404)

        run_events = ok(client.get("/api/events", params={"run_id": run["id"], "limit": 500}))["items"]
        types = [e["type"] for e in run_events]
        assert types[:2] == ["run_created", "run_started"] and types[-1] == "run_finished" and "run_round" in types
        for agent in (pm, architect):
            assert ok(client.get(f"/api/agents/{agent['id']}"))["status"] == "active"


def test_a_queued_run_is_cancelled_and_stays_cancelled(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        agent = create_agent(client, ws, "Solo")
        # A run record nobody executes (made beside the app): cancelling it just records it.
        run = server.services.runs.create(
            RunCreate(workspace_id=ws.id, agent_ids=[uuid.UUID(agent["id"])], idea="never started")
        )
        cancelled = ok(client.post(f"/api/runs/{run.id}/cancel"))
        assert cancelled["status"] == "cancelled" and "token:lifecycle" in cancelled["stop_reason"]
        error(client.post(f"/api/runs/{run.id}/cancel"), 409)
        assert ok(client.get(f"/api/runs/{run.id}/files")) == []
        assert ok(client.get(f"/api/runs/{run.id}/messages")) == {"items": [], "next_cursor": None}


# -- events ----------------------------------------------------------------------------------------
def test_events_resume_after_since_without_gaps_or_duplicates(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        empty = ok(client.get("/api/events", params={"since": 0}))
        assert empty == {"items": [], "next_since": 0}

        agent = create_agent(client, ws, "Watched")
        ok(client.post(f"/api/agents/{agent['id']}/activate"))
        ok(client.post(f"/api/agents/{agent['id']}/context", json={"data": {"k": 1}}))
        everything = ok(client.get("/api/events"))
        types = [e["type"] for e in everything["items"]]
        assert types == ["agent_created", "agent_status_changed", "agent_context_updated"]
        seqs = [e["seq"] for e in everything["items"]]
        assert seqs == sorted(seqs) and everything["next_since"] == seqs[-1]
        assert all(e["workspace_id"] == str(ws.id) and e["agent_id"] == agent["id"] for e in everything["items"])

        walked, since = [], 0
        while True:
            page = ok(client.get("/api/events", params={"since": since, "limit": 1}))
            if not page["items"]:
                assert page["next_since"] == since
                break
            walked += page["items"]
            since = page["next_since"]
        assert walked == everything["items"]

        ok(client.patch(f"/api/agents/{agent['id']}", json={"name": "Renamed"}))
        newer = ok(client.get("/api/events", params={"since": everything["next_since"]}))
        assert [e["type"] for e in newer["items"]] == ["agent_updated"]
        assert newer["items"][0]["data"]["agent"]["name"] == "Renamed"
        assert ok(client.get("/api/events", params={"agent_id": str(uuid.uuid4())}))["items"] == []


# -- LLM profiles ----------------------------------------------------------------------------------
def test_llm_profiles_never_return_the_key(server: Server) -> None:
    ws = server.workspace()
    key = "sk-live-" + uuid.uuid4().hex
    url = f"/api/workspaces/{ws.id}/llm-profiles"
    with server.client(ws) as client:
        profile = ok(
            client.post(url, json={"name": "local", "api_type": "openai", "model": "llama3", "api_key": key}), 201
        )
        assert profile["has_api_key"] and profile["is_default"] and key not in str(profile)
        assert profile["api_key_hint"].endswith(key[-4:])
        error(client.post(url, json={"name": "local", "api_type": "openai", "model": "x"}), 409)
        error(client.post(url, json={"name": "bad", "api_type": "nonsense", "model": "x"}), 422)
        listed = client.get(url)
        assert key not in listed.text and [p["name"] for p in listed.json()] == ["local"]

        changed = ok(client.patch(f"/api/llm-profiles/{profile['id']}", json={"model": "llama3.1", "api_key": ""}))
        assert changed["model"] == "llama3.1" and not changed["has_api_key"] and changed["api_key_hint"] is None

        # Nothing listens on port 9: the test answers at once that the endpoint is unreachable.
        ok(client.patch(f"/api/llm-profiles/{profile['id']}", json={"base_url": "http://127.0.0.1:9/v1"}))
        tested = ok(client.post(f"/api/llm-profiles/{profile['id']}/test"))
        assert tested["ok"] is False and tested["message"] and tested["seconds"] >= 0
        error(client.post(f"/api/llm-profiles/{uuid.uuid4()}/test"), 404)

        assert client.delete(f"/api/llm-profiles/{profile['id']}").status_code == 204
        error(client.patch(f"/api/llm-profiles/{profile['id']}", json={"model": "x"}), 404)
        error(client.delete(f"/api/llm-profiles/{profile['id']}"), 404)
        assert ok(client.get(url)) == []


def test_a_run_uses_the_llm_profile_it_names_and_an_unknown_one_is_422_creating_nothing(server: Server) -> None:
    ws = server.workspace()
    other = server.workspace()
    url = f"/api/workspaces/{ws.id}/llm-profiles"
    with LlmServer() as first, LlmServer() as second, server.client(ws) as client:
        for name, llm in (("first", first), ("second", second)):  # "first" is the workspace's default
            profile = {"name": name, "api_type": "openai", "model": f"{name}-model", "base_url": llm.base_url}
            ok(client.post(url, json={**profile, "api_key": "sk-test"}), 201)
        with server.client(other, "other") as theirs:
            ok(theirs.post(f"/api/workspaces/{other.id}/llm-profiles", json={**profile, "name": "theirs"}), 201)
        helper = create_agent(client, ws, "Helper")
        ok(client.post(f"/api/agents/{helper['id']}/activate"))
        body = {"workspace_id": str(ws.id), "agent_ids": [helper["id"]], "idea": "say hello", "n_rounds": 1}

        for bad in ("no-such-profile", "theirs", "", "x" * 201, 7, "nul\x00"):
            error(client.post("/api/runs", json={**body, "llm_profile": bad}), 422)
        assert ok(client.get("/api/runs"))["items"] == []

        queued = ok(client.post("/api/runs", json={**body, "llm_profile": "second"}), 202)
        assert queued["llm_profile"] == "second"

        def finished() -> Any:
            run = ok(client.get(f"/api/runs/{queued['id']}"))
            return run if run["status"] in FINISHED else None

        run = wait_until(finished, RUN_WAIT, "the run to finish")
        assert run["status"] == "completed", run["error"]
        assert (run["llm_profile"], run["llm_label"]) == ("second", "openai · second-model (profile: second)")
        assert ok(client.get("/api/runs"))["items"][0]["llm_label"] == run["llm_label"]
        assert second.chat_requests and first.chat_requests == []


# -- bad input -------------------------------------------------------------------------------------
def test_bad_input_is_422_and_writes_nothing(server: Server) -> None:
    ws = server.workspace()
    with server.client(ws) as client:
        raw = {"Content-Type": "application/json"}
        base = {"workspace_id": str(ws.id), "definition": "assistant", "name": "Valid"}
        for bad in (
            {**base, "name": 123},
            {**base, "name": ""},
            {**base, "config": "not an object"},
            {**base, "workspace_id": "not-a-uuid"},
            {k: v for k, v in base.items() if k != "name"},
            {k: v for k, v in base.items() if k != "definition"},
            {**base, "config": {"temperature": "hot"}},
            {**base, "definition": "assist\x00ant"},
        ):
            error(client.post("/api/agents", json=bad), 422)
        error(client.post("/api/agents", content=b'{"name": "x",', headers=raw), 422)
        error(client.post("/api/agents", content=b"[]", headers=raw), 422)
        error(client.post("/api/agents", json={**base, "definition": "no-such-role"}), 404)
        assert ok(client.get("/api/agents"))["items"] == []

        agent = create_agent(client, ws, "Target")
        aid = agent["id"]
        for bad in (
            {"data": {"a": 1}, "patch": {"b": 2}},
            {},
            {"data": [1, 2]},
            {"data": {"a": 1}, "expected_version": 0},
        ):
            error(client.post(f"/api/agents/{aid}/context", json=bad), 422)
        error(client.post(f"/api/agents/{aid}/context", content=b"{", headers=raw), 422)
        error(client.post(f"/api/agents/{aid}/context/rollback", json={"version": "one"}), 422)
        assert ok(client.get(f"/api/agents/{aid}/context/versions"))["items"][0]["version"] == 1

        for bad in ({"content": ""}, {"content": 5}, {"metadata": {}}, {"content": "x", "metadata": "m"}):
            error(client.post(f"/api/agents/{aid}/messages", json=bad), 422)
        error(client.post(f"/api/agents/{aid}/messages", json={"content": "   "}), 422)
        assert ok(client.get(f"/api/agents/{aid}/messages"))["items"] == []

        for bad in ({"status": "sleeping"}, {"status": ""}, {}, {"status": "active", "reason": 7}):
            error(client.post(f"/api/agents/{aid}/status", json=bad), 422)
        error(client.patch(f"/api/agents/{aid}", json={"name": ""}), 422)
        error(client.patch(f"/api/agents/{aid}", json={"config": []}), 422)
        assert ok(client.get(f"/api/agents/{aid}")) == agent
        assert len(ok(client.get(f"/api/agents/{aid}/status/history"))["items"]) == 1

        run = {"workspace_id": str(ws.id), "agent_ids": [aid], "idea": "x"}
        for bad in (
            {**run, "agent_ids": []},
            {**run, "agent_ids": [aid, aid]},
            {**run, "idea": "  "},
            {**run, "n_rounds": 0},
            {**run, "investment": -1},
            {k: v for k, v in run.items() if k != "idea"},
        ):
            error(client.post("/api/runs", json=bad), 422)
        assert ok(client.get("/api/runs"))["items"] == []

        for params in ({"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"status": "sleeping"}):
            error(client.get("/api/agents", params=params), 422)
        error(client.get("/api/agents", params={"cursor": "garbage"}), 422)
        error(client.get("/api/events", params={"since": -1}), 422)
        error(client.get(f"/api/agents/{aid}/context/diff", params={"from": 1}), 422)
        error(client.get(f"/api/agents/{aid}/context/versions/0"), 422)
        error(client.get("/api/agents/not-a-uuid"), 422)
        assert [e["type"] for e in ok(client.get("/api/events"))["items"]] == ["agent_created"]


def test_unknown_ids_are_404(server: Server) -> None:
    ws = server.workspace()
    unknown = uuid.uuid4()
    with server.client(ws) as client:
        for response in (
            client.get(f"/api/agents/{unknown}"),
            client.patch(f"/api/agents/{unknown}", json={"name": "x"}),
            client.delete(f"/api/agents/{unknown}"),
            client.post(f"/api/agents/{unknown}/activate"),
            client.post(f"/api/agents/{unknown}/status", json={"status": "active"}),
            client.get(f"/api/agents/{unknown}/status/history"),
            client.get(f"/api/agents/{unknown}/context"),
            client.post(f"/api/agents/{unknown}/context", json={"data": {}}),
            client.get(f"/api/agents/{unknown}/context/versions"),
            client.get(f"/api/agents/{unknown}/context/versions/1"),
            client.post(f"/api/agents/{unknown}/context/rollback", json={"version": 1}),
            client.get(f"/api/agents/{unknown}/context/diff", params={"from": 1, "to": 1}),
            client.get(f"/api/agents/{unknown}/messages"),
            client.post(f"/api/agents/{unknown}/messages", json={"content": "hi"}),
            client.get(f"/api/runs/{unknown}"),
            client.post(f"/api/runs/{unknown}/cancel"),
            client.get(f"/api/runs/{unknown}/messages"),
            client.get(f"/api/runs/{unknown}/files"),
            client.get(f"/api/runs/{unknown}/files/docs/prd.json"),
            client.patch(f"/api/llm-profiles/{unknown}", json={"name": "x"}),
            client.delete(f"/api/llm-profiles/{unknown}"),
            client.get(f"/api/workspaces/{unknown}/llm-profiles"),
            client.get("/api/agents", params={"workspace_id": str(unknown)}),
            client.post("/api/runs", json={"workspace_id": str(ws.id), "agent_ids": [str(unknown)], "idea": "x"}),
        ):
            error(response, 404)


def test_every_new_route_needs_a_token(server: Server) -> None:
    with httpx.Client(base_url=server.app.base_url, timeout=10) as client:
        for response in (
            client.get("/api/agents/definitions"),
            client.get("/api/agents"),
            client.get("/api/runs"),
            client.get("/api/events"),
            client.get("/api/messages/search", params={"q": "x"}),
            client.post(f"/api/agents/{uuid.uuid4()}/messages", json={"content": "hi"}),
        ):
            assert error(response, 401) and response.headers["www-authenticate"] == "Bearer"


def test_openapi_describes_every_route_with_its_models(server: Server) -> None:
    with httpx.Client(base_url=server.app.base_url, timeout=10) as client:
        schema = ok(client.get("/openapi.json"))
    paths = schema["paths"]
    expected = {
        "/api/agents/definitions": {"get"},
        "/api/agents": {"get", "post"},
        "/api/agents/{agent_id}": {"get", "patch", "delete"},
        "/api/agents/{agent_id}/activate": {"post"},
        "/api/agents/{agent_id}/status": {"post"},
        "/api/agents/{agent_id}/status/history": {"get"},
        "/api/agents/{agent_id}/context": {"get", "post"},
        "/api/agents/{agent_id}/context/versions": {"get"},
        "/api/agents/{agent_id}/context/versions/{version}": {"get"},
        "/api/agents/{agent_id}/context/rollback": {"post"},
        "/api/agents/{agent_id}/context/diff": {"get"},
        "/api/agents/{agent_id}/messages": {"get", "post"},
        "/api/messages/search": {"get"},
        "/api/runs": {"get", "post"},
        "/api/runs/{run_id}": {"get"},
        "/api/runs/{run_id}/cancel": {"post"},
        "/api/runs/{run_id}/resume": {"post"},
        "/api/runs/{run_id}/messages": {"get"},
        "/api/runs/{run_id}/files": {"get"},
        "/api/runs/{run_id}/files/{file_path}": {"get"},
        "/api/events": {"get"},
        "/api/workspaces/{workspace_id}/llm-profiles": {"get", "post"},
        "/api/llm-profiles/{profile_id}": {"patch", "delete"},
        "/api/llm-profiles/{profile_id}/test": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert set(paths["/api/agents"]["post"]["responses"]) >= {"201", "401", "404", "409", "422"}
    assert set(paths["/api/runs"]["post"]["responses"]) >= {"202", "404", "409", "422"}
    assert set(paths["/api/runs/{run_id}/resume"]["post"]["responses"]) >= {"202", "404", "409"}
    assert "204" in paths["/api/agents/{agent_id}"]["delete"]["responses"]
    limit = next(p for p in paths["/api/agents"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
    profile = schema["components"]["schemas"]["LlmProfilePublic"]["properties"]
    assert "api_key" not in profile and "api_key_encrypted" not in profile
    refusal = paths["/api/agents/{agent_id}/status"]["post"]["responses"]["409"]["content"]["application/json"]
    assert "TransitionRefused" in str(refusal)
