"""`--demo`: a `demo` workspace with a small team, so a new user sees a populated board at once.

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


DEMO_AGENTS: tuple[DemoAgent, ...] = (
    DemoAgent(
        "Alice (PM)",
        "product-manager",
        {"focus": "user stories and acceptance criteria", "audience": "small teams new to LLM agents"},
    ),
    DemoAgent(
        "Bob (Architect)",
        "architect",
        {"focus": "simple designs with few moving parts", "preferred_stack": ["Python", "SQLite"]},
    ),
    DemoAgent(
        "Carol (Project Manager)",
        "project-manager",
        {"focus": "small tasks with explicit dependencies", "max_tasks": 8},
    ),
    DemoAgent(
        "Dave (Engineer)",
        "engineer",
        {"focus": "readable code with type hints", "style": {"line_length": 100, "tests": "pytest"}},
    ),
    DemoAgent(
        "Erin (QA)",
        "qa-engineer",
        {"focus": "edge cases and regressions", "test_framework": "pytest"},
    ),
    DemoAgent(
        "Assistant",
        "assistant",
        {"notes": "Answers questions about the demo workspace."},
        {"system_prompt": "You are a friendly assistant in the AgentDeck demo. Answer briefly and clearly."},
    ),
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
