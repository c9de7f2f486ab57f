"""A run outlives its process: the app (a real `main.py` process) is SIGKILLed mid-run, started
again on the same data dir, and the run completes there without paying its finished rounds again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.llm_profiles import LlmProfileCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from core.status import RUN_FINISHED, RunStatus
from core.tokens import TokenService
from tests.app_process import AppProcess
from tests.db import USE_POSTGRES, create_pg_database, drop_pg_database
from tests.llm_server import LlmServer
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WAIT = 120.0
TRANSCRIPT = [
    ("user", "UserRequirement"),
    ("Alice", "WritePRD"),
    ("Bob", "WriteDesign"),
    ("Carol", "WriteTasks"),
]


@pytest.fixture
def database_url() -> Iterator[str | None]:
    url = create_pg_database("agentdeck_durable") if USE_POSTGRES else None
    yield url
    if url:
        drop_pg_database(url)


def _local(data_dir: Path, database_url: str | None) -> Services:
    """The test's own view of the app's database (no runtime launched here)."""
    return build_services(Settings(data_dir=data_dir, database_url=database_url))


def _transcript(services: Services, run_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(m.sender, m.cause_by) for m in services.messages.list_run(run_id, limit=200).items]


def test_sigkill_mid_run_then_restart_completes_the_run_without_paying_finished_rounds_again(
    tmp_path: Path, database_url: str | None
) -> None:
    data_dir = tmp_path / "data"
    env = {"AGENTDECK_RATE_LIMIT": "off", "AGENTDECK_LLM_TIMEOUT": "10"}
    with LlmServer() as llm:
        app = AppProcess(data_dir, database_url=database_url, env=env).start()
        local = _local(data_dir, database_url)
        try:
            ws_id, team, headers = _seed_team(local, llm)
            body = {"workspace_id": str(ws_id), "agent_ids": team, "idea": "a CLI todo app", "n_rounds": 6}

            def start(client: httpx.Client) -> uuid.UUID:
                response = client.post("/api/runs", json=body)
                assert response.status_code == 202, response.text
                return uuid.UUID(response.json()["id"])

            # An uninterrupted run: its transcript and how many LLM requests it takes.
            with httpx.Client(base_url=app.base_url, headers=headers, timeout=10) as client:
                reference = start(client)
                wait_until(lambda: local.runs.get(reference).status in {"completed", "failed"}, WAIT, "the first run")
            assert local.runs.get(reference).status == RunStatus.COMPLETED, local.runs.get(reference).error
            assert _transcript(local, reference) == TRANSCRIPT
            uninterrupted = len(llm.chat_requests)
            round_one = sum(1 for b in llm.chat_bodies if "Product Manager" in json.dumps(b["messages"][:1]))
            llm.clear_requests()

            llm.token_delay = 0.05
            with httpx.Client(base_url=app.base_url, headers=headers, timeout=10) as client:
                run_id = start(client)
            wait_until(lambda: local.runs.get(run_id).current_round >= 2, WAIT, "round 2")
            wait_until(lambda: len(llm.chat_requests) > round_one, WAIT, "a request of round 2")
            assert app.proc is not None
            app.proc.kill()  # SIGKILL: no shutdown, no cleanup
            app.proc.wait()
            at_kill = len(llm.chat_requests)
            assert local.runs.get(run_id).status == RunStatus.RUNNING
            llm.token_delay = 0.0

            app = AppProcess(data_dir, database_url=database_url, env=env).start()
            wait_until(lambda: local.runs.get(run_id).status != RunStatus.RUNNING, WAIT, "the resumed run to end")
            done = local.runs.get(run_id)
            assert done.status == RunStatus.COMPLETED, done.error
            assert _transcript(local, run_id) == TRANSCRIPT  # nothing stored twice, nothing lost
            # Only the requests in flight at the kill (those of round 2) are made again.
            in_flight = at_kill - round_one
            assert in_flight >= 1
            assert len(llm.chat_requests) <= uninterrupted + in_flight
            assert all(local.agents.get(uuid.UUID(a)).status == "active" for a in team)
            with httpx.Client(base_url=app.base_url, headers=headers, timeout=10) as client:
                shown = client.get(f"/api/runs/{run_id}").json()
            assert shown["resumed_at_round"] == 2 and shown["attempts"] == 2
        finally:
            app.stop()
            local.db.dispose()


def _seed_team(local: Services, llm: LlmServer) -> tuple[uuid.UUID, list[str], dict[str, str]]:
    """A workspace on the loopback LLM with the three-role team; (workspace, agent ids, API headers)."""
    ws = local.workspaces.create(WorkspaceCreate(slug="durable"))
    local.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
    local.llm_profiles.create(
        ws.id,
        LlmProfileCreate(
            name="loopback", api_type="openai", model="gpt-4o-mini", base_url=llm.base_url, api_key="sk-test"
        ),
    )
    team = []
    for definition, name in [("product-manager", "Alice"), ("architect", "Bob"), ("project-manager", "Carol")]:
        agent = local.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))
        local.agents.activate(agent.id)
        team.append(str(agent.id))
    secret = TokenService(local.db).create(ws.id, "durable")[1]
    return ws.id, team, {"Authorization": f"Bearer {secret}"}


def _mentions(llm: LlmServer, text: str) -> int:
    return sum(1 for b in llm.chat_bodies if text in json.dumps(b["messages"]))


def test_sigkill_then_no_resume_start_interrupts_the_run_until_a_person_resumes_it_over_the_api(
    tmp_path: Path, database_url: str | None
) -> None:
    """`main.py --no-resume` after a SIGKILL mid-run: the run is `interrupted` with the reason, its
    members free, and no LLM request of it is made, neither then nor at a later normal start.
    `POST /api/runs/{id}/resume` then completes it from its checkpoint; a second one is 409."""
    data_dir = tmp_path / "data"
    # One run at a time: a run recovered at a start would execute before the next one started.
    env = {"AGENTDECK_RATE_LIMIT": "off", "AGENTDECK_LLM_TIMEOUT": "10", "AGENTDECK_MAX_RUNS": "1"}
    with LlmServer() as llm:
        app = AppProcess(data_dir, database_url=database_url, env=env).start()
        local = _local(data_dir, database_url)
        try:
            ws, team, headers = _seed_team(local, llm)
            body = {"workspace_id": str(ws), "agent_ids": team, "idea": "a CLI todo app", "n_rounds": 6}

            def start(idea: str, agents: list[str]) -> uuid.UUID:
                with httpx.Client(base_url=app.base_url, headers=headers, timeout=10) as client:
                    response = client.post("/api/runs", json={**body, "idea": idea, "agent_ids": agents})
                assert response.status_code == 202, response.text
                return uuid.UUID(response.json()["id"])

            def barrier() -> None:
                """A fresh run to completion: whatever a start would resume ran before it."""
                barrier_run = start("a barrier run", team[:1])
                wait_until(lambda: local.runs.get(barrier_run).status in RUN_FINISHED, WAIT, "the barrier run")
                assert local.runs.get(barrier_run).status == RunStatus.COMPLETED

            llm.token_delay = 0.05
            run_id = start("a CLI todo app", team)
            wait_until(lambda: local.runs.get(run_id).current_round >= 2, WAIT, "round 2")
            wait_until(lambda: _mentions(llm, "Architect") > 0, WAIT, "a request of round 2")
            assert app.proc is not None
            app.proc.kill()  # SIGKILL: no shutdown, no cleanup
            app.proc.wait()
            assert local.runs.get(run_id).status == RunStatus.RUNNING
            assert local.agents.get(uuid.UUID(team[1])).status == "busy"  # the architect was at work
            llm.token_delay = 0.0
            llm.clear_requests()

            # Health answers 200 only once the start is done: the run has been declined by then.
            app = AppProcess(data_dir, "--no-resume", database_url=database_url, env=env).start()
            interrupted = local.runs.get(run_id)
            assert interrupted.status == RunStatus.INTERRUPTED
            assert interrupted.stop_reason == "not resumed at start (--no-resume)"
            members = [uuid.UUID(a) for a in team]
            wait_until(lambda: all(local.agents.get(a).status == "active" for a in members), WAIT, "members freed")
            barrier()
            assert _mentions(llm, "a barrier run") > 0 and _mentions(llm, "a CLI todo app") == 0
            app.stop()

            app = AppProcess(data_dir, database_url=database_url, env=env).start()
            barrier()
            assert _mentions(llm, "a CLI todo app") == 0
            assert local.runs.get(run_id) == interrupted

            llm.clear_requests()
            with httpx.Client(base_url=app.base_url, headers=headers, timeout=10) as client:
                resumed = client.post(f"/api/runs/{run_id}/resume")
                assert resumed.status_code == 202, resumed.text
                assert (resumed.json()["status"], resumed.json()["resumed_at_round"]) == ("queued", 2)
                wait_until(lambda: local.runs.get(run_id).status in RUN_FINISHED, WAIT, "the resumed run")
                done = local.runs.get(run_id)
                assert done.status == RunStatus.COMPLETED, done.error
                assert (done.attempts, done.resumed_at_round) == (2, 2)
                assert _transcript(local, run_id) == TRANSCRIPT
                # Round 1 was checkpointed: none of its requests (the product manager's) was made again.
                prompts = [json.dumps(b["messages"][:1]) for b in llm.chat_bodies]
                assert prompts and not any("Product Manager" in p for p in prompts)
                assert all(local.agents.get(uuid.UUID(a)).status == "active" for a in team)

                again = client.post(f"/api/runs/{run_id}/resume")
                assert again.status_code == 409, again.text
                assert "only an interrupted run can be resumed" in again.json()["detail"]
                assert local.runs.get(run_id) == done
        finally:
            app.stop()
            local.db.dispose()


def _executor_of(services: Services, run_id: uuid.UUID) -> str | None:
    import sqlalchemy as sa

    with services.db.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = :id AND status = 'PENDING'"),
            {"id": str(run_id)},
        ).scalar()


def test_two_processes_on_postgresql_share_runs_cancel_across_and_take_over_a_killed_one(tmp_path: Path) -> None:
    """Always on PostgreSQL (several processes need it): B starting leaves A's run alone; B cancels
    A's run at once with no LLM request afterwards; SIGKILL of the executing process → the other
    one completes the run within 60 s; nobody is left busy."""
    database_url = create_pg_database("agentdeck_two")
    env = {
        "AGENTDECK_RATE_LIMIT": "off",
        "AGENTDECK_LLM_TIMEOUT": "10",
        # Both processes must read the profile's API key.
        "AGENTDECK_SECRET_KEY": "k4s8R9b1o0n7Xr2mJ0oJm7Qm5qgqvJx3q0m8Hq1cQmM=",
    }
    apps: list[AppProcess] = []
    local: Services | None = None
    try:
        with LlmServer() as llm:
            # One data dir shared by both (runs' checkpoints and files live there; in a deployment a
            # shared volume), and an executor id each.
            shared = tmp_path / "data"
            a = AppProcess(shared, database_url=database_url, env={**env, "AGENTDECK_WORKER_ID": "a"}).start()
            apps.append(a)
            local = build_services(
                Settings(data_dir=tmp_path / "local", database_url=database_url, secret_key=env["AGENTDECK_SECRET_KEY"])
            )
            ws = local.workspaces.create(WorkspaceCreate(slug="two"))
            local.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
            local.llm_profiles.create(
                ws.id,
                LlmProfileCreate(
                    name="loopback", api_type="openai", model="gpt-4o-mini", base_url=llm.base_url, api_key="sk-test"
                ),
            )
            team = []
            for definition, name in [("product-manager", "Alice"), ("architect", "Bob"), ("project-manager", "Carol")]:
                agent = local.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))
                local.agents.activate(agent.id)
                team.append(agent.id)
            headers = {"Authorization": f"Bearer {TokenService(local.db).create(ws.id, 'two')[1]}"}
            body = {
                "workspace_id": str(ws.id),
                "agent_ids": [str(t) for t in team],
                "idea": "a todo app",
                "n_rounds": 6,
            }

            # A executes a slow run; B starts meanwhile and leaves it alone.
            llm.token_delay = 0.1
            with httpx.Client(base_url=a.base_url, headers=headers, timeout=10) as client:
                run_id = uuid.UUID(client.post("/api/runs", json=body).json()["id"])
            wait_until(lambda: llm.chat_requests, WAIT, "A to call the LLM")
            b = AppProcess(shared, database_url=database_url, env={**env, "AGENTDECK_WORKER_ID": "b"}).start()
            apps.append(b)
            run = local.runs.get(run_id)
            assert (run.status, run.attempts, run.resumed_at_round) == (RunStatus.RUNNING, 1, None)

            # B cancels it: A stops at once, and no LLM request follows.
            with httpx.Client(base_url=b.base_url, headers=headers, timeout=10) as client:
                cancelled = client.post(f"/api/runs/{run_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            at_cancel = len(llm.chat_requests)
            wait_until(lambda: all(local.agents.get(t).status == "active" for t in team), 30, "A to release the team")
            wait_until(lambda: _executor_of(local, run_id) is None, 30, "A's workflow to stop")
            assert len(llm.chat_requests) == at_cancel

            # A run executed by one of them survives a SIGKILL of that one: the other takes it over.
            llm.token_delay = 0.05
            with httpx.Client(base_url=b.base_url, headers=headers, timeout=10) as client:
                second = uuid.UUID(client.post("/api/runs", json=body).json()["id"])
            owner = wait_until(lambda: _executor_of(local, second), WAIT, "a process to execute the run")
            wait_until(lambda: local.runs.get(second).current_round >= 2, WAIT, "round 2")
            victim = {"a": a, "b": b}[owner]
            assert victim.proc is not None
            victim.proc.kill()
            victim.proc.wait()
            wait_until(lambda: local.runs.get(second).status != RunStatus.RUNNING, 60 + WAIT, "the takeover")
            done = local.runs.get(second)
            assert done.status == RunStatus.COMPLETED, done.error
            assert done.attempts == 2 and done.resumed_at_round is not None
            assert _transcript(local, second)[:1] == [("user", "UserRequirement")]
            assert len(_transcript(local, second)) == len(set(_transcript(local, second)))
            assert all(local.agents.get(t).status == "active" for t in team)
    finally:
        for app in apps:
            app.stop()
        if local is not None:
            local.db.dispose()
        drop_pg_database(database_url)


def test_a_second_live_process_with_the_same_worker_id_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy as sa

    from core.runtime.durable import LOCK_NAMESPACE
    from main import main

    database_url = create_pg_database("agentdeck_dup")
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as live:  # a live process holding worker id "dup"
            args = {"ns": LOCK_NAMESPACE, "id": "dup"}
            assert live.execute(sa.text("SELECT pg_try_advisory_lock(:ns, hashtext(:id))"), args).scalar()
            code = main(
                ["worker", "--worker-id", "dup", "--data-dir", str(tmp_path / "d"), "--database-url", database_url]
            )
            assert code == 2
            assert "executor id 'dup' belongs to another live AgentDeck process" in capsys.readouterr().err
    finally:
        engine.dispose()
        drop_pg_database(database_url)


def test_runs_taken_over_from_a_killed_process_respect_the_takers_max_runs(tmp_path: Path) -> None:
    """Always on PostgreSQL: A executes two runs at once and is SIGKILLed; B, allowed one run at a
    time (AGENTDECK_MAX_RUNS=1), takes both over and executes them one after the other (DBOS's
    queue alone admitted both at once in 3 tries of 4: it counts a run only once its thread runs)."""
    database_url = create_pg_database("agentdeck_takeover_slots")
    secret = "k4s8R9b1o0n7Xr2mJ0oJm7Qm5qgqvJx3q0m8Hq1cQmM="
    env = {"AGENTDECK_RATE_LIMIT": "off", "AGENTDECK_LLM_TIMEOUT": "10", "AGENTDECK_SECRET_KEY": secret}
    shared = tmp_path / "data"
    a: AppProcess | None = None
    b: Services | None = None
    try:
        with LlmServer() as llm:
            llm.responder = lambda body: " ".join(["word"] * 30)
            llm.token_delay = 0.1  # each answer streams for ~3 s: both runs are mid-answer at the kill
            a = AppProcess(shared, database_url=database_url, env={**env, "AGENTDECK_WORKER_ID": "a"}).start()
            b = build_services(
                Settings(data_dir=shared, database_url=database_url, secret_key=secret, worker_id="b", max_runs=1)
            )
            ws = b.workspaces.create(WorkspaceCreate(slug="slots"))
            b.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
            b.llm_profiles.create(
                ws.id,
                LlmProfileCreate(
                    name="loopback", api_type="openai", model="gpt-4o-mini", base_url=llm.base_url, api_key="sk-test"
                ),
            )
            helpers = []
            for i in range(2):
                agent = b.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name=f"helper-{i}"))
                b.agents.activate(agent.id)
                helpers.append(agent.id)
            headers = {"Authorization": f"Bearer {TokenService(b.db).create(ws.id, 'slots')[1]}"}
            run_ids = []
            with httpx.Client(base_url=a.base_url, headers=headers, timeout=10) as client:
                for i, helper in enumerate(helpers):
                    body = {"workspace_id": str(ws.id), "agent_ids": [str(helper)], "idea": f"q{i}", "n_rounds": 2}
                    response = client.post("/api/runs", json=body)
                    assert response.status_code == 202, response.text
                    run_ids.append(uuid.UUID(response.json()["id"]))
            wait_until(lambda: llm.max_in_flight >= 2, WAIT, "A to execute both runs at once")
            assert a.proc is not None
            a.proc.kill()
            a.proc.wait()
            llm.token_delay = 0.02
            wait_until(lambda: llm.in_flight == 0, WAIT, "the answers to the dead process to end")
            llm.clear_requests()  # from here on, max_in_flight counts B's requests only

            b.runtime.ensure_ready()
            b.runtime.launch()
            assert b.runtime.durable.take_over_dead_executors() == ["a"]  # what B's sweep does every 10 s
            for run_id in run_ids:
                assert b.runtime.wait_for_run(run_id, WAIT)
                done = b.runs.get(run_id)
                assert (done.status, done.attempts) == (RunStatus.COMPLETED, 2), done.error
            assert {json.dumps(body["messages"]).count("q0") > 0 for body in llm.chat_bodies} == {True, False}
            assert llm.max_in_flight == 1
            assert all(b.agents.get(h).status == "active" for h in helpers)
    finally:
        if b is not None:
            b.runtime.shutdown()
            b.db.dispose()
        if a is not None:
            a.stop()
        drop_pg_database(database_url)
