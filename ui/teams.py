"""Team templates in the dashboard (issue 17): one-click teams and "save as template".

- `team_offer(services, workspace, templates)`: one button per template ("Create the software-company team", ...),
  shown by the empty board and the empty runs page. A click creates the team and opens `/runs`
  with the team selected and the template's example idea, rounds and budget filled in.
- `prefill(card, template, team)`: what `/runs?template=..&team=..` does to the start-run form.
- `SaveTemplateDialog`: save a run's team or a hand-picked set of agents as a template.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from nicegui import run, ui
from pydantic import ValidationError

from core.errors import DomainError
from core.schemas import AgentPublic, WorkspacePublic
from core.services import Services
from core.templates import TemplateFromAgents, TemplatePublic
from ui.components import validation_messages
from ui.palette import MUTED
from ui.state import ACTOR

MAX_TEAM_PARAM = 12


def button_label(template: TemplatePublic) -> str:
    return f"Create the {template.slug} team"


async def create_team(services: Services, workspace: WorkspacePublic, template: TemplatePublic) -> None:
    """Instantiate `template` in the workspace, then open the start-run form with the team."""
    try:
        agents = await run.io_bound(services.templates.instantiate, template.slug, workspace.id, actor=ACTOR)
    except DomainError as exc:
        ui.notify(str(exc), type="negative", multi_line=True)
        return
    if agents is None:  # the server is shutting down
        return
    ui.notify(f"Created {len(agents)} agents: {', '.join(a.name for a in agents)}", type="positive")
    team = ",".join(str(a.id) for a in agents)
    ui.navigate.to(f"/runs?template={template.slug}&team={team}")


def team_offer(services: Services, workspace: WorkspacePublic, templates: list[TemplatePublic]) -> ui.column:
    """The one-click teams: a button per template, with its members listed under it."""
    with ui.column().classes("items-center gap-2 w-full").mark("team-offer") as column:
        ui.label("Or start with a ready-made team, then run it on an example idea:").classes(f"text-sm {MUTED}")
        with ui.row().classes("justify-center gap-3"):
            for template in templates:
                members = ", ".join(m.name for m in template.members)

                async def create(t: TemplatePublic = template) -> None:
                    await create_team(services, workspace, t)

                button = (
                    ui.button(button_label(template), icon="groups", on_click=create)
                    .props("unelevated no-caps")
                    .mark(f"create-team create-team-{template.slug}")
                )
                button.props["title"] = members  # a prop assigned, never parsed: names are user text
    return column


def prefill(card: Any, template: TemplatePublic | None, team: str | None, agents: list[AgentPublic]) -> None:
    """Select the team (ids that are agents of this workspace) and fill in the template's idea."""
    known = {str(a.id) for a in agents}
    chosen = [t for t in (team or "").split(",")[:MAX_TEAM_PARAM] if t in known]
    if chosen:
        card.members.value = chosen
    if template is not None:
        if template.idea and not (card.idea.value or "").strip():
            card.idea.value = template.idea
        card.rounds.value = template.n_rounds
        card.investment.value = template.investment


class SaveTemplateDialog:
    """Slug, name and description for a template of these agents (a run's team or a picked set)."""

    def __init__(
        self,
        services: Services,
        workspace: WorkspacePublic,
        agent_ids: Callable[[], list[uuid.UUID]] | None = None,
        *,
        pick_from: list[AgentPublic] | None = None,
        n_rounds: int = 5,
        investment: float = 3.0,
        idea: str = "",
        on_saved: Callable[[TemplatePublic], Any] | None = None,
    ) -> None:
        self.services = services
        self.workspace = workspace
        self.picker: ui.select | None = None
        self.agent_ids = agent_ids or self._picked
        self.defaults = {"n_rounds": n_rounds, "investment": investment, "idea": idea}
        self.on_saved = on_saved
        with ui.dialog() as self.dialog, ui.card().classes("w-[28rem] max-w-full gap-3 p-6 rounded-xl"):
            ui.label("Save as a team template").classes("text-lg font-semibold")
            ui.label("Members keep their definition, name, config and current context.").classes(f"text-sm {MUTED}")
            if pick_from is not None:
                options = {str(a.id): f"{a.name} · {a.role_kind}" for a in pick_from}
                self.picker = (
                    ui.select(options, multiple=True, label="Members", value=[])
                    .props("outlined dense use-chips options-dense")
                    .classes("w-full")
                    .mark("template-members")
                )
            self.name = ui.input("Name").props("outlined dense").classes("w-full").mark("template-name")
            self.slug = (ui.input("Slug", placeholder="e.g. my-team").props("outlined dense").classes("w-full")).mark(
                "template-slug"
            )
            self.description = ui.input("Description").props("outlined dense").classes("w-full")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=self.dialog.close).props("flat no-caps")
                self.button = (
                    ui.button("Save template", icon="save", on_click=self.save)
                    .props("unelevated no-caps")
                    .mark("template-save")
                )

    def open(self) -> None:
        self.dialog.open()

    def _picked(self) -> list[uuid.UUID]:
        return [uuid.UUID(v) for v in (self.picker.value or [])] if self.picker is not None else []

    async def save(self) -> None:
        self.name.error = self.slug.error = None
        ids = self.agent_ids()
        try:
            data = TemplateFromAgents(
                slug=self.slug.value or "",
                name=self.name.value or "",
                description=self.description.value or "",
                agent_ids=ids,
                **self.defaults,
            )
        except ValidationError as exc:
            messages = validation_messages(exc)
            self.slug.error = messages.get("slug") and "lowercase letters, digits and dashes"
            self.name.error = messages.get("name")
            if "agent_ids" in messages:
                ui.notify("Choose between 1 and 12 agents", type="warning")
            return
        try:
            saved = await run.io_bound(self.services.templates.create_from_agents, self.workspace.id, data)
        except DomainError as exc:
            ui.notify(str(exc), type="negative", multi_line=True)
            return
        if saved is None:
            return
        self.dialog.close()
        ui.notify(f"Template {saved.name} saved: find it on the Catalog page", type="positive")
        if self.on_saved is not None:
            result = self.on_saved(saved)
            if hasattr(result, "__await__"):
                await result
