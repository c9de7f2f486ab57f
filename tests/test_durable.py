"""Durable runs and chat answers (core/runtime/durable.py): they survive a stop of the process
and resume where they were, with nothing stored or paid twice; every run ends in exactly one
terminal status with a reason. MetaGPT talks real HTTP to the loopback server (tests/llm_server.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from core.config import Settings
from core.events import EventFilter, read_events
from core.llm_profiles import LlmProfileCreate
from core.registry import sync_definitions
from core.runs import RunCreate, RunPublic
from core.runtime import checkpoint
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from core.status import RunStatus
from storage.models import RUN_STATUSES
from tests.llm_server import LlmServer, default_responder
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WAIT = 90.0
TEAM = [("product-manager", "Alice"), ("architect", "Bob"), ("project-manager", "Carol")]
# What the three-role SOP team publishes with the loopback model, one round each.
TRANSCRIPT = [
    ("user", "UserRequirement"),
    ("Alice", "WritePRD"),
    ("Bob", "WriteDesign"),
    ("Carol", "WriteTasks"),
]


@pytest.fixture(scope="module")
def llm_server() -> Iterator[LlmServer]:
    with LlmServer() as server:
        yield server


def _fresh(server: LlmServer) -> LlmServer:
    """A module's server as a new one: no faults, no requests, default answers at full speed."""
    server.clear_faults()
    server.clear_requests()
    server.responder = default_responder
    server.token_delay = 0.0
    return server


@pytest.fixture
def server(llm_server: LlmServer) -> LlmServer:
    return _fresh(llm_server)


@pytest.fixture(scope="module")
def second_llm_server() -> Iterator[LlmServer]:
    with LlmServer() as server:
        yield server


@pytest.fixture
def second(second_llm_server: LlmServer) -> LlmServer:
    """A second loopback LLM, for a profile that is not the workspace's default."""
    return _fresh(second_llm_server)


def _build(settings: Settings, **update: object) -> Services:
    built = build_services(settings.model_copy(update={"llm_timeout": 5, **update}))
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    return built


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = _build(settings)
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def _workspace(rt: Services, server: LlmServer) -> uuid.UUID:
    ws = rt.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:8]}"))
    rt.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
    rt.llm_profiles.create(
        ws.id,
        LlmProfileCreate(
            name="loopback", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key="sk-test"
        ),
    )
    return ws.id


def _second_profile(rt: Services, ws: uuid.UUID, server: LlmServer) -> str:
    """A profile beside the workspace's default one, on its own server and model."""
    rt.llm_profiles.create(
        ws,
        LlmProfileCreate(
            name="second", api_type="openai", model="second-model", base_url=server.base_url, api_key="sk-second"
        ),
    )
    return "second"


def _team(rt: Services, ws: uuid.UUID) -> list[uuid.UUID]:
    ids = []
    for definition, name in TEAM:
        agent = rt.agents.create(AgentCreate(workspace_id=ws, definition=definition, name=name))
        rt.agents.activate(agent.id)
        ids.append(agent.id)
    return ids


def _completed_parent(rt: Services, server: LlmServer) -> RunPublic:
    """A six-round run of the three-role team, completed: the parent the fork tests start from."""
    ws = _workspace(rt, server)
    parent = rt.runtime.start_run(
        RunCreate(workspace_id=ws, agent_ids=_team(rt, ws), idea="a CLI todo app", n_rounds=6)
    )
    assert rt.runtime.wait_for_run(parent.id, WAIT)
    assert rt.runs.get(parent.id).status == RunStatus.COMPLETED
    return parent


def _transcript(rt: Services, run_id: uuid.UUID) -> list[tuple[str, str]]:
    return [(m.sender, m.cause_by) for m in rt.messages.list_run(run_id, limit=200).items]


def test_run_statuses_are_defined_once() -> None:
    assert tuple(s.value for s in RunStatus) == RUN_STATUSES


