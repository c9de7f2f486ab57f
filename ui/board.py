"""The agents board (SPEC §11, route `/`): every agent of the current workspace, live.

Agents are loaded a page (24) at a time with the service's keyset cursor ("Load more" fetches the next
page), so a workspace with thousands of agents opens as fast as an empty one. Each card updates
itself in place from the event bus: a status change recolours its badge and rebuilds its action
menu from `allowed_transitions`; created, renamed and deleted agents appear, change and vanish
without a reload, whichever tab, process or API client made the change.
"""

from __future__ import annotations

import contextlib
import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from nicegui import APIRouter, run, ui

from core.errors import DomainError, NotFound
from core.event_schema import AgentStatusChanged
from core.events import EventFilter, EventOut, EventType
from core.pagination import encode_cursor
from core.schemas import AgentPublic, DefinitionPublic, ProjectPublic, WorkspacePublic
from core.services import Services
from core.status import AgentStatus
from core.templates import TemplatePublic
from ui import live
from ui.new_agent import NewAgentDialog
from ui.palette import MUTED
from ui.safe_props import with_props
from ui.state import ACTOR, app_services
from ui.teams import team_offer
from ui.theme import frame
from ui.widgets import ROLE_ICONS, STATUS_COLORS

router = APIRouter()

# Enough to fill a large screen (three columns); the rest comes with "Load more".
PAGE_SIZE = 24
RUNNING = {AgentStatus.ACTIVE.value, AgentStatus.BUSY.value}
ALL = ""  # the "any" choice of a filter select
CARD = (
    "w-full p-4 gap-3 rounded-xl shadow-sm border border-slate-200 dark:border-slate-700 "
    "hover:shadow-md transition-shadow"
)
ICON = "text-xl p-2 rounded-lg bg-indigo-50 text-indigo-600 dark:bg-indigo-500/15 dark:text-indigo-300"
# Quasar's own QBadge classes, so a badge inside an HTML block looks like `ui.badge`.
BADGE = "q-badge flex inline items-center no-wrap q-badge--single-line text-white shrink-0"


@dataclass
class Filters:
    status: str = ALL
    project_id: str = ALL
    name: str = ""

    @property
    def active(self) -> bool:
        return bool(self.status or self.project_id or self.name)

    def matches(self, agent: AgentPublic) -> bool:
        return (
            (not self.status or agent.status == self.status)
            and (not self.project_id or str(agent.project_id) == self.project_id)
            and (not self.name or self.name.casefold() in agent.name.casefold())
        )


