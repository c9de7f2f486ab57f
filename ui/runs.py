"""Team runs (SPEC §9, §11), route `/runs`: start a run and list the workspace's runs. One run's
live page is ui/run_page.py; the helpers both pages show runs with live here.

- A start card: member agents with their MetaGPT role kinds, idea, rounds, budget, the LLM that
  will answer (the workspace's default or one of its profiles) and what happens to generated code.
- The runs of the workspace, newest first, 20 at a time by the service's keyset cursor ("Load
  more"). Rows appear with `run_created` and follow `run_started` / `run_finished` in place; a
  queued run says its place in the queue (read once per page, and again when a run is created,
  starts or finishes).
- This module never imports MetaGPT: the LLM shown before a run is the chosen profile or the
  workspace's default one (or the demo model), read from the profile list; a run shows the label
  it recorded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from nicegui import APIRouter, run, ui
from pydantic import ValidationError

from core.errors import DomainError
from core.events import EventFilter, EventOut, EventType
from core.llm_profiles import LlmProfilePublic
from core.runs import FINISHED, RunCreate, RunPublic
from core.runtime_labels import DEMO_MODEL_LABEL
from core.schemas import AgentPublic, WorkspacePublic, field_bounds
from core.services import Services
from core.status import RunStatus
from core.templates import TemplatePublic
from core.workspaces import code_execution_enabled
from ui import live
from ui.components import validation_messages
from ui.format import DEMO_TAG, esc, full_time, markup, money, when
from ui.palette import MUTED
from ui.safe_props import with_props
from ui.state import ACTOR, app_services
from ui.teams import prefill, team_offer
from ui.theme import frame
from ui.widgets import demo_model_chip, run_status_badge

router = APIRouter()

RUNS_PAGE = 20
MAX_PICKER_AGENTS = 500

CODE_ON = (
    "Code execution is on: generated code runs in a bubblewrap sandbox (only the run's folder writable, "
    "no network, no server data or environment)."
)
CODE_OFF = "Code execution is off for this workspace: generated code will not be executed."
# On a run's page: the switch as the run recorded it when created, not the workspace's today.
RUN_CODE_ON = "Code execution is on for this run: generated code runs in a bubblewrap sandbox."
# How a started run's code actually ran (runs.sandbox).
RUN_SANDBOX = {
    "bubblewrap": RUN_CODE_ON,
    "unsandboxed": "Code execution for this run was UNSANDBOXED (allowed by the operator): generated code ran "
    "with the server's rights.",
    "unavailable": "Code execution was unavailable for this run (no sandbox on this server): generated code was "
    "not executed.",
}
RUN_CODE_OFF = "Code execution is off for this run: generated code is not executed."

# The events that carry a run's new state for the list of runs.
LIST_EVENTS = frozenset({EventType.RUN_CREATED, EventType.RUN_STARTED, EventType.RUN_FINISHED, EventType.RUN_RESUMED})


CARD = "w-full p-5 gap-4 rounded-xl shadow-sm"
SECTION_TITLE = "text-lg font-semibold"


# -- small helpers ---------------------------------------------------------------------------
def count(value: int, noun: str) -> str:
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def duration(run: RunPublic) -> str:
    if run.started_at is None:
        return ""
    end = run.finished_at or datetime.now(run.started_at.tzinfo)
    seconds = max(0, int((end - run.started_at).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def is_demo(label: str | None) -> bool:
    return not label or label == DEMO_MODEL_LABEL


def llm_chip(label: str | None) -> ui.element:
    """The demo-model chip, or the profile's label."""
    if is_demo(label):
        return demo_model_chip().mark("demo-model-chip")
    return ui.chip(label, icon="memory").props("dense square outline").mark("llm-label")


def default_profile(profiles: list[LlmProfilePublic]) -> LlmProfilePublic | None:
    return next((p for p in profiles if p.is_default), None)


