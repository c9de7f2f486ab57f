"""A run's own LLM profile and the run queue on the dashboard, in the `user` fixture's simulated
browser: the start form's profile select, a profile gone before Start, "Re-run from here" on
another profile, and the place of each queued run on the runs list. Runs execute for real on
MetaGPT against loopback OpenAI-compatible servers (tests/llm_server.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from nicegui.testing import User

from core.llm_profiles import LlmProfileCreate, LlmProfilePublic, LlmProfileUpdate
from core.runs import RunCreate
from core.schemas import AgentPublic, WorkspacePublic
from core.status import RunStatus
from tests.llm_server import LlmServer
from tests.ui.running_app import app_services
from tests.ui.test_runs import SLOW, agent, elements, metagpt_ready, only, text, visible, workspace
from tests.waiting import eventually

SECOND_LABEL = "openai · second-model (profile: second)"


@pytest.fixture
def first_llm() -> Iterator[LlmServer]:
    with LlmServer() as server:
        yield server


@pytest.fixture
def second_llm() -> Iterator[LlmServer]:
    with LlmServer() as server:
        yield server


def profile(ws: WorkspacePublic, name: str, server: LlmServer, *, default: bool = False) -> LlmProfilePublic:
    created = app_services().llm_profiles.create(
        ws.id,
        LlmProfileCreate(
            name=name, api_type="openai", model=f"{name}-model", base_url=server.base_url, api_key="sk-test"
        ),
    )
    if created.is_default != default:  # the first profile of a workspace is its default by itself
        created = app_services().llm_profiles.update(created.id, LlmProfileUpdate(is_default=default))
    return created


def active_agent(ws: WorkspacePublic, definition: str, name: str) -> AgentPublic:
    made = agent(ws, definition, name)
    app_services().agents.activate(made.id)
    return made


async def test_the_start_form_offers_the_workspace_profiles_and_the_run_uses_the_chosen_one(
    user: User, first_llm: LlmServer, second_llm: LlmServer
) -> None:
    ws = workspace(code_execution=False)
    helper = active_agent(ws, "assistant", "Helper")
    profile(ws, "first", first_llm, default=True)
    profile(ws, "second", second_llm)
    await metagpt_ready()
    await user.open("/runs")
    select = only(user, "run-llm-profile")
    assert select.options == {  # type: ignore[attr-defined]
        "": "Workspace default (openai · first-model (profile: first))",
        "first": "openai · first-model (profile: first)",
        "second": SECOND_LABEL,
    }
    assert select.value == ""  # type: ignore[attr-defined]
    assert text(user, "llm-label") == "openai · first-model (profile: first)"

    select.set_value("second")  # type: ignore[attr-defined]
    await eventually(lambda: text(user, "llm-label") == SECOND_LABEL)
    user.find(marker="run-agents").click()
    user.find("Helper · assistant").click()
    user.find(marker="run-idea").type("say hello")
    only(user, "run-rounds").set_value(1)  # type: ignore[attr-defined]
    user.find(marker="run-start").click()

    await user.should_see(marker="run-header", retries=int(SLOW * 10))
    (run,) = app_services().runs.list(ws.id).items
    assert run.llm_profile == "second"
    await eventually(lambda: text(user, "run-status") == "completed", timeout=SLOW)
    await eventually(lambda: text(user, "llm-label") == SECOND_LABEL)
    assert second_llm.chat_requests and first_llm.chat_requests == []
    assert [m.agent_id for m in run.members] == [helper.id]


async def test_a_profile_deleted_before_start_is_an_error_on_the_select_and_starts_nothing(
    user: User, first_llm: LlmServer, second_llm: LlmServer
) -> None:
    ws = workspace(code_execution=False)
    agent(ws, "assistant", "Helper")
    profile(ws, "first", first_llm, default=True)
    gone = profile(ws, "second", second_llm)
    await user.open("/runs")
    only(user, "run-llm-profile").set_value("second")  # type: ignore[attr-defined]
    app_services().llm_profiles.delete(gone.id)  # someone else, meanwhile
    user.find(marker="run-agents").click()
    user.find("Helper · assistant").click()
    user.find(marker="run-idea").type("say hello")
    user.find(marker="run-start").click()

    select = only(user, "run-llm-profile")
    await eventually(lambda: select.error is not None)  # type: ignore[attr-defined]
    assert select.error == "This profile no longer exists: choose another one"  # type: ignore[attr-defined]
    assert visible(only(user, "run-start-error")) and "llm_profile" in text(user, "run-start-error")
    assert app_services().runs.list(ws.id).items == []
    assert first_llm.chat_requests == [] and second_llm.chat_requests == []


async def test_re_run_from_here_can_play_the_new_rounds_on_another_profile(
    user: User, first_llm: LlmServer, second_llm: LlmServer
) -> None:
    services = app_services()
    ws = workspace(code_execution=False)
    team = [active_agent(ws, "product-manager", "Alice").id, active_agent(ws, "architect", "Bob").id]
    profile(ws, "first", first_llm, default=True)
    profile(ws, "second", second_llm)
    parent = await asyncio.to_thread(
        services.runtime.start_run, RunCreate(workspace_id=ws.id, agent_ids=team, idea="a CLI todo app", n_rounds=4)
    )
    assert await asyncio.to_thread(services.runtime.wait_for_run, parent.id, SLOW)
    assert services.runs.get(parent.id).status == RunStatus.COMPLETED
    asked_before = len(first_llm.chat_requests)
    assert asked_before and second_llm.chat_requests == []

    await user.open(f"/runs/{parent.id}")
    await eventually(lambda: bool(elements(user, "run-rerun-1")), timeout=10)
    choice = only(user, "run-rerun-profile")
    assert choice.options[""] == "Re-runs use: this run's LLM (workspace default)"  # type: ignore[attr-defined]
    choice.set_value("second")  # type: ignore[attr-defined]
    user.find(marker="run-rerun-1").click()
    await user.should_see("from the end of its round 1", retries=int(SLOW * 10))
    (fork,) = [r for r in services.runs.list(ws.id).items if r.parent_run_id == parent.id]
    assert fork.llm_profile == "second"
    assert await asyncio.to_thread(services.runtime.wait_for_run, fork.id, SLOW)
    done = services.runs.get(fork.id)
    assert (done.status, done.llm_label) == (RunStatus.COMPLETED, SECOND_LABEL)
    # Round 2 (the architect's) was asked of the second LLM only; round 1 was copied.
    assert second_llm.chat_requests and len(first_llm.chat_requests) == asked_before


@pytest.fixture
def one_run_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before `user` starts the app: its worker executes one run at a time."""
    monkeypatch.setenv("AGENTDECK_MAX_RUNS", "1")