def test_a_stopped_process_resumes_the_run_at_its_next_round_and_pays_nothing_twice(
    rt: Services, server: LlmServer, settings: Settings
) -> None:
    ws = _workspace(rt, server)
    team = _team(rt, ws)

    # An uninterrupted run first: what the team says and how many requests it takes.
    reference = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=team, idea="a CLI todo app", n_rounds=6))
    assert rt.runtime.wait_for_run(reference.id, WAIT)
    assert rt.runs.get(reference.id).status == RunStatus.COMPLETED, rt.runs.get(reference.id).error
    assert _transcript(rt, reference.id) == TRANSCRIPT
    uninterrupted = len(server.chat_requests)
    round_one = sum(1 for b in server.chat_bodies if "Product Manager" in json.dumps(b["messages"][:1]))
    assert 0 < round_one < uninterrupted
    server.clear_requests()

    server.token_delay = 0.05  # slow enough to stop the process in round 2
    run = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=team, idea="a CLI todo app", n_rounds=6))
    run_dir = rt.runtime.run_dir(run.id)
    wait_until(lambda: rt.runs.get(run.id).current_round >= 2, WAIT, "round 2 to start")
    wait_until(lambda: len(server.chat_requests) > round_one, WAIT, "a request of round 2")
    assert checkpoint.has_checkpoint(run_dir, 1)
    rt.runtime.shutdown()  # a graceful stop: the round in progress is abandoned, not recorded
    stopped = rt.runs.get(run.id)
    assert stopped.status == RunStatus.RUNNING
    in_flight_round = stopped.current_round
    before_restart = len(server.chat_requests)

    # The next start of the same installation resumes it.
    server.token_delay = 0.0
    again = _build(settings)
    try:
        again.runtime.launch()
        assert again.runtime.wait_for_run(run.id, WAIT)
        done = again.runs.get(run.id)
        assert done.status == RunStatus.COMPLETED, done.error
        assert done.resumed_at_round == in_flight_round
        assert done.attempts == 2
        # Nothing stored twice, nothing missing: the same transcript as the uninterrupted run.
        assert _transcript(again, run.id) == TRANSCRIPT
        # Rounds done before the stop were not paid again: at most the requests of the round in
        # flight (every request but round 1's, which only the product manager makes) come twice.
        in_flight = before_restart - round_one
        assert in_flight >= 1
        assert len(server.chat_requests) <= uninterrupted + in_flight
        usage = sum(m.prompt_tokens for m in again.messages.list_run(run.id, limit=200).items)
        assert done.prompt_tokens == usage
        with again.db.read() as session:
            rounds = [
                e.data["round"]
                for e in read_events(session, EventFilter(run_id=run.id), 0, 500)
                if e.type == "run_round"
            ]
        assert rounds == sorted(set(rounds))  # each round announced once
        assert all(again.agents.get(a).status == "active" for a in team)
    finally:
        again.runtime.shutdown()
        again.db.dispose()


def test_a_run_past_its_time_limit_fails_with_the_reason(settings: Settings, server: LlmServer) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    rt = _build(settings, run_time_limit=1)
    try:
        ws = _workspace(rt, server)
        team = _team(rt, ws)
        server.token_delay = 0.2
        run = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=team[:1], idea="a CLI todo app"))
        assert rt.runtime.wait_for_run(run.id, WAIT)
        done = rt.runs.get(run.id)
        assert (done.status, done.stop_reason) == (RunStatus.FAILED, "time limit")
        assert "longer than 1 s" in done.error
        assert rt.agents.get(team[0]).status == "active"
    finally:
        rt.runtime.shutdown()
        rt.db.dispose()


def test_a_profile_key_that_no_longer_decrypts_fails_the_run_instead_of_leaving_it_queued(
    rt: Services, server: LlmServer, settings: Settings
) -> None:
    ws = _workspace(rt, server)
    team = _team(rt, ws)
    rt.runtime.shutdown()
    other_key = _build(settings, secret_key=Fernet.generate_key().decode())
    try:
        run = other_key.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=team[:1], idea="x"))
        assert other_key.runtime.wait_for_run(run.id, WAIT)
        done = other_key.runs.get(run.id)
        assert done.status == RunStatus.FAILED
        assert "cannot be decrypted" in done.error
        assert server.chat_requests == []
    finally:
        other_key.runtime.shutdown()
        other_key.db.dispose()


