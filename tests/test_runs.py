"""Run records (core/runs.py): creation writes the run, its members and its `run_created` event
together, and keeps the workspace's code-execution switch as it was."""

from __future__ import annotations

import uuid

import pytest

from core.errors import InvalidInput, NotFound
from core.events import EventFilter, read_events
from core.llm_profiles import LlmProfileCreate
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services


def _team(services: Services, code_execution: bool) -> tuple[uuid.UUID, uuid.UUID]:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"runs-{uuid.uuid4().hex[:6]}"))
    services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": code_execution}))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="helper"))
    return ws.id, agent.id


@pytest.mark.parametrize("code_execution", [True, False])
def test_a_new_run_is_queued_announced_and_keeps_the_code_execution_switch(
    services: Services, code_execution: bool
) -> None:
    ws, agent = _team(services, code_execution)
    run = services.runs.create(RunCreate(workspace_id=ws, agent_ids=[agent], idea="a todo app"))
    assert (run.status, run.code_execution) == ("queued", code_execution)

    services.workspaces.update(ws, WorkspaceUpdate(settings={"code_execution": not code_execution}))
    assert services.runs.get(run.id).code_execution is code_execution  # the switch as it was

    with services.db.read() as session:
        events = read_events(session, EventFilter(run_id=run.id), 0, 10)
    assert [e.type for e in events] == ["run_created"]
    announced = events[0].data["run"]
    assert announced["id"] == str(run.id) and announced["status"] == "queued"
    assert announced["code_execution"] is code_execution
    assert [m["agent_name"] for m in announced["members"]] == ["helper"]


def test_a_run_in_an_unknown_workspace_is_refused_and_writes_nothing(services: Services) -> None:
    ws, agent = _team(services, True)
    with pytest.raises(NotFound):
        services.runs.create(RunCreate(workspace_id=uuid.uuid4(), agent_ids=[agent], idea="x"))
    assert services.runs.list(ws).items == []
    with services.db.read() as session:
        assert [e.type for e in read_events(session, EventFilter(workspace_id=ws), 0, 100)] == ["agent_created"]


def test_a_run_keeps_the_llm_profile_it_names_and_an_unknown_or_foreign_one_writes_nothing(
    services: Services,
) -> None:
    ws, agent = _team(services, False)
    other, their_agent = _team(services, False)
    services.llm_profiles.create(ws, LlmProfileCreate(name="fast", api_type="openai", model="gpt-4o-mini"))
    services.llm_profiles.create(other, LlmProfileCreate(name="theirs", api_type="openai", model="gpt-4o"))

    for name in ("no-such-profile", "theirs", "FAST"):  # unknown, another workspace's, another spelling
        with pytest.raises(InvalidInput, match="llm_profile") as refused:
            services.runs.create(RunCreate(workspace_id=ws, agent_ids=[agent], idea="x", llm_profile=name))
        assert refused.value.details == {"field": "llm_profile"}
    assert services.runs.list(ws).items == []
    with services.db.read() as session:
        assert [e.type for e in read_events(session, EventFilter(workspace_id=ws), 0, 100)] == ["agent_created"]

    run = services.runs.create(RunCreate(workspace_id=ws, agent_ids=[agent], idea="x", llm_profile="fast"))
    assert run.llm_profile == "fast"
    assert services.runs.get(run.id).llm_profile == "fast"
    assert services.runs.list(ws).items[0].llm_profile == "fast"
    default = services.runs.create(RunCreate(workspace_id=other, agent_ids=[their_agent], idea="y"))
    assert default.llm_profile is None


@pytest.mark.parametrize("name", ["n_rounds", "investment", "input_timeout"])
def test_the_start_forms_bounds_are_the_ones_the_model_enforces(name: str) -> None:
    from pydantic import ValidationError

    from core.schemas import field_bounds

    low, high = field_bounds(RunCreate, name)
    assert low is not None and high is not None
    base = {"workspace_id": uuid.uuid4(), "agent_ids": [uuid.uuid4()], "idea": "x"}
    RunCreate.model_validate({**base, name: high})
    with pytest.raises(ValidationError):
        RunCreate.model_validate({**base, name: high + 1})
    with pytest.raises(ValidationError):
        RunCreate.model_validate({**base, name: low - 1})