def profile_label(profile: LlmProfilePublic) -> str:
    # The same text core's ResolvedLlm.label gives (and the run records when it starts).
    return f"{profile.api_type} · {profile.model} (profile: {profile.name})"


# The start form's LLM select: this key is "no profile named", i.e. the workspace's default.
WORKSPACE_DEFAULT = ""


def profile_options(profiles: list[LlmProfilePublic]) -> dict[str, str]:
    """Select options: the workspace's default first (saying what it is), then every profile."""
    default = default_profile(profiles)
    what = profile_label(default) if default else DEMO_MODEL_LABEL
    options = {WORKSPACE_DEFAULT: f"Workspace default ({what})"}
    options.update({p.name: profile_label(p) for p in profiles})
    return options


def code_execution_notice(enabled: bool, *, of_run: bool = False, sandbox: str = "") -> ui.row:
    colors = (
        "bg-sky-50 text-sky-900 border-sky-200 dark:bg-sky-500/10 dark:text-sky-100 dark:border-sky-800"
        if enabled
        else "bg-amber-50 text-amber-900 border-amber-200 dark:bg-amber-500/10 dark:text-amber-100 "
        "dark:border-amber-800"
    )
    with ui.row().classes(f"w-full items-center gap-2 no-wrap rounded-lg border px-3 py-2 text-sm {colors}") as row:
        ui.icon("terminal" if enabled else "block", size="xs")
        texts = (RUN_CODE_ON, RUN_CODE_OFF) if of_run else (CODE_ON, CODE_OFF)
        text = texts[0] if enabled else texts[1]
        if of_run and enabled and sandbox in RUN_SANDBOX:
            text = RUN_SANDBOX[sandbox]
        ui.label(text).mark("code-execution-notice")
    return row