def test_messages_waiting_for_an_answer_survive_a_restart_and_are_answered_in_order(
    rt: Services, server: LlmServer, settings: Settings
) -> None:
    answers = iter(["answer one", "answer two", "answer three"])  # a stalled request gets none
    server.responder = lambda body: next(answers)
    ws = _workspace(rt, server)
    agent = rt.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="queue"))
    rt.agents.activate(agent.id)

    server.stall(times=1)  # the first answer hangs until the process stops
    rt.runtime.send_message(agent.id, "first question")
    wait_until(lambda: server.chat_requests, WAIT, "the first answer to start")
    rt.runtime.send_message(agent.id, "second question")
    rt.runtime.send_message(agent.id, "third question")
    rt.runtime.shutdown()
    assert [m.content for m in rt.messages.list(agent.id).items] == [
        "third question",
        "second question",
        "first question",
    ]
    assert rt.agents.get(agent.id).status != "busy"

    server.clear_faults()
    again = _build(settings)
    try:
        again.runtime.launch()
        wait_until(lambda: not again.runtime.chat_in_progress(agent.id), WAIT, "the answers")
        thread = list(reversed(again.messages.list(agent.id).items))
        assert [m.content for m in thread] == [
            "first question",
            "second question",
            "third question",
            "answer one",
            "answer two",
            "answer three",
        ]
        questions = {m.content: str(m.id) for m in thread[:3]}
        assert [m.metadata["in_reply_to"] for m in thread[3:]] == [
            questions["first question"],
            questions["second question"],
            questions["third question"],
        ]
        assert again.agents.get(agent.id).status == "active"
    finally:
        again.runtime.shutdown()
        again.db.dispose()


def test_a_fork_from_round_k_copies_rounds_up_to_k_and_calls_the_llm_only_after(
    rt: Services, server: LlmServer
) -> None:
    parent = _completed_parent(rt, server)
    server.clear_requests()

    fork = rt.runtime.fork_run(parent.id, 2)
    assert (fork.parent_run_id, fork.fork_round, fork.status) == (parent.id, 2, RunStatus.QUEUED)
    assert rt.runtime.wait_for_run(fork.id, WAIT)
    done = rt.runs.get(fork.id)
    assert done.status == RunStatus.COMPLETED, done.error
    assert _transcript(rt, fork.id) == TRANSCRIPT
    # Rounds 1..2 are the parent's, word for word; only round 3 (the project manager's) asked the LLM.
    parent_msgs = rt.messages.list_run(parent.id, limit=200).items
    fork_msgs = rt.messages.list_run(fork.id, limit=200).items
    assert [m.content for m in fork_msgs[:3]] == [m.content for m in parent_msgs[:3]]
    assert server.chat_requests
    prompts = [json.dumps(b["messages"][:1]) for b in server.chat_bodies]
    assert not any("Product Manager" in p or "Architect" in p for p in prompts), prompts
    assert done.attempts == 1 and done.resumed_at_round is None


def test_a_fork_starts_from_its_parents_project_files_of_round_k_not_of_its_end(
    rt: Services, server: LlmServer
) -> None:
    parent = _completed_parent(rt, server)
    parent_files = set(rt.runtime.run_files(parent.id))
    # Round 3 is the project manager's: WriteTasks (MetaGPT 0.8.2) writes the task document and
    # requirements.txt and adds the task to the project's .dependencies.json.
    round_three = {f for f in parent_files if "/docs/task/" in f or f.endswith("/requirements.txt")}
    assert len(round_three) == 2, parent_files
    dependencies = next(f for f in parent_files if f.endswith("/.dependencies.json"))
    assert "docs/task/" in rt.runtime.read_run_file(parent.id, dependencies)

    # The fork's first own round (3) fails at once: what it holds is what it started from.
    server.fail(None, status=400, should_retry=False)
    fork = rt.runtime.fork_run(parent.id, 2)
    assert rt.runtime.wait_for_run(fork.id, WAIT)
    assert rt.runs.get(fork.id).status == RunStatus.FAILED
    assert set(rt.runtime.run_files(fork.id)) == parent_files - round_three
    assert "docs/task/" not in rt.runtime.read_run_file(fork.id, dependencies)
    design = next(f for f in parent_files if "/docs/system_design/" in f)
    assert rt.runtime.read_run_file(fork.id, design) == rt.runtime.read_run_file(parent.id, design)


