"""Team templates (issue 17): a named set of members that becomes a runnable team in one click.

A template is members (definition slug, name, config, optional context), default rounds, budget
and an example idea. Two are built in and live here, in code: "Software company" (MetaGPT's five
SOP roles, in the order of its software company) and "Assistant pair". Users save their own —
any run's team, or a hand-picked set of agents — into `team_templates`, per workspace (nothing
crosses workspaces); a user template's slug never shadows a built-in one.

Instantiating creates the agents through AgentService (same validation, status row, context
version 1 and `agent_created` event as any other creation). Names are de-duplicated against the
workspace: "Alice (PM)" exists, so the second team gets "Alice (PM) 2". Everything is validated
before the first agent is created (definitions exist, configs match their schemas), so a bad
template creates nothing.
"""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import col, select

from core.agents import AgentService, validate_config
from core.db import Database
from core.errors import Conflict, InvalidInput, NotFound
from core.runs import MAX_IDEA_CHARS, MAX_MEMBERS
from core.schemas import AgentCreate, AgentPublic, DefinitionSlug, Description, Name, Slug
from core.validation import NoNul, check_storable_json
from storage.models import AgentDefinition, AgentInstance, Project, RunMember, TeamTemplate, Workspace

MAX_USER_TEMPLATES_LISTED = 500
MAX_NAME_SUFFIX = 1000


class TemplateMember(BaseModel):
    definition: DefinitionSlug
    name: Name
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class TemplateCreate(BaseModel):
    slug: Slug
    name: Name
    description: Description = ""
    members: list[TemplateMember] = Field(min_length=1, max_length=MAX_MEMBERS)
    n_rounds: int = Field(default=5, ge=1, le=100)
    investment: float = Field(default=3.0, gt=0, le=10_000)
    # As long as a run's idea: a run's team is saved with its idea.
    idea: Annotated[str, StringConstraints(max_length=MAX_IDEA_CHARS), NoNul] = ""


class TemplatePublic(TemplateCreate):
    builtin: bool
    workspace_id: uuid.UUID | None = None
    created_at: datetime | None = None


class TemplateFromAgents(BaseModel):
    """Save a hand-picked set of agents (or a run's team) as a template."""

    slug: Slug
    name: Name
    description: Description = ""
    agent_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_MEMBERS)
    n_rounds: int = Field(default=5, ge=1, le=100)
    investment: float = Field(default=3.0, gt=0, le=10_000)
    idea: Annotated[str, StringConstraints(max_length=MAX_IDEA_CHARS), NoNul] = ""


class TemplateFromRun(BaseModel):
    """Save a run's team, with the run's rounds, budget and idea as the template's defaults."""

    run_id: uuid.UUID
    slug: Slug
    name: Name
    description: Description = ""


class InstantiateRequest(BaseModel):
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None = None


def _member(
    definition: str, name: str, context: dict[str, Any], config: dict[str, Any] | None = None
) -> TemplateMember:
    return TemplateMember(definition=definition, name=name, context=context, config=config or {})


SOFTWARE_COMPANY = "software-company"
ASSISTANT_PAIR = "assistant-pair"

BUILTIN_TEMPLATES: tuple[TemplatePublic, ...] = (
    TemplatePublic(
        builtin=True,
        slug=SOFTWARE_COMPANY,
        name="Software company",
        description="MetaGPT's software company: product manager → architect → project manager → engineer → "
        "QA engineer, each following its standard operating procedure.",
        members=[
            _member(
                "product-manager",
                "Alice (PM)",
                {"focus": "user stories and acceptance criteria", "audience": "small teams new to LLM agents"},
            ),
            _member(
                "architect",
                "Bob (Architect)",
                {"focus": "simple designs with few moving parts", "preferred_stack": ["Python", "SQLite"]},
            ),
            _member(
                "project-manager",
                "Carol (Project Manager)",
                {"focus": "small tasks with explicit dependencies", "max_tasks": 8},
            ),
            _member(
                "engineer",
                "Dave (Engineer)",
                {"focus": "readable code with type hints", "style": {"line_length": 100, "tests": "pytest"}},
            ),
            _member("qa-engineer", "Erin (QA)", {"focus": "edge cases and regressions", "test_framework": "pytest"}),
        ],
        # Enough rounds for every role to take its turn (PRD, design, tasks, code, tests).
        n_rounds=12,
        investment=3.0,
        idea="A command-line todo app with due dates and priorities, saved in a JSON file",
    ),
    TemplatePublic(
        builtin=True,
        slug=ASSISTANT_PAIR,
        name="Assistant pair",
        description="Two assistants with complementary prompts: one drafts, the other critiques and improves.",
        members=[
            _member(
                "assistant",
                "Ada (Drafter)",
                {"notes": "Writes the first draft of whatever the team is asked for."},
                {
                    "system_prompt": "You are a creative drafter. Turn the request into a concrete, complete "
                    "first draft. Prefer specifics over generalities; keep it short."
                },
            ),
            _member(
                "assistant",
                "Grace (Critic)",
                {"notes": "Reviews the drafts and proposes improvements."},
                {
                    "system_prompt": "You are a careful critic. Read the latest draft, list its three biggest "
                    "weaknesses and give an improved version. Be direct and brief."
                },
            ),
        ],
        n_rounds=3,
        investment=1.0,
        idea="Plan a one-day offsite for a team of 12 on a small budget",
    ),
)
BUILTIN_BY_SLUG = {t.slug: t for t in BUILTIN_TEMPLATES}


