"""The agent page, `/agents/{id}` (SPEC §11): header, conversation, context, status and config.

The page reads a few pages of data (never whole lists), builds, then follows the agent's events
live from the log position it read at: status badge and history, config, context versions and
the thread update themselves. An unknown id, or an agent of another workspace, is a friendly
"not found" page, exactly alike (no leak of what exists elsewhere).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import APIRouter, ElementFilter, run, ui

from core.errors import DomainError, InvalidInput, NotFound, StaleVersion
from core.event_schema import AgentStatusChanged, AgentUpdated
from core.events import EventFilter, EventOut, EventType
from core.pagination import encode_cursor
from core.schemas import AgentPublic, AgentUpdate, StatusChangePublic
from core.services import Services
from core.status import AgentStatus
from ui import live
from ui.agent_context import ContextPanel
from ui.format import esc, full_time, json_error_text, markup, pretty_json, when
from ui.inputs import InputPanel
from ui.llm_calls import AgentLlmCalls
from ui.state import app_services, current_workspace
from ui.theme import frame
from ui.thread import MessageThread
from ui.widgets import demo_model_chip, json_editor, status_badge, update_status_badge

router = APIRouter()

HISTORY_PAGE = 20
MAX_HISTORY_ROWS = 200

TABS = {
    "conversation": ("Conversation", "forum"),
    "context": ("Context", "data_object"),
    "status": ("Status", "timeline"),
    "config": ("Config", "tune"),
    "llm-calls": ("LLM calls", "receipt_long"),
}

TRANSITION_LABELS = {
    "active": ("Activate", "play_arrow"),
    "idle": ("Set idle", "pause"),
    "busy": ("Mark busy", "hourglass_top"),
    "initializing": ("Initialize", "settings_power"),
    "error": ("Mark error", "error_outline"),
    "offline": ("Take offline", "power_settings_new"),
}


@router.page("/agents/{agent_id}")
async def agent_page(agent_id: str, tab: str = "conversation") -> None:
    services = app_services()
    workspace = current_workspace(services)
    # Follow events from here on, so nothing that happens while the page reads is missed.
    since = services.bus.pumped_seq if services.bus.running else None
    agent = await _find_agent(services, agent_id, workspace.id)
    if agent is None:
        _not_found(services, agent_id)
        return
    with frame(services, agent.name):
        page = AgentView(services, agent, workspace.id)
        page.build(tab if tab in TABS else "conversation")
        await page.load()
    live.subscribe(services.bus, EventFilter(agent_id=agent.id), page.handle, since=since)


async def _find_agent(services: Services, agent_id: str, scope: uuid.UUID) -> AgentPublic | None:
    try:
        ident = uuid.UUID(agent_id)
    except ValueError:
        return None
    try:
        return await run.io_bound(services.agents.get, ident, scope)
    except NotFound:
        return None


def _not_found(services: Services, agent_id: str) -> None:
    with frame(services, "Agent not found"), ui.card().classes("w-full p-8 rounded-xl shadow-sm items-center gap-3"):
        ui.icon("search_off").classes("text-5xl text-slate-400")
        ui.label("There is no such agent in this workspace.").classes("text-lg font-medium").mark("agent-not-found")
        ui.label(
            f"No agent with id {agent_id[:80]} exists here. It may have been deleted, or belong to another "
            "workspace: switch workspace in the header to look there."
        ).classes("text-slate-500 text-center max-w-xl break-all")
        ui.button("Back to the agents", icon="arrow_back", on_click=lambda: ui.navigate.to("/")).props(
            "unelevated no-caps"
        )


@contextmanager
def _fact(caption: str) -> Iterator[None]:
    """A captioned value of the header row."""
    with ui.column().classes("gap-0"):
        ui.label(caption).classes("text-xs uppercase tracking-wider text-slate-500")
        yield


class AgentView:
    """Everything on one client's agent page, and the live dispatch to its parts."""

    def __init__(self, services: Services, agent: AgentPublic, scope: uuid.UUID) -> None:
        self.services = services
        self.agent = agent
        self.scope = scope
        self.thread = MessageThread(services, agent, scope)
        self.thread.on_activate = lambda: self.status.change("active")
        self.context = ContextPanel(services, agent.id, scope)
        self.status = StatusPanel(self)
        self.config = ConfigPanel(self)
        self.llm_calls = AgentLlmCalls(services, agent.id, scope)

    def build(self, tab: str) -> None:
        self._build_header()
        with ui.tabs().classes("w-full -mt-2").props("align=left no-caps inline-label dense") as tabs:
            for name, (label, icon) in TABS.items():
                ui.tab(name, label, icon=icon).mark(f"tab-{name}")
        with ui.tab_panels(tabs, value=tab).classes("w-full bg-transparent -mt-4").props("keep-alive"):
            with ui.tab_panel("conversation").classes("px-0"):
                # Replies held for approval (config `approve_replies`) wait above the thread.
                self.inputs = InputPanel(self.services, self.scope, agent_id=self.agent.id)
                self.thread.build()
            with ui.tab_panel("context").classes("px-0 gap-4"):
                self.context.build()
            with ui.tab_panel("status").classes("px-0"):
                self.status.build()
            with ui.tab_panel("config").classes("px-0"):
                self.config.build()
            with ui.tab_panel("llm-calls").classes("px-0 gap-2"):
                self.llm_calls.build()

    async def load(self) -> None:
        await self.inputs.start()
        await self.thread.load_latest()
        await self.context.load()
        await self.status.load_history()
        await self.config.load_schema()
        await self._show_model()
        await self.llm_calls.load()

    # -- header ----------------------------------------------------------------------------
    def _build_header(self) -> None:
        self.deleted_banner = ui.row().classes(
            "w-full items-center gap-2 rounded-lg px-4 py-2 bg-red-50 text-red-900 dark:bg-red-500/15 dark:text-red-100"
        )
        with self.deleted_banner.mark("agent-deleted"):
            ui.icon("delete_forever")
            ui.label("This agent was deleted. What you see is what it was.").classes("text-sm")
        self.deleted_banner.set_visibility(False)
        with (
            ui.card().classes("w-full rounded-xl shadow-sm px-5 py-3"),
            ui.row().classes("w-full items-start gap-x-8 gap-y-2"),
        ):
            with _fact("Definition"):
                kind = self.agent.role_kind
                text = self.agent.definition if kind == self.agent.definition else f"{self.agent.definition} ({kind})"
                ui.label(text).classes("font-medium").mark("agent-definition")
            with _fact("Status"), ui.row().classes("items-center gap-2 no-wrap"):
                self.badge = (
                    status_badge(self.agent.status)
                    .classes("text-sm px-2")
                    .props("data-testid=agent-status")
                    .mark("agent-status")
                )
                self.reason_label = (
                    ui.label().classes("text-sm text-slate-600 dark:text-slate-300").mark("status-reason")
                )
            ui.space()
            with _fact("Model"):
                self.model_slot = ui.row().classes("items-center gap-1").mark("agent-model")
        self._show_status(self.agent)

    def _show_status(self, agent: AgentPublic) -> None:
        update_status_badge(self.badge, agent.status)
        self.reason_label.text = f"— {agent.status_reason}" if agent.status_reason else ""

    async def _show_model(self) -> None:
        profiles = await run.io_bound(self.services.llm_profiles.list, self.scope)
        wanted = self.agent.config.get("llm_profile") or None
        chosen = next((p for p in profiles if (p.name == wanted if wanted else p.is_default)), None)
        self.model_slot.clear()
        with self.model_slot:
            if chosen is not None:
                ui.chip(f"{chosen.model}", icon="memory").props("dense square outline").tooltip(
                    f"{chosen.api_type} · {chosen.model} (profile: {chosen.name})"
                )
            elif wanted:
                ui.chip(f"profile {wanted!r} is missing", icon="error_outline", color="red-2").props("dense square")
            else:
                demo_model_chip().mark("demo-model-chip")

    # -- live ------------------------------------------------------------------------------
    def apply(self, agent: AgentPublic) -> None:
        """A fresher AgentPublic (from a write of ours or an agent_updated event)."""
        if agent.name != self.agent.name:
            for title in ElementFilter(kind=ui.label, marker="page-title", local_scope=False):
                title.text = agent.name
        self.agent = agent
        self._show_status(agent)
        self.status.show_transitions(agent.allowed_transitions)
        self.thread.set_status(agent.status, agent.allowed_transitions)

    async def handle(self, event: EventOut) -> None:
        if event.type == EventType.AGENT_STATUS_CHANGED:
            change = AgentStatusChanged.of(event)
            self.agent = self.agent.model_copy(update=change.agent_fields())
            self.apply(self.agent)
            self.config.lock_moved(self.agent.lock_version)
            await self.status.refresh_history()
        elif event.type == EventType.AGENT_UPDATED:
            update = AgentUpdated.of(event)
            agent = AgentPublic.model_validate(event.data["agent"])  # the embedded API model, whole
            self.apply(agent)
            self.config.on_agent_updated(agent, update.changed)
        elif event.type == EventType.AGENT_DELETED:
            self.deleted_banner.set_visibility(True)
        elif event.type == EventType.AGENT_CONTEXT_UPDATED:
            await self.context.refresh()
        elif event.type == EventType.LLM_CALL:
            await self.llm_calls.handle(event)
        elif event.type in {EventType.AGENT_MESSAGE, EventType.LLM_TOKEN, EventType.AGENT_ACTIVITY}:
            await self.thread.handle(event)
        elif event.type == EventType.RESUME:
            try:
                self.apply(await run.io_bound(self.services.agents.get, self.agent.id, self.scope))
            except NotFound:
                self.deleted_banner.set_visibility(True)
                return
            await self.thread.handle(event)
            await self.context.refresh()
            await self.status.refresh_history()


