"""`--demo`: a `demo` workspace with a small team, so a new user sees a populated board at once.

The team is the built-in templates' members (core/templates.py: "Software company" and
"Assistant pair"), the same agents the empty board creates in one click.

Seeding happens once. The workspace remembers it (settings["demo_seeded"]); until then each call
adds whichever demo agents are missing, so a start that crashed half-way finishes the job, and
after it an agent the user deleted or renamed stays that way. Two processes seeding at the same
moment are fine: the loser of a name race gets Conflict, which here means "already there".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import Conflict
from core.schemas import AgentCreate, WorkspacePublic, WorkspaceUpdate
from core.templates import ASSISTANT_PAIR, BUILTIN_BY_SLUG, SOFTWARE_COMPANY
from core.workspaces import DEMO_SLUG

if TYPE_CHECKING:
    from core.services import Services

SEEDED_FLAG = "demo_seeded"
ACTOR = "system"


@dataclass(frozen=True)
class DemoAgent:
    name: str
    definition: str
    context: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)


# The same teams a new user gets in one click from the empty board: the built-in templates.
DEMO_TEMPLATES = (SOFTWARE_COMPANY, ASSISTANT_PAIR)
DEMO_AGENTS: tuple[DemoAgent, ...] = tuple(
    DemoAgent(member.name, member.definition, member.context, member.config)
    for slug in DEMO_TEMPLATES
    for member in BUILTIN_BY_SLUG[slug].members
)


def seed_demo(services: Services) -> WorkspacePublic:
    """The `demo` workspace, with its demo agents created the first time; later calls add nothing."""
    try:
        workspace = services.workspaces.ensure_demo()
    except Conflict:  # another process created it between ensure_demo's look and its insert
        workspace = services.workspaces.get_by_slug(DEMO_SLUG)
    if workspace.settings.get(SEEDED_FLAG):
        return workspace
    existing = _agent_names(services, workspace)
    for agent in DEMO_AGENTS:
        if agent.name in existing:
            continue
        # Conflict: another process seeding at the same moment created it first.
        with contextlib.suppress(Conflict):
            services.agents.create(
                AgentCreate(
                    workspace_id=workspace.id,
                    definition=agent.definition,
                    name=agent.name,
                    config=agent.config or None,
                    context=agent.context,
                ),
                actor=ACTOR,
            )
    return services.workspaces.update(workspace.id, WorkspaceUpdate(settings={SEEDED_FLAG: True}))


def _agent_names(services: Services, workspace: WorkspacePublic) -> set[str]:
    names: set[str] = set()
    cursor = None
    while True:
        page = services.agents.list(workspace.id, limit=500, cursor=cursor)
        names.update(agent.name for agent in page.items)
        if page.next_cursor is None:
            return names
        cursor = page.next_cursor