def _public(row: TeamTemplate) -> TemplatePublic:
    return TemplatePublic(
        builtin=False,
        workspace_id=row.workspace_id,
        created_at=row.created_at,
        slug=row.slug,
        name=row.name,
        description=row.description,
        members=[TemplateMember.model_validate(m) for m in row.members],
        n_rounds=row.n_rounds,
        investment=row.investment,
        idea=row.idea,
    )


def unique_name(wanted: str, taken: set[str]) -> str:
    """`wanted`, or `wanted 2`, `wanted 3`, ... — the first not in `taken` (case as given)."""
    if wanted not in taken:
        return wanted
    for n in range(2, MAX_NAME_SUFFIX):
        candidate = f"{wanted[: 200 - len(str(n)) - 1]} {n}"
        if candidate not in taken:
            return candidate
    raise Conflict(f"too many agents named like {wanted!r} in this workspace")


class TemplateService:
    def __init__(self, db: Database, agents: AgentService) -> None:
        self.db = db
        self.agents = agents

    def list(self, workspace_id: uuid.UUID | None) -> list[TemplatePublic]:
        """Built-ins first, then the workspace's own by name (at most MAX_USER_TEMPLATES_LISTED)."""
        items = list(BUILTIN_TEMPLATES)
        if workspace_id is not None:
            with self.db.read() as session:
                rows = session.exec(
                    select(TeamTemplate)
                    .where(TeamTemplate.workspace_id == workspace_id)
                    .order_by(col(TeamTemplate.name), col(TeamTemplate.id))
                    .limit(MAX_USER_TEMPLATES_LISTED)
                )
                items += [_public(r) for r in rows]
        return items

    def get(self, slug: str, workspace_id: uuid.UUID | None) -> TemplatePublic:
        if slug in BUILTIN_BY_SLUG:
            return BUILTIN_BY_SLUG[slug]
        if workspace_id is not None:
            with self.db.read() as session:
                row = session.exec(
                    select(TeamTemplate).where(TeamTemplate.workspace_id == workspace_id, TeamTemplate.slug == slug)
                ).first()
                if row is not None:
                    return _public(row)
        raise NotFound("template", slug)

    def create(self, workspace_id: uuid.UUID, data: TemplateCreate) -> TemplatePublic:
        if data.slug in BUILTIN_BY_SLUG:
            raise Conflict(f"{data.slug!r} is a built-in template's slug; choose another")
        members = [m.model_dump(mode="json") for m in data.members]
        check_storable_json(members, "members")
        with self.db.write() as session:
            if session.get(Workspace, workspace_id) is None:
                raise NotFound("workspace", workspace_id)
            self._check_members(session, data.members)
            taken = session.exec(
                select(TeamTemplate.id).where(TeamTemplate.workspace_id == workspace_id, TeamTemplate.slug == data.slug)
            ).first()
            if taken is not None:
                raise Conflict(f"a template with slug {data.slug!r} already exists in this workspace")
            row = TeamTemplate(
                workspace_id=workspace_id,
                slug=data.slug,
                name=data.name,
                description=data.description,
                members=members,
                n_rounds=data.n_rounds,
                investment=data.investment,
                idea=data.idea,
            )
            session.add(row)
            session.flush()
            return _public(row)

    def create_from_agents(self, workspace_id: uuid.UUID, data: TemplateFromAgents) -> TemplatePublic:
        """A template of these agents as they are now: definition, name, config, current context."""
        from storage.models import AgentContext

        members: list[TemplateMember] = []
        with self.db.read() as session:
            for agent_id in data.agent_ids:
                agent = session.get(AgentInstance, agent_id)
                if agent is None or agent.workspace_id != workspace_id:
                    raise NotFound("agent", agent_id)
                definition = session.get_one(AgentDefinition, agent.definition_id)
                context = session.exec(select(AgentContext).where(AgentContext.agent_id == agent.id)).first()
                members.append(
                    TemplateMember(
                        definition=definition.slug,
                        name=agent.name,
                        config=agent.config,
                        context=context.data if context is not None else {},
                    )
                )
        fields = data.model_dump(exclude={"agent_ids"})
        return self.create(workspace_id, TemplateCreate(**fields, members=members))

    def create_from_run(self, workspace_id: uuid.UUID, data: TemplateFromRun) -> TemplatePublic:
        """A template of a run's agents that still exist (as `create_from_agents` saves them), with
        the run's rounds, budget and idea. A run none of whose agents exists any more has no team
        to save: Conflict."""
        from storage.models import Run

        agent_ids = self.run_team(data.run_id, workspace_id)
        if not agent_ids:
            raise Conflict("none of the run's agents exists any more: there is no team to save")
        with self.db.read() as session:
            run = session.get_one(Run, data.run_id)
        team = TemplateFromAgents(
            slug=data.slug,
            name=data.name,
            description=data.description,
            agent_ids=agent_ids,
            n_rounds=run.n_rounds,
            investment=run.investment,
            idea=run.idea,
        )
        return self.create_from_agents(workspace_id, team)

    def run_team(self, run_id: uuid.UUID, workspace_id: uuid.UUID) -> builtins.list[uuid.UUID]:
        """The agents of a run that still exist, in the run's order (for "save this run's team")."""
        from storage.models import Run

        with self.db.read() as session:
            run = session.get(Run, run_id)
            if run is None or run.workspace_id != workspace_id:
                raise NotFound("run", run_id)
            rows = session.exec(
                select(RunMember.agent_id)
                .where(RunMember.run_id == run_id, col(RunMember.agent_id).is_not(None))
                .order_by(col(RunMember.created_at), col(RunMember.id))
            )
            return [a for a in rows if a is not None]

    def delete(self, workspace_id: uuid.UUID, slug: str) -> None:
        if slug in BUILTIN_BY_SLUG:
            raise Conflict("built-in templates cannot be deleted")
        with self.db.write() as session:
            row = session.exec(
                select(TeamTemplate).where(TeamTemplate.workspace_id == workspace_id, TeamTemplate.slug == slug)
            ).first()
            if row is None:
                raise NotFound("template", slug)
            session.delete(row)

    def instantiate(
        self,
        slug: str,
        workspace_id: uuid.UUID,
        project_id: uuid.UUID | None = None,
        actor: str = "system",
    ) -> builtins.list[AgentPublic]:
        """Create the template's agents in the workspace; names that are taken get a number."""
        template = self.get(slug, workspace_id)
        with self.db.read() as session:
            if session.get(Workspace, workspace_id) is None:
                raise NotFound("workspace", workspace_id)
            if project_id is not None:
                project = session.get(Project, project_id)
                if project is None or project.workspace_id != workspace_id:
                    raise NotFound("project", project_id)
            self._check_members(session, template.members)
            wanted = [m.name for m in template.members]
            taken = set(
                session.exec(
                    select(AgentInstance.name).where(
                        AgentInstance.workspace_id == workspace_id,
                        sa.or_(*[col(AgentInstance.name).startswith(w) for w in wanted]),
                    )
                )
            )
        created: list[AgentPublic] = []
        for member in template.members:
            # Another writer may take a name between the look above and the insert: try the next.
            for _ in range(MAX_NAME_SUFFIX):
                name = unique_name(member.name, taken)
                taken.add(name)
                try:
                    agent = self.agents.create(
                        AgentCreate(
                            workspace_id=workspace_id,
                            definition=member.definition,
                            name=name,
                            config=member.config or None,
                            project_id=project_id,
                            context=member.context,
                        ),
                        actor=actor,
                    )
                except Conflict:
                    continue
                created.append(agent)
                break
        return created

    @staticmethod
    def _check_members(session: Any, members: builtins.list[TemplateMember]) -> None:
        """Every member's definition is in the catalog and its config fits the schema."""
        slugs = {m.definition for m in members}
        found = {d.slug: d for d in session.exec(select(AgentDefinition).where(col(AgentDefinition.slug).in_(slugs)))}
        for member in members:
            definition = found.get(member.definition)
            if definition is None:
                raise InvalidInput(f"member {member.name!r}: unknown agent definition {member.definition!r}")
            validate_config(definition, member.config)
            check_storable_json(member.context, f"context of {member.name}")
        kinds = [found[m.definition].role_kind for m in members if found[m.definition].role_kind != "assistant"]
        if len(kinds) != len(set(kinds)):
            raise InvalidInput("a team has at most one agent per MetaGPT role kind (assistants excepted)")