class AgentCard:
    """One agent: name, definition, project, status badge and reason, and its status actions."""

    def __init__(self, board: Board, agent: AgentPublic) -> None:
        self.board = board
        self.agent = agent
        self.card = ui.card().classes(CARD).mark(f"agent-card agent-{agent.id}")
        with self.card:
            # Name, definition, project, badge and reason are one escaped HTML block: five elements
            # per card instead of a dozen keeps a page of cards cheap to build and to send.
            self.body = ui.html(tag="div").classes("w-full").mark(f"agent-body-{agent.id}")
            with ui.row().classes(
                "w-full items-center justify-between no-wrap mt-auto pt-2 border-t border-slate-100 "
                "dark:border-slate-700"
            ):
                self.toggle = ui.button(on_click=self._toggle).props("flat dense no-caps").mark(f"toggle-{agent.id}")
                self.more = (
                    ui.button(icon="more_vert", on_click=self._open_menu)
                    .props('flat round dense aria-label="Change status" title="Change status"')
                    .mark(f"more-{agent.id}")
                )
        # Built on first use, from the status at that moment (most menus are never opened).
        self.menu: ui.menu | None = None
        self.render()

    def render(self) -> None:
        agent = self.agent
        with_props(self.card, {"data-agent-id": str(agent.id), "data-status": agent.status})
        self.body.set_content(self._body_html())
        running = agent.status in RUNNING
        self.toggle.set_text("Deactivate" if running else "Activate")
        with_props(
            self.toggle,
            {
                "icon": "power_settings_new" if running else "play_arrow",
                "color": "blue-grey-6" if running else "primary",
            },
        )
        if self.menu is not None and self.menu.value:  # open while the status changed: offer what is allowed now
            self._fill_menu()

    def _body_html(self) -> str:
        agent, esc = self.agent, html.escape
        icon = ROLE_ICONS.get(agent.role_kind, "smart_toy")
        color = STATUS_COLORS.get(agent.status, "grey")
        reason = ""
        if agent.status_reason:
            tone = "text-negative" if agent.status == AgentStatus.ERROR else MUTED
            reason = f'<div class="text-sm line-clamp-2 mt-2 {tone}">{esc(agent.status_reason)}</div>'
        return (
            f'<a href="/agents/{agent.id}" class="flex items-start gap-3 no-underline text-inherit">'
            f'<i class="q-icon notranslate material-icons {ICON}" aria-hidden="true">{icon}</i>'
            '<div class="grow min-w-0">'
            f'<div class="font-semibold truncate" title="{esc(agent.name)}">{esc(agent.name)}</div>'
            f'<div class="text-xs truncate {MUTED}">{esc(self.board.describe(agent))}</div>'
            "</div>"
            f'<span class="{BADGE} bg-{color}" data-status="{esc(agent.status)}">{esc(agent.status)}</span>'
            f"</a>{reason}"
        )

    def _open_menu(self) -> None:
        if self.menu is None:
            with self.more:
                self.menu = ui.menu().props("auto-close no-parent-event")
        self._fill_menu()
        self.menu.open()

    def _fill_menu(self) -> None:
        agent, menu = self.agent, self.menu
        assert menu is not None
        menu.clear()
        with menu:
            ui.item_label("Set status").props("header").classes("text-xs uppercase tracking-wider py-2")
            for target in agent.allowed_transitions:
                ui.menu_item(target.capitalize(), on_click=partial(self._change, target)).mark(
                    f"transition-{agent.id} transition-{agent.id}-{target}"
                )

    async def _toggle(self) -> None:
        agents, agent_id, scope = self.board.services.agents, self.agent.id, self.board.workspace.id
        if self.agent.status in RUNNING:
            call = partial(agents.set_status, agent_id, AgentStatus.OFFLINE, reason="deactivated", actor=ACTOR)
        else:
            call = partial(agents.activate, agent_id, actor=ACTOR)
        self.toggle.disable()
        try:
            await self.board.act(agent_id, partial(call, scope=scope))
        finally:
            self.toggle.enable()

    async def _change(self, target: str) -> None:
        agents, scope = self.board.services.agents, self.board.workspace.id
        call = partial(agents.set_status, self.agent.id, target, reason="set from the dashboard", actor=ACTOR)
        await self.board.act(self.agent.id, partial(call, scope=scope))