def test_a_checkpoint_links_the_files_no_round_changed_and_copies_the_rest(tmp_path: Path) -> None:
    from core.runtime.checkpoint_files import FILES, checkpoint_dir, restore_files, snapshot_files

    live = tmp_path / "workspace"
    (live / "docs").mkdir(parents=True)
    (live / "docs" / "prd.md").write_text("v1")
    (live / "main.py").write_text("print(1)")
    (live / "outside").symlink_to("/etc/passwd")
    snapshot_files(tmp_path, checkpoint_dir(tmp_path, 1), 1)
    (live / "main.py").write_text("print(2)")
    (live / "tests").mkdir()
    (live / "tests" / "test_main.py").write_text("assert True")
    snapshot_files(tmp_path, checkpoint_dir(tmp_path, 2), 2)

    one, two = checkpoint_dir(tmp_path, 1) / FILES, checkpoint_dir(tmp_path, 2) / FILES
    assert (one / "docs" / "prd.md").stat().st_ino == (two / "docs" / "prd.md").stat().st_ino
    assert (one / "main.py").read_text() == "print(1)" and (two / "main.py").read_text() == "print(2)"
    assert not (one / "tests").exists() and (two / "tests" / "test_main.py").is_file()
    assert (two / "outside").is_symlink() and str((two / "outside").readlink()) == "/etc/passwd"

    # Back to round 1: round 2's changes are gone, and writing the workspace leaves the snapshots be.
    assert restore_files(tmp_path, 1)
    assert (live / "main.py").read_text() == "print(1)" and not (live / "tests").exists()
    (live / "docs" / "prd.md").write_text("rewritten")
    assert (one / "docs" / "prd.md").read_text() == (two / "docs" / "prd.md").read_text() == "v1"
    assert not restore_files(tmp_path, 3)


def test_a_fork_needs_a_completed_round(rt: Services, server: LlmServer) -> None:
    from core.errors import InvalidInput, NotFound

    ws = _workspace(rt, server)
    team = _team(rt, ws)
    run = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=team[:1], idea="x", n_rounds=2))
    assert rt.runtime.wait_for_run(run.id, WAIT)
    with pytest.raises(InvalidInput):
        rt.runtime.fork_run(run.id, 5)
    with pytest.raises(NotFound):
        rt.runtime.fork_run(uuid.uuid4(), 1)
    assert [r.id for r in rt.runs.list(ws).items] == [run.id]


def test_worker_concurrency_is_respected_and_waiting_runs_show_their_queue_position(
    settings: Settings, server: LlmServer
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    rt = _build(settings, max_runs=1)
    try:
        ws = _workspace(rt, server)
        server.responder = lambda body: "An answer."
        agents = []
        for i in range(3):
            agent = rt.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name=f"helper-{i}"))
            rt.agents.activate(agent.id)
            agents.append(agent.id)
        server.token_delay = 0.3  # each run takes a couple of seconds
        runs = [
            rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=[a], idea=f"question {i}", n_rounds=2))
            for i, a in enumerate(agents)
        ]
        wait_until(lambda: rt.runs.get(runs[0].id).status == RunStatus.RUNNING, WAIT, "the first run to start")
        positions = [rt.runtime.get_run(r.id).queue_position for r in runs[1:]]
        assert positions == [0, 1]
        running_at_once = 0
        while any(rt.runs.get(r.id).status not in {"completed", "failed", "cancelled"} for r in runs):
            running_at_once = max(running_at_once, sum(rt.runs.get(r.id).status == RunStatus.RUNNING for r in runs))
            time.sleep(0.05)  # polling, not a barrier
        assert running_at_once == 1
        assert [rt.runs.get(r.id).status for r in runs] == [RunStatus.COMPLETED] * 3
    finally:
        rt.runtime.shutdown()
        rt.db.dispose()


def test_a_run_left_running_without_any_workflow_is_interrupted_at_start_and_frees_its_agents(
    rt: Services, server: LlmServer, settings: Settings
) -> None:
    import sqlalchemy as sa

    from storage.models import Run

    ws = _workspace(rt, server)
    team = _team(rt, ws)
    rt.runtime.shutdown()
    # As an AgentDeck without durable runs left it: running, an agent busy, no workflow.
    orphan = rt.runs.create(RunCreate(workspace_id=ws, agent_ids=team[:1], idea="x"))
    rt.runs.mark_running(orphan.id, "demo model")
    rt.agents.set_status(team[0], "busy", reason="working")
    young = rt.runs.create(RunCreate(workspace_id=ws, agent_ids=team[1:2], idea="y"))  # being queued elsewhere
    with rt.db.write() as session:
        session.execute(
            sa.update(Run).where(Run.id == orphan.id).values(created_at=orphan.created_at.replace(year=2020))
        )
    again = _build(settings)
    try:
        again.runtime.launch()
        done = again.runs.get(orphan.id)
        assert done.status == RunStatus.INTERRUPTED and "could not resume" in done.stop_reason
        assert again.agents.get(team[0]).status == "active"
        assert again.runs.get(young.id).status == RunStatus.QUEUED
        # Interrupted, but with no workflow and no checkpoint there is nothing to resume from.
        from core.errors import Conflict

        with pytest.raises(Conflict, match="no saved round to resume from"):
            again.runtime.resume_run(orphan.id)
        assert again.runs.get(orphan.id) == done
    finally:
        again.runtime.shutdown()
        again.db.dispose()