class StatusPanel:
    """Buttons for exactly the allowed transitions, an optional reason, and the audit trail."""

    def __init__(self, page: AgentView) -> None:
        self.page = page
        self.rows: dict[uuid.UUID, ui.element] = {}
        self.order: list[uuid.UUID] = []  # newest first
        self.cursors: dict[uuid.UUID, str] = {}
        self.cursor: str | None = None

    def build(self) -> None:
        with ui.card().classes("w-full rounded-xl shadow-sm p-4 gap-3"):
            ui.label("Change status").classes("text-lg font-medium")
            self.buttons = ui.row().classes("gap-2").mark("status-buttons")
            self.reason = (
                ui.input("Reason (optional)", placeholder="e.g. maintenance window")
                .props("outlined dense maxlength=2000")
                .classes("w-full max-w-xl")
                .mark("status-reason-input")
            )
            self.error = ui.label().classes("text-sm text-negative").mark("status-error")
            self.error.set_visibility(False)
        with ui.card().classes("w-full rounded-xl shadow-sm p-4 gap-2"):
            ui.label("History").classes("text-lg font-medium")
            self.history = ui.column().classes("w-full gap-0 divide-y divide-slate-100 dark:divide-slate-700")
            self.history.mark("status-history")
            self.more = (
                ui.button("Load older changes", on_click=self.load_more).props("flat dense no-caps").mark("status-more")
            )
            self.more.set_visibility(False)
        self.show_transitions(self.page.agent.allowed_transitions)

    def show_transitions(self, allowed: list[str]) -> None:
        self.buttons.clear()
        with self.buttons:
            for target in allowed:
                label, icon = TRANSITION_LABELS.get(target, (target, "arrow_forward"))
                ui.button(label, icon=icon, on_click=lambda t=target: self.change(t)).props(
                    "unelevated no-caps" if target == AgentStatus.ACTIVE else "outline no-caps"
                ).mark(f"status-to status-to-{target}")

    async def change(self, target: str) -> None:
        self.error.set_visibility(False)
        try:
            agent = await run.io_bound(
                lambda: self.page.services.agents.set_status(
                    self.page.agent.id, target, reason=self.reason.value or "", actor="user", scope=self.page.scope
                )
            )
        except DomainError as exc:
            self.error.text = f"Refused: {exc}"
            self.error.set_visibility(True)
            ui.notify(f"Status not changed: {exc}", type="warning")
            return
        self.reason.value = ""
        self.page.apply(agent)
        self.page.config.lock_moved(agent.lock_version)
        await self.refresh_history()

    async def load_history(self) -> None:
        page = await run.io_bound(
            self.page.services.agents.status_history, self.page.agent.id, self.page.scope, HISTORY_PAGE
        )
        for change in page.items:
            self._add(change)
        self.cursor = page.next_cursor
        self.more.set_visibility(page.next_cursor is not None)

    async def load_more(self) -> None:
        if self.cursor is None:
            return
        page = await run.io_bound(
            self.page.services.agents.status_history, self.page.agent.id, self.page.scope, HISTORY_PAGE, self.cursor
        )
        for change in page.items:
            self._add(change)
        self.cursor = page.next_cursor
        self.more.set_visibility(page.next_cursor is not None)

    async def refresh_history(self) -> None:
        """Prepend the changes newer than the newest shown (the list grows live)."""
        try:
            page = await run.io_bound(
                self.page.services.agents.status_history, self.page.agent.id, self.page.scope, HISTORY_PAGE
            )
        except NotFound:
            return
        if page is None:  # NiceGUI is shutting down
            return
        fresh = [c for c in page.items if c.id not in self.rows]
        for index, change in enumerate(fresh):
            self._add(change, index=index)
        while len(self.order) > MAX_HISTORY_ROWS:
            dropped = self.order.pop()
            self.history.remove(self.rows.pop(dropped))
            self.cursors.pop(dropped, None)
            # "Load older" continues from the oldest row still shown.
            self.cursor = self.cursors[self.order[-1]]
            self.more.set_visibility(True)

    def _add(self, change: StatusChangePublic, index: int = -1) -> None:
        if change.id in self.rows:
            return
        arrow = f"{esc(change.from_status)} → " if change.from_status else ""
        reason = (
            f' · <span class="text-slate-600 dark:text-slate-300">{esc(change.reason)}</span>' if change.reason else ""
        )
        with self.history:
            row = (
                markup(
                    f'<div class="flex flex-wrap items-baseline gap-x-2 py-2 text-sm w-full">'
                    f'<span class="font-medium">{arrow}{esc(change.to_status)}</span>{reason}'
                    f'<span class="text-slate-500">by {esc(change.actor)}</span>'
                    f'<span class="text-xs text-slate-400" title="{esc(full_time(change.at))}">{esc(when(change.at))}</span>'
                    "</div>"
                )
                .classes("w-full")
                .mark("status-change")
            )
        if index >= 0:
            row.move(self.history, target_index=index)
            self.order.insert(index, change.id)
        else:
            self.order.append(change.id)
        self.rows[change.id] = row
        # The same key status_history pages on, so a trimmed list can go on paging.
        self.cursors[change.id] = encode_cursor(change.at.isoformat(), change.id)


