"""Team templates (issue 17): built-ins, user templates, instantiation with de-duplicated names,
and the software-company team running to completion on the offline demo model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.config import Settings
from core.demo import DEMO_AGENTS
from core.errors import Conflict, InvalidInput, NotFound
from core.registry import sync_definitions
from core.runs import MAX_IDEA_CHARS, RunCreate
from core.schemas import AgentCreate, ProjectCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from core.templates import (
    ASSISTANT_PAIR,
    BUILTIN_BY_SLUG,
    SOFTWARE_COMPANY,
    TemplateCreate,
    TemplateFromAgents,
    TemplateFromRun,
    TemplateMember,
    unique_name,
)
from tests.test_bundles import row_counts


def _ws(services: Services) -> uuid.UUID:
    return services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:8]}")).id


def test_builtins_are_the_software_company_and_the_assistant_pair(services: Services) -> None:
    templates = services.templates.list(_ws(services))
    assert [t.slug for t in templates] == [SOFTWARE_COMPANY, ASSISTANT_PAIR]
    company = BUILTIN_BY_SLUG[SOFTWARE_COMPANY]
    # MetaGPT's five SOP roles, in the order of its software company.
    kinds = [services.agents.definition(m.definition).role_kind for m in company.members]
    assert kinds == ["ProductManager", "Architect", "ProjectManager", "Engineer", "QaEngineer"]
    assert company.idea and company.n_rounds >= 5
    pair = BUILTIN_BY_SLUG[ASSISTANT_PAIR]
    prompts = [m.config["system_prompt"] for m in pair.members]
    assert [m.definition for m in pair.members] == ["assistant", "assistant"] and prompts[0] != prompts[1]


def test_instantiating_twice_gives_distinct_names(services: Services) -> None:
    ws = _ws(services)
    first = services.templates.instantiate(SOFTWARE_COMPANY, ws, actor="user")
    second = services.templates.instantiate(SOFTWARE_COMPANY, ws, actor="user")
    assert [a.name for a in first] == [m.name for m in BUILTIN_BY_SLUG[SOFTWARE_COMPANY].members]
    assert [a.name for a in second] == [f"{m.name} 2" for m in BUILTIN_BY_SLUG[SOFTWARE_COMPANY].members]
    names = [a.name for a in services.agents.list(ws, limit=500).items]
    assert len(names) == len(set(names)) == 10
    # Each agent is a full agent: context version 1 from the template, an agent_created event.
    alice = first[0]
    assert services.contexts.get(alice.id).data == BUILTIN_BY_SLUG[SOFTWARE_COMPANY].members[0].context
    third = services.templates.instantiate(ASSISTANT_PAIR, ws)
    assert third[0].config["system_prompt"].startswith("You are a creative drafter")


def test_unique_name_numbers_from_two_and_skips_taken_numbers() -> None:
    assert unique_name("Ada", set()) == "Ada"
    assert unique_name("Ada", {"Ada", "Ada 2"}) == "Ada 3"
    assert len(unique_name("x" * 200, {"x" * 200})) <= 200


def test_instantiate_into_a_project_and_refusals_write_nothing(services: Services) -> None:
    ws = _ws(services)
    project = services.workspaces.create_project(ws, ProjectCreate(slug="p", name="P"))
    agents = services.templates.instantiate(ASSISTANT_PAIR, ws, project.id)
    assert {a.project_id for a in agents} == {project.id}
    before = row_counts(services)
    with pytest.raises(NotFound):
        services.templates.instantiate("no-such-template", ws)
    with pytest.raises(NotFound):
        services.templates.instantiate(ASSISTANT_PAIR, ws, uuid.uuid4())
    other = _ws(services)
    services.templates.create(
        other, TemplateCreate(slug="mine", name="Mine", members=[TemplateMember(definition="assistant", name="A")])
    )
    with pytest.raises(NotFound):  # another workspace's template is not visible here
        services.templates.instantiate("mine", ws)
    assert row_counts(services)["agent_instances"] == before["agent_instances"]


def test_user_templates_from_members_agents_and_runs(services: Services) -> None:
    ws = _ws(services)
    saved = services.templates.create(
        ws,
        TemplateCreate(
            slug="reviewers",
            name="Reviewers",
            members=[
                TemplateMember(definition="assistant", name="Rev", config={"system_prompt": "Review."}),
                TemplateMember(definition="architect", name="Arch", context={"stack": "Go"}),
            ],
            n_rounds=4,
            idea="review the design",
        ),
    )
    assert not saved.builtin and saved.workspace_id == ws
    assert [t.slug for t in services.templates.list(ws)][-1] == "reviewers"
    with pytest.raises(Conflict):
        services.templates.create(ws, saved.model_copy(update={"builtin": False}))
    with pytest.raises(Conflict, match="built-in"):
        services.templates.create(
            ws,
            TemplateCreate(
                **saved.model_dump(exclude={"builtin", "workspace_id", "created_at"}) | {"slug": SOFTWARE_COMPANY}
            ),
        )
    with pytest.raises(InvalidInput, match="unknown agent definition"):
        services.templates.create(
            ws, TemplateCreate(slug="bad", name="Bad", members=[TemplateMember(definition="nope", name="X")])
        )
    with pytest.raises(InvalidInput, match="schema"):
        services.templates.create(
            ws,
            TemplateCreate(
                slug="bad",
                name="Bad",
                members=[TemplateMember(definition="assistant", name="X", config={"system_prompt": ""})],
            ),
        )
    with pytest.raises(InvalidInput, match="one agent per MetaGPT role kind"):
        services.templates.create(
            ws,
            TemplateCreate(
                slug="bad",
                name="Bad",
                members=[
                    TemplateMember(definition="engineer", name="A"),
                    TemplateMember(definition="engineer", name="B"),
                ],
            ),
        )
    # A hand-picked set keeps config and the *current* context.
    arch = services.templates.instantiate("reviewers", ws)[1]
    from core.context import ContextUpdate

    services.contexts.update(arch.id, ContextUpdate(patch={"stack": "Rust"}))
    picked = services.templates.create_from_agents(
        ws, TemplateFromAgents(slug="picked", name="Picked", agent_ids=[arch.id])
    )
    assert picked.members[0].context == {"stack": "Rust"} and picked.members[0].definition == "architect"
    # A run's team, in the run's order.
    run = services.runs.create(RunCreate(workspace_id=ws, agent_ids=[arch.id], idea="x"))
    assert services.templates.run_team(run.id, ws) == [arch.id]
    with pytest.raises(NotFound):
        services.templates.run_team(run.id, _ws(services))
    services.templates.delete(ws, "picked")
    with pytest.raises(NotFound):
        services.templates.get("picked", ws)


def test_a_runs_team_is_saved_with_the_runs_longest_idea_and_refused_once_its_agents_are_gone(
    services: Services,
) -> None:
    # Found by the API fuzz test: both cases were a pydantic ValidationError inside the route (500).
    ws = _ws(services)
    dev = services.agents.create(AgentCreate(workspace_id=ws, definition="engineer", name="Dev"))
    idea = "y" * MAX_IDEA_CHARS
    run = services.runs.create(RunCreate(workspace_id=ws, agent_ids=[dev.id], idea=idea, n_rounds=7))
    saved = services.templates.create_from_run(ws, TemplateFromRun(run_id=run.id, slug="dev", name="Dev team"))
    assert [m.name for m in saved.members] == ["Dev"] and saved.idea == idea and saved.n_rounds == 7
    with pytest.raises(NotFound):
        services.templates.create_from_run(_ws(services), TemplateFromRun(run_id=run.id, slug="x", name="X"))
    services.agents.delete(dev.id)
    before = row_counts(services)
    with pytest.raises(Conflict, match="none of the run's agents exists"):
        services.templates.create_from_run(ws, TemplateFromRun(run_id=run.id, slug="empty", name="Empty"))
    assert row_counts(services) == before


def test_the_demo_seed_is_the_builtin_templates() -> None:
    members = [m for slug in (SOFTWARE_COMPANY, ASSISTANT_PAIR) for m in BUILTIN_BY_SLUG[slug].members]
    assert [(a.name, a.definition, a.context, a.config) for a in DEMO_AGENTS] == [
        (m.name, m.definition, m.context, m.config) for m in members
    ]


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings.model_copy(update={"run_time_limit": 120}))
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    yield built
    built.runtime.shutdown()
    built.db.dispose()


@pytest.mark.slow
def test_the_software_company_template_runs_to_completion_on_the_demo_model(rt: Services) -> None:
    ws = _ws(rt)
    rt.workspaces.update(ws, WorkspaceUpdate(settings={"code_execution": False}))
    template = rt.templates.get(SOFTWARE_COMPANY, ws)
    team = rt.templates.instantiate(SOFTWARE_COMPANY, ws, actor="user")
    run = rt.runtime.start_run(
        RunCreate(
            workspace_id=ws,
            agent_ids=[a.id for a in team],
            idea=template.idea,
            n_rounds=template.n_rounds,
            investment=template.investment,
        )
    )
    assert rt.runtime.wait_for_run(run.id, 120)
    finished = rt.runs.get(run.id)
    assert finished.status == "completed", finished.error
    assert finished.llm_label == "demo model"
    senders = {m.sender for m in rt.messages.list_run(run.id, limit=500).items}
    assert {a.name for a in team} <= senders
    assert any(f.endswith(".py") for f in rt.runtime.run_files(run.id))


def test_agents_created_by_hand_and_by_template_share_the_name_rule(services: Services) -> None:
    ws = _ws(services)
    services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="Ada (Drafter)"))
    agents = services.templates.instantiate(ASSISTANT_PAIR, ws)
    assert [a.name for a in agents] == ["Ada (Drafter) 2", "Grace (Critic)"]