def _workflow_status(run_id: uuid.UUID) -> str:
    from dbos import DBOS

    return DBOS.list_workflows(workflow_ids=[str(run_id)], load_input=False, load_output=False)[0].status


def _mentions(server: LlmServer, text: str) -> int:
    return sum(1 for b in server.chat_bodies if text in json.dumps(b["messages"]))


def _barrier_run(services: Services, ws: uuid.UUID, agent: uuid.UUID) -> None:
    """A fresh run to completion on a one-run-at-a-time queue: a workflow recovered at the start
    was enqueued before it and would have executed first."""
    run = services.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=[agent], idea="a barrier run", n_rounds=1))
    assert services.runtime.wait_for_run(run.id, WAIT)
    assert services.runs.get(run.id).status == RunStatus.COMPLETED, services.runs.get(run.id).error


def test_a_no_resume_start_interrupts_the_run_and_a_person_resumes_it_later_at_its_next_round(
    rt: Services, server: LlmServer, settings: Settings
) -> None:
    from core.errors import Conflict
    from core.runtime.durable import NOT_RESUMED

    ws = _workspace(rt, server)
    team = _team(rt, ws)
    server.token_delay = 0.05  # slow enough to stop the process in round 2
    run = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=team, idea="a CLI todo app", n_rounds=6))
    wait_until(lambda: rt.runs.get(run.id).current_round >= 2, WAIT, "round 2 to start")
    wait_until(lambda: _mentions(server, "Architect") > 0, WAIT, "a request of round 2")
    rt.runtime.shutdown()
    stopped = rt.runs.get(run.id)
    assert (stopped.status, stopped.attempts) == (RunStatus.RUNNING, 1)
    rt.agents.set_status(team[1], "busy", reason="working")  # as a SIGKILL in round 2 leaves it
    server.token_delay = 0.0
    server.clear_requests()

    # The operator's choice: not resumed. Nothing of it executes, its members are free.
    declining = _build(settings, resume=False, max_runs=1)
    try:
        declining.runtime.launch()
        done = declining.runs.get(run.id)
        assert (done.status, done.stop_reason) == (RunStatus.INTERRUPTED, NOT_RESUMED)
        assert all(declining.agents.get(a).status == "active" for a in team)
        assert _workflow_status(run.id) == "CANCELLED"
        _barrier_run(declining, ws, team[0])
        assert _mentions(server, "a barrier run") > 0
        assert _mentions(server, "a CLI todo app") == 0
    finally:
        declining.runtime.shutdown()
        declining.db.dispose()

    # A later normal start does not resume it either.
    server.clear_requests()
    normal = _build(settings, max_runs=1)
    try:
        normal.runtime.launch()
        _barrier_run(normal, ws, team[0])
        assert _mentions(server, "a CLI todo app") == 0
        assert normal.runs.get(run.id).status == RunStatus.INTERRUPTED
        assert _workflow_status(run.id) == "CANCELLED"

        # The person's choice: resumed, at the round in progress at the stop.
        server.clear_requests()
        resumed = normal.runtime.resume_run(run.id, actor="user")
        assert (resumed.status, resumed.resumed_at_round) == (RunStatus.QUEUED, stopped.current_round)
        assert resumed.stop_reason == "" and resumed.finished_at is None
        # The time it spent interrupted does not count against its time limit.
        assert stopped.started_at is not None and resumed.started_at is not None
        assert resumed.started_at > stopped.started_at
        assert normal.runtime.wait_for_run(run.id, WAIT)
        finished = normal.runs.get(run.id)
        assert finished.status == RunStatus.COMPLETED, finished.error
        assert (finished.attempts, finished.resumed_at_round) == (2, stopped.current_round)
        assert _transcript(normal, run.id) == TRANSCRIPT  # nothing lost, nothing stored twice
        # Only the rounds after the checkpoint asked the LLM: round 1 (the product manager's) did not.
        prompts = [json.dumps(b["messages"][:1]) for b in server.chat_bodies]
        assert prompts and not any("Product Manager" in p for p in prompts), prompts
        assert all(normal.agents.get(a).status == "active" for a in team)

        # Only an interrupted run resumes: a completed one is refused, and stays as it is.
        with pytest.raises(Conflict, match="only an interrupted run can be resumed"):
            normal.runtime.resume_run(run.id, actor="user")
        assert normal.runs.get(run.id) == finished
    finally:
        normal.runtime.shutdown()
        normal.db.dispose()