class ConfigPanel:
    """The agent's config as JSON; saved with expected_lock_version so a concurrent change of the
    config is a conflict, while status changes (which bump lock_version too) are not."""

    def __init__(self, page: AgentView) -> None:
        self.page = page
        self.base_config = page.agent.config
        self.base_text = pretty_json(page.agent.config)
        self.base_lock = page.agent.lock_version
        self.theirs: AgentPublic | None = None  # a config saved by someone else while we edit

    @property
    def dirty(self) -> bool:
        return (self.editor.value or "") != self.base_text

    def build(self) -> None:
        with ui.card().classes("w-full rounded-xl shadow-sm p-4 gap-3"):
            with ui.row().classes("w-full items-center"):
                ui.label("Configuration").classes("text-lg font-medium")
                ui.space()
                ui.label(f"checked against {self.page.agent.definition}'s schema").classes("text-xs text-slate-500")
            self.banner = ui.column().classes(
                "w-full gap-1 rounded-lg px-3 py-2 bg-amber-50 text-amber-900 border border-amber-300 "
                "dark:bg-amber-500/15 dark:text-amber-100"
            )
            with self.banner.mark("config-conflict"):
                self.banner_text = ui.label().classes("text-sm")
                with ui.row().classes("gap-2"):
                    ui.button("Reload theirs", icon="download", on_click=self.reload_theirs).props(
                        "outline dense no-caps"
                    ).mark("config-reload-theirs")
                    ui.button("Overwrite with mine", icon="save", on_click=self.overwrite).props(
                        "unelevated dense no-caps color=warning"
                    ).mark("config-overwrite")
            self.banner.set_visibility(False)
            self.editor = json_editor(self.base_text).classes("h-80").mark("config-editor")
            self.errors = ui.column().classes("w-full gap-0").mark("config-errors")
            with ui.expansion("Schema and defaults", icon="schema").classes("w-full").props("dense"):
                self.schema_view = markup("", tag="pre").classes(
                    "w-full text-xs font-mono whitespace-pre overflow-auto max-h-96 rounded-lg p-3 "
                    "bg-slate-50 dark:bg-slate-900"
                )
            with ui.row().classes("w-full gap-2 justify-end"):
                ui.button("Format", icon="format_align_left", on_click=self.format).props("flat no-caps")
                ui.button("Discard edits", on_click=self.reload_theirs).props("flat no-caps").mark("config-reset")
                ui.button("Save config", icon="save", on_click=self.save).props("unelevated no-caps").mark(
                    "config-save"
                )

    async def load_schema(self) -> None:
        try:
            definition = await run.io_bound(self.page.services.agents.definition, self.page.agent.definition)
        except NotFound:
            return
        text = pretty_json({"schema": definition.config_schema, "defaults": definition.default_config})
        self.schema_view.content = esc(text)

    def _show_errors(self, lines: list[str]) -> None:
        self.errors.clear()
        with self.errors:
            for line in lines:
                ui.label(line).classes("text-sm text-negative font-mono whitespace-pre-wrap").mark("config-error")

    def _load(self, agent: AgentPublic) -> None:
        self.base_config, self.base_lock = agent.config, agent.lock_version
        self.base_text = pretty_json(agent.config)
        self.editor.value = self.base_text
        self.theirs = None
        self.banner.set_visibility(False)
        self._show_errors([])

    def format(self) -> None:
        try:
            self.editor.value = pretty_json(json.loads(self.editor.value or ""))
        except json.JSONDecodeError as exc:
            self._show_errors([json_error_text(exc)])

    def lock_moved(self, lock_version: int) -> None:
        """The agent changed without touching its config (a status change): nothing to merge."""
        if self.theirs is None:
            self.base_lock = max(self.base_lock, lock_version)

    def on_agent_updated(self, agent: AgentPublic, changed: list[str]) -> None:
        if "config" not in changed or agent.config == self.base_config:
            self.lock_moved(agent.lock_version)
        elif not self.dirty:
            self._load(agent)
        else:
            self.theirs = agent
            self.banner_text.text = (
                "Someone else saved this agent's config while you were editing. Your text is kept; "
                "reload theirs or overwrite it with yours."
            )
            self.banner.set_visibility(True)

    async def reload_theirs(self) -> None:
        try:
            agent = await run.io_bound(self.page.services.agents.get, self.page.agent.id, self.page.scope)
        except NotFound:
            self._show_errors(["This agent no longer exists."])
            return
        self._load(agent)

    async def overwrite(self) -> None:
        try:
            agent = await run.io_bound(self.page.services.agents.get, self.page.agent.id, self.page.scope)
        except NotFound:
            self._show_errors(["This agent no longer exists."])
            return
        await self.save(expected=agent.lock_version)

    async def save(self, expected: int | None = None) -> None:
        self._show_errors([])
        try:
            config = json.loads(self.editor.value or "")
        except json.JSONDecodeError as exc:
            return self._show_errors([json_error_text(exc)])
        if not isinstance(config, dict):
            return self._show_errors([f"The config must be a JSON object ({{...}}), not {type(config).__name__}."])
        agents = self.page.services.agents
        lock = expected if expected is not None else self.base_lock
        try:
            try:
                saved = await run.io_bound(self._update, config, lock)
            except StaleVersion:
                # The agent moved on. If its config is still the one we started from, only its
                # status changed: save on top of it. Otherwise it is a real conflict.
                current = await run.io_bound(agents.get, self.page.agent.id, self.page.scope)
                if expected is None and current.config != self.base_config:
                    self.theirs = current
                    self.banner_text.text = (
                        "Not saved: someone else changed this agent's config after you started editing. "
                        "Your text is still in the editor."
                    )
                    self.banner.set_visibility(True)
                    return None
                saved = await run.io_bound(self._update, config, current.lock_version)
        except InvalidInput as exc:
            problems = exc.details.get("errors") or []
            lines = [f"{p['path']}: {p['message']}" for p in problems] or [str(exc)]
            if problems:
                lines.insert(0, "Not saved — the config does not match the schema:")
            return self._show_errors(lines)
        except DomainError as exc:
            return self._show_errors([f"Not saved: {exc}"])
        self._load(saved)
        self.page.apply(saved)
        ui.notify("Config saved", type="positive")
        return None

    def _update(self, config: dict[str, object], lock: int) -> AgentPublic:
        return self.page.services.agents.update(
            self.page.agent.id, AgentUpdate(config=config, expected_lock_version=lock), "user", self.page.scope
        )
