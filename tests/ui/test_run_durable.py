"""The run page's durable-run bits: where a run resumed after a restart, "Resume" for an
interrupted run, and "Re-run from here" (a fork of the run after one of its rounds)."""

from __future__ import annotations

import asyncio
import uuid

from nicegui.testing import User

from core.runs import RunCreate
from core.runtime.checkpoint_files import copy_checkpoint
from core.schemas import AgentCreate, WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from core.services import Services
from core.status import RunStatus
from tests.ui.running_app import app_services
from tests.ui.test_runs import SLOW, elements, only, text, visible
from tests.waiting import eventually


def _pm_and_architect(services: Services, slug: str) -> tuple[WorkspacePublic, list[uuid.UUID]]:
    """A workspace whose runs execute no code, with an active product manager and architect."""
    ws = services.workspaces.create(WorkspaceCreate(slug=slug))
    services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
    agents = []
    for definition, name in [("product-manager", "Alice"), ("architect", "Bob")]:
        agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name))
        services.agents.activate(agent.id)
        agents.append(agent.id)
    return ws, agents


async def test_the_run_page_says_where_a_run_resumed_after_a_restart(user: User) -> None:
    services = app_services()
    ws = services.workspaces.create(WorkspaceCreate(slug="resumed"))
    alice = services.agents.create(AgentCreate(workspace_id=ws.id, definition="product-manager", name="Alice"))
    run = services.runs.create(RunCreate(workspace_id=ws.id, agent_ids=[alice.id], idea="an idea"))
    services.runs.mark_running(run.id, "demo model")
    services.runs.mark_running(run.id, "demo model", resumed_at_round=3)  # a second process's attempt

    await user.open(f"/runs/{run.id}")
    await user.should_see("Resumed at round 3 (attempt 2).")
    assert text(user, "run-resumed") == "Resumed at round 3 (attempt 2)."


async def test_re_run_from_here_forks_the_run_after_that_round(user: User) -> None:
    services = app_services()
    ws, agents = _pm_and_architect(services, "fork")
    parent = await asyncio.to_thread(
        services.runtime.start_run, RunCreate(workspace_id=ws.id, agent_ids=agents, idea="a CLI todo app", n_rounds=4)
    )
    assert await asyncio.to_thread(services.runtime.wait_for_run, parent.id, SLOW)
    assert services.runs.get(parent.id).status == RunStatus.COMPLETED

    await user.open(f"/runs/{parent.id}")
    await eventually(lambda: bool(elements(user, "run-rerun-1")), timeout=10)
    user.find(marker="run-rerun-1").click()
    fork_id: list[uuid.UUID] = []

    def forked() -> bool:
        children = [r for r in services.runs.list(ws.id).items if r.parent_run_id == parent.id]
        fork_id[:] = [c.id for c in children]
        return len(children) == 1

    await eventually(forked, timeout=10)
    assert await asyncio.to_thread(services.runtime.wait_for_run, fork_id[0], SLOW)
    fork = services.runs.get(fork_id[0])
    assert (fork.status, fork.fork_round) == (RunStatus.COMPLETED, 1)
    copied = [m for m in services.messages.list_run(fork.id).items if "copied_from" in m.metadata]
    assert [m.cause_by for m in copied] == ["UserRequirement", "WritePRD"]
    await user.should_see("from the end of its round 1")


async def test_resume_shows_only_on_an_interrupted_run_and_continues_it_from_its_checkpoint(user: User) -> None:
    services = app_services()
    ws, agents = _pm_and_architect(services, "resume")
    data = RunCreate(workspace_id=ws.id, agent_ids=agents, idea="a CLI todo app", n_rounds=4)
    completed = await asyncio.to_thread(services.runtime.start_run, data)
    assert await asyncio.to_thread(services.runtime.wait_for_run, completed.id, SLOW)
    assert services.runs.get(completed.id).status == RunStatus.COMPLETED

    # As the startup sweep leaves a run an older AgentDeck was executing: interrupted, no workflow,
    # its state after round 1 on disk.
    left = services.runs.create(data)
    runtime = services.runtime
    copy_checkpoint(runtime.run_dir(completed.id), runtime.run_dir(left.id), 1)
    services.runs.mark_running(left.id, "demo model")
    services.runs.finish(
        left.id, RunStatus.INTERRUPTED, stop_reason="left unfinished by a process that could not resume it"
    )

    await user.open(f"/runs/{completed.id}")
    await user.should_see("a CLI todo app")
    assert not visible(only(user, "run-resume"))  # a completed run has no Resume

    await user.open(f"/runs/{left.id}")
    await user.should_see("Stopped: left unfinished by a process that could not resume it")
    assert visible(only(user, "run-resume"))
    user.find(marker="run-resume").click()
    await eventually(lambda: services.runs.get(left.id).status != RunStatus.INTERRUPTED, timeout=10)
    assert await asyncio.to_thread(services.runtime.wait_for_run, left.id, SLOW)
    done = services.runs.get(left.id)
    assert done.status == RunStatus.COMPLETED, done.error
    assert (done.attempts, done.resumed_at_round) == (2, 2)
    # Round 1 came from the checkpoint: only the architect spoke in this attempt.
    assert [m.sender for m in services.messages.list_run(left.id).items] == ["Bob"]
    await user.should_see("Resumed at round 2 (attempt 2).")
    await eventually(lambda: not visible(only(user, "run-resume")), timeout=10)