# ============================================================================================
# /runs
# ============================================================================================
class StartRunCard:
    """Members, idea, rounds and budget; core validates (one agent per MetaGPT role kind, no busy
    agent) and its refusal is shown as it says it."""

    def __init__(
        self,
        services: Services,
        workspace: WorkspacePublic,
        agents: list[AgentPublic],
        profiles: list[LlmProfilePublic],
        templates: list[TemplatePublic] | None = None,
    ) -> None:
        self.services = services
        self.workspace = workspace
        self.agents = {str(a.id): a for a in agents}
        self.profiles = {p.name: p for p in profiles}
        profile = default_profile(profiles)
        with ui.card().classes(CARD).mark("start-run"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.icon("rocket_launch", color="primary").classes("text-xl")
                ui.label("Start a team run").classes(SECTION_TITLE)
                ui.space()
                with ui.row().classes("items-center gap-2").mark("start-llm"):
                    ui.label("LLM").classes(f"text-sm {MUTED}")
                    self.llm_slot = ui.row().classes("items-center")
                    with self.llm_slot:
                        llm_chip(profile_label(profile) if profile else None)
            if not agents:
                with ui.row().classes("items-center gap-2").mark("no-agents"):
                    ui.icon("info", size="xs").classes("text-slate-400")
                    ui.label("This workspace has no agents yet.").classes(f"text-sm {MUTED}")
                    ui.link("Create some on the Agents board", "/").classes("text-sm")
                team_offer(services, workspace, templates or [])  # issue 17: a team in one click
            options = {key: self._option(a) for key, a in self.agents.items()}
            self.members = (
                ui.select(options, multiple=True, label="Team members", value=[])
                .props("outlined dense use-chips options-dense")
                .classes("w-full")
                .mark("run-agents")
            )
            ui.label(
                "MetaGPT runs one agent per SOP role kind (product manager, architect, …); assistants can be added freely."
            ).classes(f"text-xs {MUTED} -mt-3")
            # Human in the loop, per member: a person plays it, or approves what it publishes.
            self.played: set[str] = set()
            self.approved: set[str] = set()
            self.people = ui.column().classes("w-full gap-1").mark("run-people")
            self.members.on_value_change(lambda _: self._show_people())
            self.idea = (
                ui.textarea("Idea", placeholder="e.g. a command-line todo app with due dates")
                .props("outlined autogrow")
                .classes("w-full")
                .mark("run-idea")
            )
            with ui.row().classes("w-full gap-3 items-start"):
                rounds_min, rounds_max = field_bounds(RunCreate, "n_rounds")
                self.rounds = (
                    ui.number(
                        "Rounds",
                        value=RunCreate.model_fields["n_rounds"].default,
                        min=rounds_min,
                        max=rounds_max,
                        step=1,
                        precision=0,
                    )
                    .props("outlined dense")
                    .classes("w-32")
                    .tooltip(f"At most this many rounds of the team ({rounds_min:g}–{rounds_max:g})")
                    .mark("run-rounds")
                )
                budget_above, budget_max = field_bounds(RunCreate, "investment")
                self.investment = (
                    ui.number(
                        "Budget",
                        value=RunCreate.model_fields["investment"].default,
                        min=(budget_above or 0) + 0.01,  # a cent above the exclusive bound
                        max=budget_max,
                        step=0.5,
                        precision=2,
                        format="%.2f",
                    )
                    .props("outlined dense prefix=$")
                    .classes("w-36")
                    .tooltip("The run stops when its LLM cost reaches this amount (MetaGPT's investment)")
                    .mark("run-investment")
                )
                timeout_min, timeout_max = field_bounds(RunCreate, "input_timeout")
                self.input_timeout = (
                    ui.number(
                        "Answer within (s)",
                        value=None,
                        min=timeout_min,
                        max=timeout_max,
                        step=60,
                        precision=0,
                    )
                    .props("outlined dense clearable")
                    .classes("w-44")
                    .tooltip(
                        "How long a request to a person may wait before the run fails with 'no answer' (empty: no limit)"
                    )
                    .mark("run-input-timeout")
                )
                self.llm_profile = (
                    ui.select(profile_options(profiles), value=WORKSPACE_DEFAULT, label="LLM profile")
                    .props("outlined dense options-dense")
                    .classes("min-w-64")
                    .tooltip("The workspace's LLM profile this run talks to")
                    .mark("run-llm-profile")
                )
                self.llm_profile.on_value_change(lambda _: self._show_llm())
            if profile is None:
                ui.label(
                    "No default LLM profile in this workspace: the offline demo model answers (canned, "
                    "no network, no cost). Add a profile in Settings to use a real model."
                ).classes(f"text-xs {MUTED} -mt-2")
            code_execution_notice(code_execution_enabled(workspace.settings))
            self.error = ui.label().classes("text-sm text-negative whitespace-pre-wrap").mark("run-start-error")
            self.error.set_visibility(False)
            with ui.row().classes("w-full justify-end"):
                self.button = (
                    ui.button("Start run", icon="play_arrow", on_click=self.start)
                    .props("unelevated no-caps")
                    .mark("run-start")
                )
                if not agents:
                    self.button.disable()

    def _chosen_profile(self) -> LlmProfilePublic | None:
        name = self.llm_profile.value or WORKSPACE_DEFAULT
        if name == WORKSPACE_DEFAULT:
            return default_profile(list(self.profiles.values()))
        return self.profiles.get(name)

    def _show_llm(self) -> None:
        self.llm_profile.error = None
        profile = self._chosen_profile()
        self.llm_slot.clear()
        with self.llm_slot:
            llm_chip(profile_label(profile) if profile else None)

    def _show_people(self) -> None:
        chosen = [key for key in (self.members.value or []) if key in self.agents]
        self.played &= set(chosen)
        self.approved &= set(chosen)
        self.people.clear()
        with self.people:
            for key in chosen:
                with ui.row().classes("w-full items-center gap-4").mark("run-person"):
                    ui.label(self.agents[key].name).classes("text-sm min-w-32")
                    ui.switch(
                        "played by you", value=key in self.played, on_change=lambda e, k=key: _toggle(self.played, k, e)
                    ).props("dense").mark("run-played-by-you")
                    ui.switch(
                        "approve its work",
                        value=key in self.approved,
                        on_change=lambda e, k=key: _toggle(self.approved, k, e),
                    ).props("dense").mark("run-approve")

    @staticmethod
    def _option(agent: AgentPublic) -> str:
        busy = " (busy)" if agent.status == "busy" else ""
        return f"{agent.name} · {agent.role_kind}{busy}"

    def _fail(self, text: str) -> None:
        self.error.set_text(text)
        self.error.set_visibility(True)

    async def start(self) -> None:
        self.error.set_visibility(False)
        for field in (self.members, self.idea, self.rounds, self.investment, self.llm_profile):
            field.error = None
        try:
            data = RunCreate(
                workspace_id=self.workspace.id,
                agent_ids=[uuid.UUID(v) for v in (self.members.value or [])],
                idea=self.idea.value or "",
                n_rounds=int(self.rounds.value) if self.rounds.value is not None else 0,
                investment=float(self.investment.value) if self.investment.value is not None else 0,
                human_agent_ids=[uuid.UUID(k) for k in sorted(self.played)],
                approve_agent_ids=[uuid.UUID(k) for k in sorted(self.approved)],
                input_timeout=int(self.input_timeout.value) if self.input_timeout.value else None,
                llm_profile=self.llm_profile.value or None,
            )
        except ValidationError as exc:
            messages = validation_messages(exc)
            if "agent_ids" in messages:
                self.members.error = "Choose at least one agent" if not self.members.value else messages["agent_ids"]
            if "idea" in messages:
                blank = not (self.idea.value or "").strip()
                self.idea.error = "Describe what the team should build" if blank else messages["idea"]
            if "n_rounds" in messages:
                self.rounds.error = "1 to 100"
            if "investment" in messages:
                self.investment.error = "more than $0, at most $10,000"
            if "input_timeout" in messages:
                self.input_timeout.error = "at least 1 second"
            if "llm_profile" in messages:
                self.llm_profile.error = messages["llm_profile"]
            return
        self.button.props("loading")
        try:
            started = await run.io_bound(self.services.runtime.start_run, data, actor=ACTOR, scope=self.workspace.id)
        except DomainError as exc:
            if exc.details.get("field") == "llm_profile":
                self.llm_profile.error = "This profile no longer exists: choose another one"
            self._fail(str(exc))
            return
        finally:
            self.button.props(remove="loading")
        if started is None:  # NiceGUI cancelled the call (client gone or server stopping)
            return
        ui.navigate.to(f"/runs/{started.id}")


def _toggle(chosen: set[str], key: str, event: Any) -> None:
    if event.value:
        chosen.add(key)
    else:
        chosen.discard(key)


class RunRow:
    """One run in the list: a link to its page, re-rendered in place when the run changes."""

    def __init__(self, run: RunPublic) -> None:
        self.run = run
        self.card = with_props(
            ui.link(target=f"/runs/{run.id}").classes(
                "w-full no-underline text-inherit rounded-xl border border-slate-200 dark:border-slate-700 "
                "bg-[#fff] dark:bg-slate-800 p-4 flex flex-col gap-2 shadow-sm hover:shadow-md transition-shadow"
            ),
            {"data-run-id": str(run.id)},
        ).mark(f"run-row run-{run.id}")
        self.render()

    def update(self, run: RunPublic, reopened: bool = False) -> None:
        if self.run.status in FINISHED and run.status not in FINISHED and not reopened:
            return  # an older view of a finished run (unless a person resumed it)
        self.run = run
        self.render()

    def render(self) -> None:
        run = self.run
        self.card.clear()
        with self.card:
            with ui.row().classes("w-full items-start no-wrap gap-3"):
                run_status_badge(run.status).classes("shrink-0 mt-0.5").mark(f"run-status run-status-{run.id}")
                ui.label(run.idea).classes("grow min-w-0 font-medium line-clamp-2 break-words").mark("run-row-idea")
                with ui.column().classes("items-end gap-0 shrink-0"):
                    ui.label(money(run.cost)).classes("text-sm font-medium").mark("run-row-cost")
                    ui.label(count(run.tokens, "token")).classes(f"text-xs {MUTED}").mark("run-row-tokens")
            details = []
            if run.members:
                details.append(
                    '<span class="flex flex-wrap gap-1">'
                    + "".join(
                        '<span class="text-xs rounded-full px-2 py-0.5 bg-slate-100 dark:bg-slate-700" '
                        f'title="{esc(m.role_kind)}">{esc(m.agent_name)}</span>'
                        for m in run.members
                    )
                    + "</span>"
                )
            times = [f'<span title="{esc(full_time(run.created_at))}">created {esc(when(run.created_at))}</span>']
            if run.started_at:
                times.append(
                    f'<span title="{esc(full_time(run.started_at))}">started {esc(when(run.started_at))}</span>'
                )
            if run.finished_at:
                times.append(
                    f'<span title="{esc(full_time(run.finished_at))}">finished {esc(when(run.finished_at))}'
                    f" ({esc(duration(run))})</span>"
                )
            details.append(f'<span class="text-xs text-slate-500 flex flex-wrap gap-x-3">{"".join(times)}</span>')
            if run.llm_label:
                details.append(
                    DEMO_TAG if is_demo(run.llm_label) else f'<span class="text-xs">{esc(run.llm_label)}</span>'
                )
            elif run.llm_profile:
                details.append(f'<span class="text-xs">profile: {esc(run.llm_profile)}</span>')
            markup(f'<div class="flex flex-wrap items-center gap-x-4 gap-y-1">{"".join(details)}</div>').classes(
                "w-full"
            )
            if run.status == RunStatus.QUEUED and run.queue_position is not None:
                ui.label(queue_text(run.queue_position)).classes(f"text-xs {MUTED}").mark(
                    f"run-queue-position run-queue-position-{run.id}"
                )
            if run.error or (run.stop_reason and run.status in FINISHED):
                text = run.error or run.stop_reason
                color = "text-negative" if run.error else MUTED
                ui.label(text).classes(f"text-xs {color} line-clamp-1 break-all")


def queue_text(ahead: int) -> str:
    if ahead == 0:
        return "Queued: next to start"
    return f"Queued: {ahead} run{'s' if ahead != 1 else ''} ahead in the queue"


class RunList:
    """The workspace's runs, newest first, a page at a time, kept current by run events."""

    def __init__(self, services: Services, workspace: WorkspacePublic) -> None:
        self.services = services
        self.workspace = workspace
        self.rows: dict[uuid.UUID, RunRow] = {}
        self.next_cursor: str | None = None
        self.loading = True
        self.pending: list[EventOut] = []
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("history").classes("text-xl text-slate-400")
            ui.label("Runs").classes(SECTION_TITLE)
            ui.space()
            self.count = ui.label().classes(f"text-sm {MUTED}")
        self.container = ui.column().classes("w-full gap-3").mark("runs-list")
        with ui.card().classes("w-full items-center p-10 gap-2 rounded-xl shadow-none border border-dashed") as empty:
            ui.icon("rocket_launch").classes("text-5xl text-slate-300")
            ui.label("No runs yet").classes("text-lg font-medium").mark("runs-empty")
            ui.label("Start one above: pick a team, describe an idea, press Start.").classes(f"text-sm {MUTED}")
        self.empty = empty
        self.empty.set_visibility(False)
        with ui.row().classes("w-full justify-center"):
            self.more = (
                ui.button("Load more", icon="expand_more", on_click=self.load_more)
                .props("outline no-caps")
                .mark("runs-load-more")
            )
        self.more.set_visibility(False)

    def _footer(self) -> None:
        self.empty.set_visibility(not self.rows and not self.loading)
        self.more.set_visibility(self.next_cursor is not None)
        shown = len(self.rows)
        self.count.set_text(f"{shown:,}{'+' if self.next_cursor else ''} shown" if shown else "")

    async def reload(self) -> None:
        await self._load(None)

    async def load_more(self) -> None:
        if self.next_cursor:
            self.more.props("loading")
            try:
                await self._load(self.next_cursor)
            finally:
                self.more.props(remove="loading")

    async def _load(self, cursor: str | None) -> None:
        self.loading = True
        try:
            page = await run.io_bound(
                self.services.runtime.list_runs, self.workspace.id, limit=RUNS_PAGE, cursor=cursor
            )
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
            page = None
        if page is not None:
            if cursor is None:
                self.container.clear()
                self.rows.clear()
            with self.container:
                for item in page.items:
                    if item.id in self.rows:
                        self.rows[item.id].update(item)
                    else:
                        self.rows[item.id] = RunRow(item)
            self.next_cursor = page.next_cursor
        while self.pending:
            self._handle(self.pending.pop(0))
        self.loading = False
        self._footer()

    async def on_event(self, event: EventOut) -> None:
        if event.type == EventType.RESUME:
            await self.reload()
        elif self.loading:
            self.pending.append(event)
        else:
            self._handle(event)
            await self._refresh_queue()

    async def _refresh_queue(self) -> None:
        """A run created, started or finished moves the queue: re-read the shown queued runs'
        places (one read of the queue for all of them)."""
        queued = [row.run.model_copy() for row in self.rows.values() if row.run.status == RunStatus.QUEUED]
        if not queued:
            return
        placed = await run.io_bound(self.services.runtime.add_queue_positions, queued)
        if placed is None:  # NiceGUI is shutting down
            return
        for item in placed:
            row = self.rows.get(item.id)
            if row is not None and row.run.status == RunStatus.QUEUED and row.run.queue_position != item.queue_position:
                row.update(row.run.model_copy(update={"queue_position": item.queue_position}))

    def _handle(self, event: EventOut) -> None:
        if event.type not in LIST_EVENTS:
            return
        item = RunPublic.model_validate(event.data["run"])  # the embedded API model, whole
        row = self.rows.get(item.id)
        if row is not None:
            row.update(item, reopened=event.type == EventType.RUN_RESUMED)
        elif self._within_loaded(item):
            with self.container:
                self.rows[item.id] = row = RunRow(item)
            row.card.move(self.container, target_index=self._index_of(item))
        self._footer()

    def _within_loaded(self, item: RunPublic) -> bool:
        """Would the pages read so far include this run? (Else "Load more" brings it.)"""
        if self.next_cursor is None or not self.rows:
            return True
        oldest = min(self.rows.values(), key=lambda r: (r.run.created_at, str(r.run.id))).run
        return (item.created_at, str(item.id)) >= (oldest.created_at, str(oldest.id))

    def _index_of(self, item: RunPublic) -> int:
        key = (item.created_at, str(item.id))
        return sum(1 for r in self.rows.values() if r.run.id != item.id and (r.run.created_at, str(r.run.id)) > key)


@router.page("/runs")
async def runs_page(template: str | None = None, team: str | None = None) -> None:
    """`/runs?template=<slug>&team=<id>,<id>` opens with that team selected and the template's idea."""
    services = app_services()
    with frame(services, "Runs") as workspace:
        agents, profiles, templates = await run.io_bound(
            lambda: (
                services.agents.list(workspace.id, limit=MAX_PICKER_AGENTS).items,
                services.llm_profiles.list(workspace.id),
                services.templates.list(workspace.id),
            )
        )
        card = StartRunCard(services, workspace, agents, profiles, templates)
        prefill(card, next((t for t in templates if t.slug == template), None), team, agents)
        runs = RunList(services, workspace)
        # Subscribe before the first page is read: a run that starts or ends meanwhile is not missed.
        live.subscribe(
            services.bus,
            EventFilter(workspace_id=workspace.id, types=LIST_EVENTS),
            runs.on_event,
        )
        await runs.reload()