def test_a_run_with_its_own_profile_talks_only_to_that_llm_also_after_a_restart(
    rt: Services, server: LlmServer, second: LlmServer, settings: Settings
) -> None:
    ws = _workspace(rt, server)  # its default profile is `server`
    team = _team(rt, ws)
    profile = _second_profile(rt, ws, second)
    second.token_delay = 0.05  # slow enough to stop the process in round 2
    run = rt.runtime.start_run(
        RunCreate(workspace_id=ws, agent_ids=team, idea="a CLI todo app", n_rounds=6, llm_profile=profile)
    )
    wait_until(lambda: rt.runs.get(run.id).current_round >= 2, WAIT, "round 2 to start")
    wait_until(lambda: any("Architect" in json.dumps(b["messages"][:1]) for b in second.chat_bodies), WAIT, "round 2")
    rt.runtime.shutdown()
    assert rt.runs.get(run.id).status == RunStatus.RUNNING
    before_restart = len(second.chat_requests)

    second.token_delay = 0.0
    again = _build(settings)
    try:
        again.runtime.launch()
        assert again.runtime.wait_for_run(run.id, WAIT)
        done = again.runs.get(run.id)
        assert done.status == RunStatus.COMPLETED, done.error
        assert done.resumed_at_round is not None and done.attempts == 2
        # The resumed execution asked the run's profile again, never the workspace's default.
        assert len(second.chat_requests) > before_restart
        assert server.chat_requests == []
        assert {b["model"] for b in second.chat_bodies} == {"second-model"}
        assert (done.llm_profile, done.llm_label) == ("second", "openai · second-model (profile: second)")
        assert _transcript(again, run.id) == TRANSCRIPT
    finally:
        again.runtime.shutdown()
        again.db.dispose()


def test_a_fork_with_another_profile_plays_only_its_new_rounds_on_that_llm(
    rt: Services, server: LlmServer, second: LlmServer
) -> None:
    from core.errors import InvalidInput

    parent = _completed_parent(rt, server)
    ws = parent.workspace_id
    profile = _second_profile(rt, ws, second)
    assert second.chat_requests == []
    server.clear_requests()

    # An unknown profile: refused on the field, no fork made.
    with pytest.raises(InvalidInput, match="llm_profile"):
        rt.runtime.fork_run(parent.id, 2, llm_profile="no-such-profile")
    assert [r.id for r in rt.runs.list(ws).items] == [parent.id]

    fork = rt.runtime.fork_run(parent.id, 2, llm_profile=profile)
    assert (fork.llm_profile, fork.fork_round) == (profile, 2)
    assert rt.runtime.wait_for_run(fork.id, WAIT)
    done = rt.runs.get(fork.id)
    assert done.status == RunStatus.COMPLETED, done.error
    assert _transcript(rt, fork.id) == TRANSCRIPT
    assert done.llm_label == "openai · second-model (profile: second)"
    # Round 3 (the project manager's) was played on the second LLM; the parent's LLM got nothing,
    # and the rounds copied from the parent were not asked of anyone again.
    assert server.chat_requests == []
    assert second.chat_requests
    prompts = [json.dumps(b["messages"][:1]) for b in second.chat_bodies]
    assert not any("Product Manager" in p or "Architect" in p for p in prompts), prompts
    assert {b["model"] for b in second.chat_bodies} == {"second-model"}
    calls = rt.llm_calls.list_run(fork.id, limit=500).items
    assert calls and {c.profile for c in calls} == {done.llm_label}