async def test_the_runs_list_shows_each_queued_runs_place_and_follows_the_queue(
    one_run_at_a_time: None, user: User, first_llm: LlmServer
) -> None:
    services = app_services()
    ws = workspace(code_execution=False)
    profile(ws, "first", first_llm, default=True)
    first_llm.token_delay = 0.2  # the first run keeps the only worker slot while the test looks
    helpers = [active_agent(ws, "assistant", f"helper-{i}") for i in range(3)]
    await metagpt_ready()
    runs = []
    for i, helper in enumerate(helpers):
        data = RunCreate(workspace_id=ws.id, agent_ids=[helper.id], idea=f"question {i}", n_rounds=50)
        runs.append(await asyncio.to_thread(services.runtime.start_run, data))
        if i == 0:
            await eventually(lambda: services.runs.get(runs[0].id).status == RunStatus.RUNNING, timeout=SLOW)
    first, second, third = runs

    await user.open("/runs")
    assert not elements(user, f"run-queue-position-{first.id}")  # running, not waiting
    assert text(user, f"run-queue-position-{second.id}") == "Queued: next to start"
    assert text(user, f"run-queue-position-{third.id}") == "Queued: 1 run ahead in the queue"

    # The queue moves: the list follows without a reload.
    await asyncio.to_thread(services.runtime.cancel_run, second.id)
    await eventually(lambda: text(user, f"run-queue-position-{third.id}") == "Queued: next to start", timeout=10)
    # The first run ends, the third one starts: no run waits any more.
    await eventually(lambda: text(user, f"run-status-{third.id}") != "queued", timeout=SLOW)
    assert not elements(user, "run-queue-position")
    for run in (first, third):
        assert await asyncio.to_thread(services.runtime.wait_for_run, run.id, SLOW)
