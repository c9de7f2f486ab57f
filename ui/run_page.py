"""One team run, live (SPEC §9, §11, route `/runs/{id}`).

The header (idea, live status, stop reason or error, LLM, rounds, totals, Cancel, and Resume for
an `interrupted` run), one card per
member (live agent status, what it is doing now, its tokens and cost, the answer it is
streaming), the transcript (oldest first, paged, new messages appended live) and MetaGPT's
project files of the run with a viewer. Runs belong to the server: the page reads what exists,
then follows the run's events from the log position it read at, so reopening it (or a second
tab) shows everything so far, then live.

Agent and LLM output is untrusted: message content goes through `widgets.safe_markdown`, our own
headers through `ui.format.markup` with every value escaped, file contents through `ui.code`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from nicegui import APIRouter, app, background_tasks, context, run, ui
from nicegui.client import Client

from core.errors import Conflict, DomainError, NotFound
from core.event_schema import AgentActivity, AgentStatusChanged, LlmToken, RunRound
from core.events import EventFilter, EventOut, EventType
from core.llm_profiles import LlmProfilePublic
from core.messages import MessagePublic
from core.runs import FINISHED, RunMemberPublic, RunPublic
from core.runtime.files import MAX_FILE_BYTES  # what Runtime.read_run_file returns at most
from core.schemas import AgentPublic, WorkspacePublic
from core.services import Services
from core.status import RunStatus
from ui import live
from ui.format import markup, message_header, money, when
from ui.inputs import InputPanel
from ui.llm_calls import RunTimeline
from ui.palette import MUTED
from ui.runs import (
    CARD,
    SECTION_TITLE,
    code_execution_notice,
    count,
    duration,
    llm_chip,
    profile_label,
)
from ui.safe_props import with_props
from ui.state import ACTOR, app_services, current_workspace
from ui.theme import frame
from ui.widgets import ROLE_ICONS, RUN_STATUS_COLORS, run_status_badge, safe_markdown, status_badge
from ui.widgets import update_status_badge as update_agent_badge

router = APIRouter()

TRANSCRIPT_PAGE = 50
ACTIVE = frozenset({"queued", "running", "waiting"})
# Figures re-read from the run after messages: at most once per REFRESH_SECONDS.
REFRESH_SECONDS = 1.0
TOKEN_FLUSH_SECONDS = 0.2
MAX_STREAM_CHARS = 4000
# Longer message bodies fold into an expansion, built when first opened.
LONG_CHARS = 700
LONG_LINES = 14
LANGUAGES = {
    ".py": "python",
    ".json": "json",
    ".md": "markdown",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".sh": "bash",
    ".js": "javascript",
    ".ts": "typescript",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
}
# Agent output can hold very long lines (JSON documents, code): wrap them inside the card.
MESSAGE_BODY = "agentdeck-run-message w-full min-w-0 break-words overflow-x-auto"
MESSAGE_CSS = ".agentdeck-run-message pre { white-space: pre-wrap; overflow-wrap: anywhere; }"


def set_run_badge(badge: ui.badge, status: str) -> None:
    badge.set_text(status)
    with_props(badge, {"color": RUN_STATUS_COLORS.get(status, "grey"), "data-status": status})


# ============================================================================================
# /runs/{id}
# ============================================================================================
def _expand_json(value: Any) -> Any:
    """Decode JSON documents nested as strings (MetaGPT's docs carry their content that way)."""
    if isinstance(value, dict):
        return {k: _expand_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_json(v) for v in value]
    if isinstance(value, str) and value[:1] in "{[" and value.rstrip()[-1:] in "}]":
        try:
            return _expand_json(json.loads(value))
        except ValueError:
            return value
    return value


def prepare_content(text: str) -> tuple[str, str]:
    """(markdown to render, a one-line summary). JSON becomes a pretty ```json block."""
    stripped = text.strip()
    if stripped[:1] in "{[" and stripped[-1:] in "}]":
        try:
            value = _expand_json(json.loads(stripped))
        except ValueError:
            pass
        else:
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
            return f"```json\n{pretty}\n```", _json_summary(value, len(text))
    first = next((line.strip() for line in stripped.splitlines() if line.strip()), "")
    first = first.lstrip("#").strip()
    if len(first) > 100:
        first = first[:99] + "…"
    return text, f"{first} · {len(text):,} characters"


def _json_summary(value: Any, size: int) -> str:
    docs = value.get("docs") if isinstance(value, dict) else None
    if isinstance(docs, dict) and docs:
        names = []
        for key, doc in list(docs.items())[:3]:
            if isinstance(doc, dict) and doc.get("filename"):
                names.append(str(PurePosixPath(str(doc.get("root_path") or "")) / str(doc["filename"])))
            else:
                names.append(str(key))
        more = f" and {len(docs) - 3} more" if len(docs) > 3 else ""
        return f"{'document' if len(docs) == 1 else 'documents'}: {', '.join(names)}{more}"
    return f"JSON · {size:,} characters"


def render_message(m: MessagePublic, on_rerun: Callable[[int], Any] | None = None) -> ui.element:
    style = (
        "bg-indigo-50/60 dark:bg-indigo-500/10 border-indigo-100 dark:border-indigo-900"
        if m.role == "user"
        else "bg-[#fff] dark:bg-slate-800 border-slate-200 dark:border-slate-700"
    )
    marker = f"run-message message-{m.cause_by}" if m.cause_by else "run-message"
    with with_props(
        ui.element("div").classes(f"w-full min-w-0 rounded-xl border px-4 py-3 flex flex-col gap-1 shadow-sm {style}"),
        {"data-message-id": str(m.id)},
    ).mark(marker) as element:
        markup(message_header(m))
        round_no = m.metadata.get("round")
        if on_rerun is not None and m.role != "user" and isinstance(round_no, int) and round_no >= 1:
            # A fork of the run from this round's end (POST /api/runs/{id}/fork): rounds 1..k copied.
            ui.button(
                f"Re-run from here (after round {round_no})",
                icon="call_split",
                on_click=lambda _=None, k=round_no: on_rerun(k),
            ).props("flat dense no-caps size=sm").classes("self-start").mark(f"run-rerun run-rerun-{round_no}")
        body, summary = prepare_content(m.content)
        if len(body) > LONG_CHARS or body.count("\n") > LONG_LINES:
            expansion = (
                ui.expansion(summary, icon="description" if body.startswith("```json") else "notes")
                .props("dense header-class=px-0")
                .classes("w-full text-sm")
                .mark("message-expansion")
            )
            built = False

            def build(_: Any = None) -> None:  # only when first opened: long bodies cost nothing until read
                nonlocal built
                if not built and expansion.value:
                    built = True
                    with expansion:
                        safe_markdown(body).classes(f"{MESSAGE_BODY} text-sm max-h-[36rem] overflow-y-auto").mark(
                            "message-content"
                        )

            expansion.on_value_change(build)
        else:
            safe_markdown(body).classes(f"{MESSAGE_BODY} text-[15px]").mark("message-content")
    return element


class MemberCard:
    """A member of the run: live agent status, current activity, figures, the streamed answer."""

    def __init__(self, member: RunMemberPublic, agent: AgentPublic | None) -> None:
        self.member = member
        self.stream_text = ""
        key = member.agent_id or member.agent_name
        card = ui.card().classes("w-full p-4 gap-2 rounded-xl shadow-sm").mark("member")
        # The agent's name is data: never part of a props string (NiceGUI evaluates `:key=` ones).
        with with_props(card, {"data-member": str(key)}):
            with ui.row().classes("w-full items-center no-wrap gap-3"):
                ui.icon(ROLE_ICONS.get(member.role_kind, "smart_toy")).classes(
                    "text-xl p-2 rounded-lg bg-indigo-50 text-indigo-600 dark:bg-indigo-500/15 dark:text-indigo-300"
                )
                with ui.column().classes("gap-0 min-w-0 grow"):
                    if member.agent_id is not None and agent is not None:
                        ui.link(member.agent_name, f"/agents/{member.agent_id}").classes(
                            "font-semibold truncate no-underline text-inherit hover:underline"
                        )
                    else:
                        ui.label(member.agent_name).classes("font-semibold truncate")
                    ui.label(member.role_kind).classes(f"text-xs {MUTED}")
                status = agent.status if agent is not None else "deleted"
                self.badge = status_badge(status).classes("shrink-0").mark(f"member-status member-status-{key}")
            self.activity = ui.label().classes(f"text-sm italic {MUTED} min-h-5").mark(f"member-activity-{key}")
            self.figures = ui.label().classes("text-xs text-slate-500").mark(f"member-figures-{key}")
            with (
                ui.element("div")
                .classes(
                    "w-full max-h-40 overflow-y-auto flex flex-col-reverse rounded-lg bg-slate-50 dark:bg-slate-900/60 "
                    "border border-slate-200 dark:border-slate-700 px-2 py-1"
                )
                .mark(f"member-stream-box-{key}") as self.stream_box
            ):
                self.stream = (
                    ui.label()
                    .classes("font-mono text-xs whitespace-pre-wrap break-words text-slate-600 dark:text-slate-300")
                    .mark(f"member-stream-{key}")
                )
            self.stream_box.set_visibility(False)
        self.show_figures(member)

    def show_figures(self, member: RunMemberPublic) -> None:
        self.member = member
        tokens = member.prompt_tokens + member.completion_tokens
        self.figures.set_text(
            f"{count(tokens, 'token')} ({member.prompt_tokens:,} prompt + {member.completion_tokens:,} completion)"
            f" · {money(member.cost)}"
        )

    def set_status(self, status: str, reason: str = "") -> None:
        update_agent_badge(self.badge, status)
        if status == "error":
            self.activity.set_text(f"error: {reason}" if reason else "error")
        elif status != "busy":
            self.activity.set_text("")

    def set_activity(self, update: AgentActivity) -> None:
        self.activity.set_text(update.describe())
        if update.activity == "calling_llm":
            self.stream_text = ""  # a new answer starts

    def add_tokens(self, text: str) -> None:
        self.stream_text = (self.stream_text + text)[-MAX_STREAM_CHARS:]

    def flush_stream(self) -> None:
        if not self.stream.is_deleted:
            self.stream.set_text(self.stream_text)
            self.stream_box.set_visibility(bool(self.stream_text.strip()))

    def end_stream(self, activity: str = "") -> None:
        self.stream_text = ""
        self.stream.set_text("")
        self.stream_box.set_visibility(False)
        self.activity.set_text(activity)


class RunView:
    """Everything on one client's run page, and the live dispatch to its parts."""

    def __init__(self, services: Services, run: RunPublic, workspace: WorkspacePublic) -> None:
        self.services = services
        self.run = run
        self.workspace = workspace
        self.scope = workspace.id
        self.client: Client = context.client
        self.members: dict[uuid.UUID, MemberCard] = {}
        self.shown_messages: set[uuid.UUID] = set()
        self.transcript_cursor: str | None = None
        self.transcript_loaded = False  # the first page is in
        self.unseen = 0
        self.files: list[str] = []
        self.selected_file: str | None = None
        self._last_refresh = 0.0
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._dirty: set[uuid.UUID] = set()
        self._shown_llm: tuple[str, bool, str | None] | None = None
        self.rerun_profile: ui.select | None = None
        self.client.on_delete(self._stop_timers)

    # -- layout ----------------------------------------------------------------------------
    def build(self, agents: dict[uuid.UUID, AgentPublic], profiles: list[LlmProfilePublic] | None = None) -> None:
        self.profiles = profiles or []
        self._build_header()
        code_execution_notice(self.run.code_execution, of_run=True, sandbox=self.run.sandbox)
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("groups").classes("text-xl text-slate-400")
            ui.label("Team").classes(SECTION_TITLE)
        with ui.element("div").classes("w-full grid gap-4 grid-cols-1 md:grid-cols-2 xl:grid-cols-3").mark("members"):
            for member in self.run.members:
                card = MemberCard(member, agents.get(member.agent_id) if member.agent_id else None)
                if member.agent_id is not None:
                    self.members[member.agent_id] = card
        self.timeline = RunTimeline(self.services, self.run.id, self.scope)
        self.timeline.build()
        self._build_transcript()
        # Requests to people wait where the transcript stops (ui/inputs.py).
        self.inputs = InputPanel(self.services, self.scope, run_id=self.run.id)
        self._build_files()
        self._build_cancel_dialog()
        self.apply(self.run)

    def _build_header(self) -> None:
        with ui.card().classes(CARD).mark("run-header"):
            with ui.row().classes("w-full items-center gap-3"):
                self.badge = run_status_badge(self.run.status).classes("text-sm").mark("run-status")
                self.llm_slot = ui.row().classes("items-center gap-1")
                self.times = ui.label().classes(f"text-xs {MUTED}").mark("run-times")
                ui.space()
                ui.button("Save team as template", icon="bookmark_add", on_click=self._save_team).props(
                    "flat no-caps"
                ).mark("run-save-template")  # issue 17
                self.resume_button = (
                    ui.button("Resume", icon="play_circle", on_click=self.resume)
                    .props("unelevated no-caps color=primary")
                    .tooltip("Continue from the round after the last one saved; finished rounds are not paid again")
                    .mark("run-resume")
                )
                self.cancel_button = (
                    ui.button("Cancel run", icon="stop_circle", on_click=lambda: self.cancel_dialog.open())
                    .props("outline no-caps color=negative")
                    .mark("run-cancel")
                )
            ui.label(self.run.idea).classes(
                "w-full text-lg font-medium whitespace-pre-wrap break-words max-h-48 overflow-y-auto"
            ).mark("run-idea")
            self.stop_reason = ui.label().classes(f"text-sm {MUTED}").mark("run-stop-reason")
            self.resumed = ui.label().classes(f"text-sm {MUTED}").mark("run-resumed")
            with ui.row().classes("w-full items-start gap-2 no-wrap").mark("run-error-box") as self.error_box:
                ui.icon("error", color="negative", size="sm")
                self.error = (
                    ui.label().classes("text-sm text-negative whitespace-pre-wrap break-words").mark("run-error")
                )
            with ui.element("div").classes("w-full grid gap-4 grid-cols-1 sm:grid-cols-3"):
                with ui.column().classes("gap-1"):
                    ui.label("Rounds").classes(f"text-xs uppercase tracking-wider {MUTED}")
                    self.rounds = ui.label().classes("font-medium").mark("run-rounds")
                    self.progress = ui.linear_progress(value=0, show_value=False, size="6px").props("rounded")
                with ui.column().classes("gap-0"):
                    ui.label("Cost").classes(f"text-xs uppercase tracking-wider {MUTED}")
                    self.cost = ui.label().classes("font-medium").mark("run-cost")
                    self.budget = ui.label().classes(f"text-xs {MUTED}")
                with ui.column().classes("gap-0"):
                    ui.label("Tokens").classes(f"text-xs uppercase tracking-wider {MUTED}")
                    self.tokens = ui.label().classes("font-medium").mark("run-tokens")
                    self.token_split = ui.label().classes(f"text-xs {MUTED}")
        self.round_no = 0

    async def _save_team(self) -> None:
        from ui.teams import SaveTemplateDialog

        run_ = self.run
        ids = await run.io_bound(self.services.templates.run_team, run_.id, self.workspace.id)
        if ids is None:
            return
        if not ids:
            ui.notify("None of this run's agents exists any more", type="warning")
            return
        SaveTemplateDialog(
            self.services,
            self.workspace,
            lambda: ids,
            n_rounds=run_.n_rounds,
            investment=run_.investment,
            idea=run_.idea,
        ).open()

    def _build_transcript(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("forum").classes("text-xl text-slate-400")
            ui.label("Transcript").classes(SECTION_TITLE)
            ui.space()
            if self.profiles:
                # What "Re-run from here" uses for the rounds it plays again.
                same = f"profile {self.run.llm_profile}" if self.run.llm_profile else "workspace default"
                options = {"": f"Re-runs use: this run's LLM ({same})"}
                options.update({p.name: f"Re-runs use: {profile_label(p)}" for p in self.profiles})
                self.rerun_profile = (
                    ui.select(options, value="")
                    .props("outlined dense options-dense")
                    .classes("min-w-64 text-sm")
                    .mark("run-rerun-profile")
                )
            self.message_count = ui.label().classes(f"text-sm {MUTED}").mark("transcript-count")
        self.transcript = ui.column().classes("w-full gap-3").mark("transcript")
        self.transcript_empty = ui.label("No messages yet: they appear here as the agents publish them.").classes(
            f"text-sm {MUTED} self-center py-4"
        )
        with ui.row().classes("w-full justify-center"):
            self.transcript_more = (
                ui.button("Load more", icon="expand_more", on_click=self.load_more_messages)
                .props("outline no-caps")
                .mark("transcript-more")
            )
        self.transcript_more.set_visibility(False)

    def _build_files(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("folder").classes("text-xl text-slate-400")
            ui.label("Files").classes(SECTION_TITLE)
            self.file_count = ui.label().classes(f"text-sm {MUTED}").mark("file-count")
            ui.space()
            ui.button(icon="refresh", on_click=self.refresh_files).props("flat round dense").tooltip(
                "Refresh the file list"
            ).mark("files-refresh")
        with (
            ui.card().classes("w-full p-0 rounded-xl shadow-sm overflow-hidden"),
            ui.element("div").classes("w-full grid grid-cols-1 md:grid-cols-3"),
        ):
            with ui.column().classes(
                "p-3 gap-1 md:border-r border-slate-200 dark:border-slate-700 max-h-[32rem] overflow-auto min-w-0"
            ):
                self.tree_slot = ui.column().classes("w-full gap-0").mark("file-tree")
            with ui.column().classes("md:col-span-2 p-3 gap-2 min-w-0"):
                self.viewer = ui.column().classes("w-full gap-2 min-w-0").mark("file-viewer")
                with self.viewer:
                    ui.label("Choose a file to view it.").classes(f"text-sm {MUTED}")

    def _build_cancel_dialog(self) -> None:
        with ui.dialog() as self.cancel_dialog, ui.card().classes("p-6 gap-3 rounded-xl max-w-md"):
            ui.label("Cancel this run?").classes("text-lg font-semibold")
            ui.label("The agents stop now, mid-answer if need be. Messages, costs and files so far are kept.").classes(
                f"text-sm {MUTED}"
            )
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Keep running", on_click=self.cancel_dialog.close).props("flat no-caps")
                ui.button("Cancel run", icon="stop_circle", on_click=self.cancel).props(
                    "unelevated no-caps color=negative"
                ).mark("run-cancel-confirm")

    # -- loading ---------------------------------------------------------------------------
    async def load(self) -> None:
        round_events = await run.io_bound(
            self.services.bus.read, EventFilter(run_id=self.run.id, types=frozenset({EventType.RUN_ROUND})), 0, 200
        )
        if round_events:
            self._show_round(RunRound.of(round_events[-1]))
        await self.timeline.load()
        await self.load_more_messages()
        await self.refresh_files()

    async def load_more_messages(self) -> None:
        if self.transcript_loaded and self.transcript_cursor is None:
            return
        self.transcript_more.props("loading")
        try:
            page = await run.io_bound(
                self.services.messages.list_run,
                self.run.id,
                scope=self.scope,
                limit=TRANSCRIPT_PAGE,
                cursor=self.transcript_cursor,
            )
        except NotFound:
            return
        finally:
            self.transcript_more.props(remove="loading")
        with self.transcript:
            for message in page.items:
                self._append(message)
        if page.items:
            self.transcript_cursor = page.next_cursor
        self.transcript_loaded = True
        self.unseen = 0
        self._transcript_chrome()

    def _append(self, message: MessagePublic) -> None:
        if message.id in self.shown_messages:
            return
        self.shown_messages.add(message.id)
        render_message(message, on_rerun=self.rerun_from if self.run.status in FINISHED else None)

    def _transcript_chrome(self) -> None:
        more = self.transcript_cursor is not None
        self.transcript_more.set_visibility(more)
        self.transcript_more.set_text(f"Load more ({self.unseen} new)" if self.unseen else "Load more")
        self.transcript_empty.set_visibility(not self.shown_messages and not more)
        shown = len(self.shown_messages)
        self.message_count.set_text(count(shown, "message") + ("+" if more else "") if shown else "")

    async def refresh_files(self) -> None:
        try:
            files = await run.io_bound(self.services.runtime.run_files, self.run.id, scope=self.scope)
        except NotFound:
            files = []
        if files == self.files and self.tree_slot.default_slot.children:
            return
        self.files = files
        self.tree_slot.clear()
        with self.tree_slot:
            if not files:
                ui.label("No files yet: MetaGPT writes the PRD, design, tasks and code here.").classes(
                    f"text-sm {MUTED} p-2"
                ).mark("files-empty")
            else:
                tree = ui.tree(_file_nodes(files), on_select=self._selected).props("dense no-transition")
                tree.classes("w-full text-sm").mark("file-tree-nodes")
                tree.expand()
                if self.selected_file in files:
                    tree.select(self.selected_file)
        self.file_count.set_text(count(len(files), "file") if files else "")

    async def _selected(self, event: Any) -> None:
        path = event.value
        if not path or path not in self.files:
            return
        await self.open_file(path)

    async def open_file(self, path: str) -> None:
        self.selected_file = path
        try:
            text = await run.io_bound(self.services.runtime.read_run_file, self.run.id, path, scope=self.scope)
        except NotFound:
            ui.notify("That file is gone", type="warning")
            await self.refresh_files()
            return
        self.viewer.clear()
        with self.viewer:
            with ui.row().classes("w-full items-center gap-2 no-wrap"):
                ui.icon("description", size="xs").classes("text-slate-400")
                ui.label(path).classes("font-mono text-sm break-all").mark("file-name")
            if len(text.encode("utf-8", errors="replace")) >= MAX_FILE_BYTES:
                ui.label("Showing the first 256 KB of the file.").classes(f"text-xs {MUTED}")
            language = LANGUAGES.get(PurePosixPath(path).suffix.lower())
            ui.code(text, language=language).classes("w-full max-h-[30rem] text-xs").mark("file-code")

    # -- applying state --------------------------------------------------------------------
    def apply(self, run: RunPublic, reopened: bool = False) -> None:
        """Show `run` (from a read or an event), never moving a finished run back to running but
        when a person resumed it (`reopened`)."""
        if self.run.status in FINISHED and run.status not in FINISHED and not reopened:
            return
        self.run = run
        set_run_badge(self.badge, run.status)
        shown = (run.llm_label, run.status in ACTIVE, run.llm_profile)
        if shown != self._shown_llm:
            self._shown_llm = shown
            self.llm_slot.clear()
            with self.llm_slot:
                if run.llm_label:
                    llm_chip(run.llm_label)
                elif run.status in ACTIVE and run.llm_profile:
                    ui.label(f"LLM: profile {run.llm_profile}").classes(f"text-xs {MUTED}").mark("run-llm-profile")
                elif run.status in ACTIVE:
                    ui.label("LLM: chosen when the run starts").classes(f"text-xs {MUTED}")
        times = [f"created {when(run.created_at)}"]
        if run.started_at:
            times.append(f"started {when(run.started_at)}")
        if run.finished_at:
            times.append(f"finished {when(run.finished_at)}")
        if run.started_at and run.finished_at:
            times.append(f"took {duration(run)}")
        self.times.set_text(" · ".join(times))
        reason = ""
        if run.status in FINISHED and run.stop_reason:
            reason = f"Stopped: {run.stop_reason}"
        elif run.status == RunStatus.QUEUED and run.queue_position:
            ahead = run.queue_position
            reason = f"Queued: {ahead} run{'s' if ahead != 1 else ''} ahead in the queue."
        elif run.status == RunStatus.QUEUED:
            reason = "Queued: the team is being assembled (the first run after a start loads MetaGPT)."
        self.stop_reason.set_text(reason)
        self.stop_reason.set_visibility(bool(reason))
        resumed = ""
        if run.parent_run_id is not None and run.fork_round is not None:
            resumed = f"Re-run of run {str(run.parent_run_id)[:8]} from the end of its round {run.fork_round}. "
        if run.resumed_at_round is not None and run.status == RunStatus.QUEUED:
            resumed += f"Resumes at round {run.resumed_at_round} when its turn in the queue comes."
        elif run.resumed_at_round is not None:
            resumed += f"Resumed at round {run.resumed_at_round} (attempt {run.attempts})."
        self.resumed.set_text(resumed)
        self.resumed.set_visibility(bool(resumed))
        self.error.set_text(run.error)
        self.error_box.set_visibility(bool(run.error))
        self.cost.set_text(money(run.cost))
        self.budget.set_text(f"of {money(run.investment)} budget")
        self.tokens.set_text(f"{run.tokens:,}")
        self.token_split.set_text(f"{run.prompt_tokens:,} prompt + {run.completion_tokens:,} completion")
        self.cancel_button.set_visibility(run.status in ACTIVE)
        self.resume_button.set_visibility(run.status == RunStatus.INTERRUPTED)
        if self.rerun_profile is not None:
            self.rerun_profile.set_visibility(run.status in FINISHED)
        for member in run.members:
            card = self.members.get(member.agent_id) if member.agent_id else None
            if card is not None:
                card.show_figures(member)
        self._show_round_text()

    def _show_round(self, update: RunRound) -> None:
        self.round_no = update.round
        self._show_round_text()

    def _show_round_text(self) -> None:
        total = self.run.n_rounds
        if self.round_no:
            self.rounds.set_text(f"Round {self.round_no} of {total}")
        else:
            self.rounds.set_text(f"Not started · up to {total}" if self.run.status in ACTIVE else f"0 of {total}")
        self.progress.set_value(min(1.0, self.round_no / total) if total else 0)

    # -- live ------------------------------------------------------------------------------
    async def handle(self, event: EventOut) -> None:
        card = self.members.get(event.agent_id) if event.agent_id else None
        if event.type == EventType.LLM_TOKEN:
            text = LlmToken.of(event).text
            if card is not None and text:
                card.add_tokens(text)
                self._dirty.add(card.member.agent_id)  # type: ignore[arg-type]
                if self._flush_handle is None:
                    self._flush_handle = asyncio.get_running_loop().call_later(TOKEN_FLUSH_SECONDS, self._flush)
        elif event.type == EventType.AGENT_ACTIVITY:
            if card is not None:
                card.set_activity(AgentActivity.of(event))
        elif event.type == EventType.AGENT_MESSAGE:
            message = MessagePublic.model_validate(event.data["message"])  # the embedded API model, whole
            if card is not None and message.role != "user":
                card.end_stream(f"published {message.cause_by}" if message.cause_by else "")
            if self.transcript_cursor is None and self.transcript_loaded:
                with self.transcript:
                    self._append(message)
            elif message.id not in self.shown_messages:
                self.unseen += 1
            self._transcript_chrome()
            self._schedule_refresh()
        elif event.type == EventType.RUN_ROUND:
            self._show_round(RunRound.of(event))
        elif event.type == EventType.RUN_RESUMED:
            self.apply(RunPublic.model_validate(event.data["run"]), reopened=True)  # the embedded API model, whole
        elif event.type in (EventType.RUN_STARTED, EventType.RUN_FINISHED):
            self.apply(RunPublic.model_validate(event.data["run"]))  # the embedded API model, whole
            if event.type == EventType.RUN_FINISHED:
                for member in self.members.values():
                    member.end_stream()
                await self.refresh_files()
        elif event.type == EventType.LLM_CALL:
            await self.timeline.handle(event)
        elif event.type == EventType.RESUME:
            await self.timeline.load()
            await self._refresh()
            await self.load_more_messages()

    async def handle_status(self, event: EventOut) -> None:
        card = self.members.get(event.agent_id) if event.agent_id else None
        if card is not None and event.type == EventType.AGENT_STATUS_CHANGED:
            change = AgentStatusChanged.of(event)
            card.set_status(change.to, change.reason)

    def _flush(self) -> None:
        self._flush_handle = None
        for agent_id in self._dirty:
            card = self.members.get(agent_id)
            if card is not None:
                card.flush_stream()
        self._dirty.clear()

    def _schedule_refresh(self) -> None:
        """Re-read the run's figures and files soon, at most once per REFRESH_SECONDS."""
        if self._refresh_handle is not None:
            return
        delay = max(0.0, self._last_refresh + REFRESH_SECONDS - time.monotonic())
        self._refresh_handle = asyncio.get_running_loop().call_later(delay, self._start_refresh)

    def _start_refresh(self) -> None:
        self._refresh_handle = None
        # Not while the server shuts down: a task created after NiceGUI cancelled its tasks would be
        # left pending when the event loop closes.
        if not self.client.is_deleted and not app.is_stopping:
            background_tasks.create(self._refresh(), name=f"run-refresh-{self.run.id}")

    def _stop_timers(self) -> None:
        for handle in (self._refresh_handle, self._flush_handle):
            if handle is not None:
                handle.cancel()
        self._refresh_handle = self._flush_handle = None

    async def _refresh(self) -> None:
        self._last_refresh = time.monotonic()
        try:
            fresh = await run.io_bound(self.services.runtime.get_run, self.run.id, scope=self.scope)
        except NotFound:
            return
        if fresh is None or self.client.is_deleted:  # None: NiceGUI is shutting down
            return
        with self.client:
            self.apply(fresh)
            await self.refresh_files()

    async def rerun_from(self, round_no: int) -> None:
        """Start a fork of this run after `round_no` (with the chosen profile, if any) and open it."""
        profile = (self.rerun_profile.value or None) if self.rerun_profile is not None else None
        try:
            fork = await run.io_bound(
                self.services.runtime.fork_run,
                self.run.id,
                round_no,
                actor=ACTOR,
                scope=self.scope,
                llm_profile=profile,
            )
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
            return
        if fork is None:  # NiceGUI cancelled the call (client gone or server stopping)
            return
        ui.notify(f"Re-running from round {round_no}", type="positive")
        ui.navigate.to(f"/runs/{fork.id}")

    async def resume(self) -> None:
        """Queue this interrupted run again, at the round after its last checkpointed one."""
        self.resume_button.props("loading")
        try:
            result = await run.io_bound(self.services.runtime.resume_run, self.run.id, actor=ACTOR, scope=self.scope)
        except DomainError as exc:
            ui.notify(str(exc).capitalize(), type="warning")
            await self._refresh()
            return
        finally:
            self.resume_button.props(remove="loading")
        if result is None:  # NiceGUI is shutting down
            return
        self.apply(result, reopened=True)
        if result.status == RunStatus.INTERRUPTED:
            ui.notify(result.error or "The run could not be resumed", type="negative")
        else:
            ui.notify(f"Resuming at round {result.resumed_at_round}", type="positive")

    async def cancel(self) -> None:
        self.cancel_dialog.close()
        self.cancel_button.props("loading")
        try:
            result = await run.io_bound(self.services.runtime.cancel_run, self.run.id, actor=ACTOR, scope=self.scope)
        except Conflict as exc:
            ui.notify(str(exc).capitalize(), type="info")
            await self._refresh()
            return
        except DomainError as exc:
            ui.notify(str(exc), type="negative")
            return
        finally:
            self.cancel_button.props(remove="loading")
        self.apply(result)
        ui.notify("Run cancelled", type="positive")


def _file_nodes(paths: list[str]) -> list[dict[str, Any]]:
    """A ui.tree of relative paths: folders (id `dir:<path>`) first, then files (id = path)."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        parts = PurePosixPath(path).parts
        for part in parts[:-1]:
            node = node.setdefault(part + "/", {})
        node[parts[-1]] = path

    def build(node: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
        folders = sorted(k for k, v in node.items() if isinstance(v, dict))
        files = sorted(k for k, v in node.items() if not isinstance(v, dict))
        out: list[dict[str, Any]] = []
        for name in folders:
            full = prefix + name
            out.append({"id": f"dir:{full}", "label": name.rstrip("/"), "children": build(node[name], full)})
        for name in files:
            out.append({"id": node[name], "label": name})
        return out

    return build(root, "")


async def _find_run(services: Services, run_id: str, scope: uuid.UUID) -> RunPublic | None:
    try:
        ident = uuid.UUID(run_id)
    except ValueError:
        return None
    try:
        return await run.io_bound(services.runtime.get_run, ident, scope)
    except NotFound:
        return None


def _member_agents(services: Services, run: RunPublic, scope: uuid.UUID) -> dict[uuid.UUID, AgentPublic]:
    agents = services.agents
    found: dict[uuid.UUID, AgentPublic] = {}
    for member in run.members:
        if member.agent_id is not None:
            with contextlib.suppress(NotFound):
                found[member.agent_id] = agents.get(member.agent_id, scope=scope)
    return found


def _not_found(services: Services, run_id: str) -> None:
    with frame(services, "Run not found"), ui.card().classes("w-full p-8 rounded-xl shadow-sm items-center gap-3"):
        ui.icon("search_off").classes("text-5xl text-slate-400")
        ui.label("There is no such run in this workspace.").classes("text-lg font-medium").mark("run-not-found")
        ui.label(
            f"No run with id {run_id[:80]} exists here. It may belong to another workspace: switch "
            "workspace in the header to look there."
        ).classes("text-slate-500 text-center max-w-xl break-all")
        ui.button("Back to the runs", icon="arrow_back", on_click=lambda: ui.navigate.to("/runs")).props(
            "unelevated no-caps"
        )


# The page reads the run, its transcript's first page, its requests and its LLM calls before it
# is shown; while a run executes in this process (MetaGPT holds the GIL in bursts) that can take
# longer than NiceGUI's default 3 s.
@router.page("/runs/{run_id}", response_timeout=20)
async def run_page(run_id: str) -> None:
    services = app_services()
    workspace = current_workspace(services)
    since = services.bus.pumped_seq  # follow events from here on, so nothing read below is missed
    found = await _find_run(services, run_id, workspace.id)
    if found is None:
        _not_found(services, run_id)
        return
    agents = await run.io_bound(_member_agents, services, found, workspace.id)
    profiles = await run.io_bound(services.llm_profiles.list, workspace.id)
    ui.add_css(MESSAGE_CSS)
    with frame(services, "Run"):
        view = RunView(services, found, workspace)
        view.build(agents, profiles)
        await view.load()
        await view.inputs.start()
    live.subscribe(services.bus, EventFilter(run_id=found.id), view.handle, since=since)
    # Status changes carry the agent, not the run: follow the members' statuses in the workspace.
    live.subscribe(
        services.bus,
        EventFilter(workspace_id=workspace.id, types=frozenset({EventType.AGENT_STATUS_CHANGED})),
        view.handle_status,
        since=since,
    )