class Board:
    def __init__(
        self,
        services: Services,
        workspace: WorkspacePublic,
        definitions: list[DefinitionPublic],
        projects: list[ProjectPublic],
        total: int,
        templates: list[TemplatePublic] | None = None,
    ) -> None:
        self.services = services
        self.workspace = workspace
        self.templates = templates or []
        self.definitions = {d.slug: d for d in definitions}
        self.projects = {str(p.id): p for p in projects}
        self.total = total
        self.filters = Filters()
        self.cards: dict[uuid.UUID, AgentCard] = {}
        self.next_cursor: str | None = None
        self.last_loaded: AgentPublic | None = None
        # At most this many cards: the pages loaded so far. Live additions beyond it wait for
        # "Load more", so a burst of creations elsewhere cannot build thousands of elements here.
        self.capacity = PAGE_SIZE
        # While a page loads, events wait here and are applied after it: an event about an agent
        # of that page must not be lost because its card did not exist yet.
        self.loading = True
        self.pending: list[EventOut] = []
        self.generation = 0
        self.create_dialog = NewAgentDialog(
            services, workspace, self.definitions, self.projects, on_created=lambda agent: self.apply(agent, mine=True)
        )
        self._build()

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        with ui.row().classes("w-full items-center gap-3"):
            search = (
                ui.input(placeholder="Search by name", on_change=lambda e: self._set_filter(name=(e.value or "")))
                .props("dense outlined clearable debounce=300")
                .classes("w-full sm:w-64")
                .mark("name-filter")
            )
            with search.add_slot("prepend"):
                ui.icon("search").classes("text-slate-400")
            statuses = {ALL: "All statuses", **{s.value: s.value.capitalize() for s in AgentStatus}}
            ui.select(statuses, value=ALL, on_change=lambda e: self._set_filter(status=e.value or ALL)).props(
                'dense outlined options-dense aria-label="Status"'
            ).classes("w-40 max-sm:grow").mark("status-filter")
            if self.projects:
                options = {ALL: "All projects", **{pid: p.name for pid, p in self.projects.items()}}
                ui.select(options, value=ALL, on_change=lambda e: self._set_filter(project_id=e.value or ALL)).props(
                    'dense outlined options-dense aria-label="Project"'
                ).classes("w-48 max-sm:grow").mark("project-filter")
            ui.space()
            self.count = ui.label().classes(f"text-sm {MUTED}").mark("agent-count")
            ui.button("New agent", icon="add", on_click=self.create_dialog.open).props("unelevated no-caps").mark(
                "new-agent"
            )
        self.grid = ui.element("div").classes("w-full grid gap-4 grid-cols-1 sm:grid-cols-2 xl:grid-cols-3")
        with ui.card().classes("w-full items-center p-10 gap-2 rounded-xl shadow-none border border-dashed") as empty:
            ui.icon("smart_toy").classes("text-5xl text-slate-300")
            self.empty_title = ui.label().classes("text-lg font-medium").mark("board-empty")
            self.empty_hint = ui.label().classes(f"text-sm {MUTED} text-center")
            self.team_offer = team_offer(self.services, self.workspace, self.templates)  # issue 17: a team in one click
        self.empty = empty
        with ui.row().classes("w-full items-center justify-center gap-3"):
            self.shown = ui.label().classes(f"text-sm {MUTED}").mark("shown-count")
            self.more = (
                ui.button("Load more", icon="expand_more", on_click=self.load_more)
                .props("outline no-caps")
                .mark("load-more")
            )
        self._refresh_footer()

    def describe(self, agent: AgentPublic) -> str:
        definition = self.definitions.get(agent.definition)
        parts = [definition.name if definition else agent.definition]
        if agent.project_id is not None:
            project = self.projects.get(str(agent.project_id))
            parts.append(project.name if project else "other project")
        return " · ".join(parts)

    def _refresh_footer(self) -> None:
        self.count.set_text(f"{self.total:,} agent{'' if self.total == 1 else 's'}")
        shown = len(self.cards)
        of = "" if self.filters.active else f" of {self.total:,}"
        self.shown.set_text(f"Showing {shown:,}{of}" if self.next_cursor else "")
        self.shown.set_visibility(bool(self.next_cursor))
        self.more.set_visibility(bool(self.next_cursor))
        self.empty.set_visibility(not shown and not self.loading)
        self.team_offer.set_visibility(not self.filters.active)
        if self.filters.active:
            self.empty_title.set_text("No agent matches these filters")
            self.empty_hint.set_text("Change or clear the filters above.")
        else:
            self.empty_title.set_text("No agents yet")
            self.empty_hint.set_text("Create one from the catalog with “New agent”; it will appear here live.")

    # -- loading ---------------------------------------------------------------------------
    async def _set_filter(self, **changes: str) -> None:
        for key, value in changes.items():
            setattr(self.filters, key, value)
        await self.reload()

    def _fetch(self, cursor: str | None) -> Any:
        f = self.filters
        return self.services.agents.list(
            self.workspace.id,
            status=f.status or None,
            project_id=uuid.UUID(f.project_id) if f.project_id else None,
            name=f.name or None,
            limit=PAGE_SIZE,
            cursor=cursor,
        )

    async def reload(self) -> None:
        await self._load(None)

    async def load_more(self) -> None:
        if self.next_cursor and not self.loading:  # during a reload the cursor is about to change
            self.more.props("loading")
            await self._load(self.next_cursor)
            self.more.props(remove="loading")

    async def _load(self, cursor: str | None) -> None:
        self.generation += 1
        generation = self.generation
        self.loading = True
        try:
            page = await run.io_bound(self._fetch, cursor)
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
            page = None
        if generation != self.generation:  # a newer filter change took over
            return
        if page is not None:
            if cursor is None:
                self.grid.clear()
                self.cards.clear()
                self.capacity = PAGE_SIZE
            else:
                self.capacity = len(self.cards) + PAGE_SIZE
            with self.grid:
                for agent in page.items:
                    if agent.id not in self.cards:
                        self.cards[agent.id] = AgentCard(self, agent)
            self.next_cursor = page.next_cursor
            self.last_loaded = page.items[-1] if page.items else self.last_loaded
        while self.pending:
            await self._handle(self.pending.pop(0))
        self.loading = False
        self._refresh_footer()

    # -- changes ---------------------------------------------------------------------------
    async def act(self, agent_id: uuid.UUID, call: Callable[[], AgentPublic]) -> None:
        """Run a status action; on refusal say why and show the agent as it really is now."""
        try:
            self.apply(await run.io_bound(call))
        except NotFound:
            ui.notify("This agent no longer exists", type="warning")
            self.remove(agent_id)
        except DomainError as exc:
            ui.notify(str(exc), type="negative", multi_line=True)
            try:
                self.apply(await run.io_bound(self.services.agents.get, agent_id, self.workspace.id))
            except NotFound:
                self.remove(agent_id)

    def apply(self, agent: AgentPublic, *, mine: bool = False) -> None:
        """Show `agent` as given: update its card, add one, or drop it if filters exclude it.

        An agent without a card gets one if the pages loaded so far would contain it and there is
        room; `mine` (just created in this tab) always gets one, so the person sees it."""
        card = self.cards.get(agent.id)
        if not self.filters.matches(agent):
            self.remove(agent.id)
        elif card is not None:
            if agent.lock_version > card.agent.lock_version:  # not an echo of what it shows
                card.agent = agent
                card.render()
        elif mine or (self._within_loaded(agent) and len(self.cards) < self.capacity):
            with self.grid:
                self.cards[agent.id] = AgentCard(self, agent)
        elif self.next_cursor is None and self.cards:
            # Everything was loaded but the board is full: continue after the last card.
            last = max((c.agent for c in self.cards.values()), key=lambda a: (a.created_at, a.id))
            self.next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
            self.last_loaded = last
        self._refresh_footer()

    def remove(self, agent_id: uuid.UUID | None) -> None:
        card = self.cards.pop(agent_id, None) if agent_id else None
        if card is not None:
            card.card.delete()
            self._refresh_footer()

    def _within_loaded(self, agent: AgentPublic) -> bool:
        """Would the pages loaded so far include this agent? (Else "Load more" brings it.)"""
        if self.next_cursor is None or self.last_loaded is None:
            return True
        last = self.last_loaded
        try:
            return (agent.created_at, agent.id) <= (last.created_at, last.id)
        except TypeError:
            return False

    async def on_event(self, event: EventOut) -> None:
        if self.loading:
            self.pending.append(event)
        else:
            await self._handle(event)

    async def _handle(self, event: EventOut) -> None:
        data = event.data
        if event.type == EventType.AGENT_CREATED:
            self.total += 1
            self.apply(AgentPublic.model_validate(data["agent"]))
        elif event.type == EventType.AGENT_UPDATED:
            self.apply(AgentPublic.model_validate(data["agent"]))
        elif event.type == EventType.AGENT_DELETED:
            self.total = max(0, self.total - 1)
            self.remove(event.agent_id)
            self._refresh_footer()
        elif event.type == EventType.AGENT_STATUS_CHANGED and event.agent_id is not None:
            card = self.cards.get(event.agent_id)
            change = AgentStatusChanged.of(event)
            if card is not None:
                self.apply(card.agent.model_copy(update={**change.agent_fields(), "updated_at": event.ts}))
            elif self.filters.status and change.to == self.filters.status:
                with contextlib.suppress(NotFound):  # it has just entered the status filter: show it
                    self.apply(await run.io_bound(self.services.agents.get, event.agent_id, self.workspace.id))
        elif event.type == EventType.RESUME:  # we fell behind: re-read rather than guess
            await self.reload()


@router.page("/")
async def board_page(new: str | None = None) -> None:
    """`/?new=<definition slug>` opens the new-agent dialog with that definition (from the catalog)."""
    services = app_services()
    with frame(services, "Agents") as workspace:
        definitions, projects, counts, templates = await run.io_bound(
            lambda: (
                services.agents.definitions(),
                services.workspaces.list_projects(workspace.id),
                services.workspaces.counts(workspace.id),
                services.templates.list(workspace.id),
            )
        )
        board = Board(services, workspace, definitions, projects, counts["agents"], templates)
        # Subscribe before the first page is read: nothing that changes meanwhile is missed.
        live.subscribe(services.bus, EventFilter(workspace_id=workspace.id), board.on_event)
        await board.reload()
        if new in board.definitions:
            board.create_dialog.definition.value = new
            board.create_dialog.open()
