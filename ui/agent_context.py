"""The context panel of the agent page (SPEC §4): current context, editor, versions, diff, rollback.

Never throw a person's edits away:
- Saving sends `expected_version` = the version the editor was loaded from. If someone saved in
  between, core refuses (StaleVersion) and nothing is written; the panel shows a conflict banner
  with the current version and keeps the text, offering "reload theirs" or "overwrite with mine".
- A live `agent_context_updated` refreshes the current view and the version list; it reloads the
  editor only when the editor has no unsaved changes, else it says a newer version exists.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from nicegui import run, ui
from pydantic import ValidationError

from core.context import ContextDiff, ContextPublic, ContextRollback, ContextUpdate, ContextVersionSummary
from core.errors import DomainError, StaleVersion
from core.pagination import encode_cursor
from core.services import Services
from ui.format import esc, full_time, json_error_text, markup, pretty_json, when
from ui.safe_props import with_props
from ui.widgets import json_editor

VERSIONS_PAGE = 20
MAX_VERSION_ROWS = 100
MAX_DIFF_LINES = 4000
MAX_VIEW_CHARS = 200_000

_PRE = (
    "text-xs font-mono whitespace-pre overflow-auto max-h-[28rem] rounded-lg p-3 "
    "bg-slate-50 dark:bg-slate-900 border border-slate-200 dark:border-slate-700"
)


# -- JSON with paths, for the diff -------------------------------------------------------------
def _pointer_part(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def json_lines(value: Any) -> list[tuple[str, str]]:
    """`json.dumps(value, indent=2)` as lines, each with the JSON pointer of what it shows."""
    out: list[tuple[str, str]] = []

    def walk(item: Any, path: str, prefix: str, suffix: str, depth: int) -> None:
        pad = "  " * depth
        if isinstance(item, dict) and item:
            out.append((f"{pad}{prefix}{{", path))
            for i, (key, child) in enumerate(item.items()):
                label = json.dumps(key, ensure_ascii=False) + ": "
                walk(child, f"{path}/{_pointer_part(str(key))}", label, "," if i < len(item) - 1 else "", depth + 1)
            out.append((f"{pad}}}{suffix}", path))
        elif isinstance(item, list) and item:
            out.append((f"{pad}{prefix}[", path))
            for i, child in enumerate(item):
                walk(child, f"{path}/{i}", "", "," if i < len(item) - 1 else "", depth + 1)
            out.append((f"{pad}]{suffix}", path))
        else:
            out.append((f"{pad}{prefix}{json.dumps(item, ensure_ascii=False)}{suffix}", path))

    walk(value, "", "", "", 0)
    return out


def changed_paths(operations: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """Pointers changed on the old side (removed/replaced/moved away) and on the new side."""
    old: set[str] = set()
    new: set[str] = set()
    for op in operations:
        kind, path = op.get("op"), str(op.get("path", ""))
        if kind in {"remove", "replace"}:
            old.add(path)
        if kind in {"add", "replace", "copy", "move"}:
            new.add(path)
        if kind == "move":
            old.add(str(op.get("from", "")))
    return old, new


def _is_changed(path: str, changed: set[str]) -> bool:
    if not changed:
        return False
    if "" in changed or path in changed:
        return True
    parts = path.split("/")
    return any("/".join(parts[:i]) in changed for i in range(2, len(parts)))


def diff_side_markup(value: Any, changed: set[str], highlight: str) -> str:
    lines = json_lines(value)
    rows = []
    for text, path in lines[:MAX_DIFF_LINES]:
        css = f' class="{highlight}"' if _is_changed(path, changed) else ""
        rows.append(f"<div{css}>{esc(text) or ' '}</div>")
    if len(lines) > MAX_DIFF_LINES:
        rows.append(f'<div class="text-slate-400">… {len(lines) - MAX_DIFF_LINES} more lines</div>')
    return "".join(rows)


def operations_markup(operations: list[dict[str, Any]]) -> str:
    if not operations:
        return '<span class="text-sm text-slate-500">The two versions are equal.</span>'
    colors = {
        "add": "bg-green-100 text-green-900",
        "remove": "bg-red-100 text-red-900",
        "replace": "bg-amber-100 text-amber-900",
    }
    chips = []
    for op in operations:
        kind = str(op.get("op"))
        where = str(op.get("path")) or "/"
        if kind in {"move", "copy"}:
            where = f"{op.get('from') or '/'} → {where}"
        css = colors.get(kind, "bg-slate-100 text-slate-800")
        chips.append(f'<span class="font-mono text-xs rounded px-2 py-0.5 {css}">{esc(kind)} {esc(where)}</span>')
    return f'<div class="flex flex-wrap gap-1">{"".join(chips)}</div>'


# -- the panel -------------------------------------------------------------------------------
class ContextPanel:
    def __init__(self, services: Services, agent_id: uuid.UUID, scope: uuid.UUID) -> None:
        self.services = services
        self.agent_id = agent_id
        self.scope = scope
        self.current: ContextPublic | None = None
        self.base_version = 0  # the version the editor text started from
        self.base_text = ""
        self.conflict_version: int | None = None
        self.version_rows: dict[int, ui.element] = {}
        self.rollback_buttons: dict[int, ui.button] = {}
        self.current_labels: dict[int, ui.label] = {}
        self.versions_cursor: str | None = None

    @property
    def dirty(self) -> bool:
        return (self.editor.value or "") != self.base_text

    # -- layout ----------------------------------------------------------------------------
    def build(self) -> None:
        with ui.element("div").classes("w-full grid grid-cols-1 lg:grid-cols-2 items-start gap-4"):
            with ui.card().classes("w-full rounded-xl shadow-sm gap-2 p-4"):
                with ui.row().classes("w-full items-center gap-2"):
                    ui.label("Current context").classes("text-lg font-medium")
                    self.version_chip = ui.chip("", icon="history").props("dense square").mark("context-version")
                    ui.space()
                    self.updated_label = ui.label().classes("text-xs text-slate-500")
                self.current_view = (
                    markup("", tag="pre")
                    .classes(_PRE + " w-full")
                    .props("data-testid=context-current")
                    .mark("context-current")
                )
            with ui.card().classes("w-full rounded-xl shadow-sm gap-2 p-4"):
                self._build_editor()
        with ui.card().classes("w-full rounded-xl shadow-sm gap-2 p-4"):
            self._build_versions()
        with ui.card().classes("w-full rounded-xl shadow-sm gap-2 p-4").mark("context-diff") as self.diff_card:
            self._build_diff()
        self.diff_card.set_visibility(False)
        self._build_rollback_dialog()

    def _build_editor(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            ui.label("Edit").classes("text-lg font-medium")
            ui.space()
            self.mode = (
                ui.toggle({"replace": "Replace", "patch": "Merge patch"}, value="replace", on_change=self._mode_changed)
                .props("dense no-caps unelevated toggle-color=primary")
                .mark("context-mode")
            )
        self.mode_hint = ui.label().classes("text-xs text-slate-500")
        self.newer_banner = ui.column().classes(
            "w-full gap-1 rounded-lg px-3 py-2 bg-sky-50 text-sky-900 dark:bg-sky-500/15 dark:text-sky-100"
        )
        with self.newer_banner.mark("context-newer"):
            with ui.row().classes("items-center gap-2 no-wrap"):
                ui.icon("update")
                self.newer_text = ui.label().classes("text-sm")
            with ui.row().classes("gap-2"):
                ui.button("Load it (discard my edits)", icon="download", on_click=self.reload_theirs).props(
                    "outline dense no-caps"
                ).mark("context-load-newer")
                ui.button("Compare", icon="difference", on_click=self._compare_newer).props("flat dense no-caps")
        self.conflict_banner = ui.column().classes(
            "w-full gap-1 rounded-lg px-3 py-2 bg-amber-50 text-amber-900 border border-amber-300 "
            "dark:bg-amber-500/15 dark:text-amber-100"
        )
        with self.conflict_banner.mark("context-conflict"):
            with ui.row().classes("items-center gap-2 no-wrap"):
                ui.icon("warning", color="warning")
                self.conflict_text = ui.label().classes("text-sm")
            with ui.row().classes("gap-2"):
                ui.button("Reload theirs", icon="download", on_click=self.reload_theirs).props(
                    "outline dense no-caps"
                ).mark("context-reload-theirs")
                ui.button("Overwrite with mine", icon="save", on_click=self.overwrite).props(
                    "unelevated dense no-caps color=warning"
                ).mark("context-overwrite")
                ui.button("Compare", icon="difference", on_click=self._compare_conflict).props("flat dense no-caps")
        self.editor = json_editor().classes("h-64").mark("context-editor")
        self.reason = (
            ui.input("Reason (optional)", placeholder="why this change?")
            .props("outlined dense maxlength=2000")
            .classes("w-full")
            .mark("context-reason")
        )
        self.error = ui.label().classes("text-sm text-negative whitespace-pre-wrap").mark("context-error")
        with ui.row().classes("w-full gap-2 justify-end"):
            ui.button("Discard edits", on_click=self.reload_theirs).props("flat no-caps").mark("context-reset")
            ui.button("Save new version", icon="save", on_click=self.save).props("unelevated no-caps").mark(
                "context-save"
            )
        for banner in (self.newer_banner, self.conflict_banner, self.error):
            banner.set_visibility(False)
        self._mode_changed()

    def _build_versions(self) -> None:
        with ui.row().classes("w-full items-end gap-2"):
            ui.label("Versions").classes("text-lg font-medium")
            ui.space()
            self.diff_from = (
                ui.number("From", min=1, precision=0, format="%d")
                .props("outlined dense")
                .classes("w-24")
                .mark("diff-from")
            )
            self.diff_to = (
                ui.number("To", min=1, precision=0, format="%d").props("outlined dense").classes("w-24").mark("diff-to")
            )
            ui.button("Compare", icon="difference", on_click=self.compare).props("unelevated no-caps").mark(
                "diff-compare"
            )
        self.versions = ui.column().classes("w-full gap-0 divide-y divide-slate-100 dark:divide-slate-700")
        self.versions.mark("context-versions")
        self.more_versions = (
            ui.button("Load older versions", on_click=self.load_more_versions)
            .props("flat dense no-caps")
            .mark("context-more-versions")
        )

    def _build_diff(self) -> None:
        with ui.row().classes("w-full items-center"):
            self.diff_title = ui.label().classes("text-lg font-medium").mark("diff-title")
            ui.space()
            ui.button(icon="close", on_click=lambda: self.diff_card.set_visibility(False)).props("flat round dense")
        self.diff_ops = markup("").classes("w-full").mark("diff-operations")
        with ui.element("div").classes("w-full grid grid-cols-1 md:grid-cols-2 gap-3"):
            with ui.column().classes("gap-1 min-w-0"):
                self.diff_left_title = ui.label().classes("text-sm font-medium text-slate-600")
                self.diff_left = markup("", tag="pre").classes(_PRE + " w-full").mark("diff-left")
            with ui.column().classes("gap-1 min-w-0"):
                self.diff_right_title = ui.label().classes("text-sm font-medium text-slate-600")
                self.diff_right = markup("", tag="pre").classes(_PRE + " w-full").mark("diff-right")

    def _build_rollback_dialog(self) -> None:
        with ui.dialog() as self.rollback_dialog, ui.card().classes("w-[28rem] max-w-full gap-3 p-6 rounded-xl"):
            self.rollback_title = ui.label().classes("text-lg font-semibold")
            self.rollback_text = ui.label().classes("text-sm text-slate-600 dark:text-slate-300")
            self.rollback_reason = (
                ui.input("Reason (optional)").props("outlined dense maxlength=2000").classes("w-full")
            ).mark("rollback-reason")
            self.rollback_error = ui.label().classes("text-sm text-negative").mark("rollback-error")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=self.rollback_dialog.close).props("flat no-caps")
                ui.button("Roll back", icon="restore", on_click=self._confirm_rollback).props(
                    "unelevated no-caps color=negative"
                ).mark("rollback-confirm")
        self.rollback_target = 0

    # -- loading ---------------------------------------------------------------------------
    async def load(self) -> None:
        contexts = self.services.contexts
        self.current = await run.io_bound(contexts.get, self.agent_id, self.scope)
        self._show_current()
        self._reset_editor()
        page = await run.io_bound(contexts.versions, self.agent_id, self.scope, VERSIONS_PAGE)
        self.versions.clear()
        self.version_rows.clear()
        self.rollback_buttons.clear()
        self.current_labels.clear()
        for summary in page.items:
            self._add_version_row(summary)
        self.versions_cursor = page.next_cursor
        self.more_versions.set_visibility(page.next_cursor is not None)
        self.diff_to.value = self.current.version
        self.diff_from.value = max(1, self.current.version - 1)

    async def load_more_versions(self) -> None:
        if self.versions_cursor is None:
            return
        page = await run.io_bound(
            self.services.contexts.versions, self.agent_id, self.scope, VERSIONS_PAGE, self.versions_cursor
        )
        for summary in page.items:
            self._add_version_row(summary)
        self.versions_cursor = page.next_cursor
        self.more_versions.set_visibility(page.next_cursor is not None)

    async def refresh(self) -> None:
        """A new version exists (live event or our own write): update views, keep unsaved edits."""
        contexts = self.services.contexts
        self.current = await run.io_bound(contexts.get, self.agent_id, self.scope)
        self._show_current()
        newest = max(self.version_rows, default=0)
        if self.current.version > newest:
            page = await run.io_bound(contexts.versions, self.agent_id, self.scope, VERSIONS_PAGE)
            fresh = [s for s in page.items if s.version > newest]
            for index, summary in enumerate(fresh):
                self._add_version_row(summary, index=index)
            while len(self.version_rows) > MAX_VERSION_ROWS:
                oldest = min(self.version_rows)
                self.versions.remove(self.version_rows.pop(oldest))
                self.rollback_buttons.pop(oldest, None)
                self.current_labels.pop(oldest, None)
                self.versions_cursor = encode_cursor(min(self.version_rows))
                self.more_versions.set_visibility(True)
        self._refresh_rollback_buttons()
        if self.current.version == self.base_version:
            return
        if not self.dirty and self.conflict_version is None:
            self._reset_editor()
        else:
            self.newer_text.text = (
                f"Version {self.current.version} was saved while you were editing version "
                f"{self.base_version}. Your edits are kept; saving will ask before overwriting it."
            )
            self.newer_banner.set_visibility(self.conflict_version is None)

    # -- rendering -------------------------------------------------------------------------
    def _show_current(self) -> None:
        assert self.current is not None
        self.version_chip.text = f"version {self.current.version}"
        self.updated_label.text = f"updated {when(self.current.updated_at)}"
        with_props(self.updated_label, {"title": full_time(self.current.updated_at)})
        text = pretty_json(self.current.data)
        if len(text) > MAX_VIEW_CHARS:
            text = text[:MAX_VIEW_CHARS] + "\n… (truncated here; the editor holds all of it)"
        self.current_view.content = esc(text)

    def _add_version_row(self, summary: ContextVersionSummary, index: int = -1) -> None:
        if summary.version in self.version_rows:
            return
        with self.versions:
            row = with_props(
                ui.row().classes("w-full items-center gap-2 py-2 no-wrap"), {"data-version": summary.version}
            ).mark(f"version-{summary.version}")
        with row:
            reason = (
                f' · <span class="text-slate-600 dark:text-slate-300">{esc(summary.reason)}</span>'
                if summary.reason
                else ""
            )
            markup(
                f'<div class="flex flex-wrap items-baseline gap-x-2 text-sm">'
                f'<b class="font-mono">v{summary.version}</b>'
                f'<span class="text-slate-500">{esc(summary.author)}</span>'
                f'<span class="text-xs text-slate-400" title="{esc(full_time(summary.created_at))}">'
                f"{esc(when(summary.created_at))}</span>{reason}</div>"
            ).classes("grow min-w-0")
            if summary.version > 1:
                ui.button(
                    "Changes", icon="difference", on_click=lambda v=summary.version: self.show_diff(v - 1, v)
                ).props("flat dense no-caps size=sm").tooltip(f"What changed from version {summary.version - 1}").mark(
                    f"diff-{summary.version}"
                )
            self.rollback_buttons[summary.version] = (
                ui.button("Roll back", icon="restore", on_click=lambda v=summary.version: self.ask_rollback(v))
                .props("flat dense no-caps size=sm color=negative")
                .classes("w-28")
                .tooltip(f"Write a new version with the data of version {summary.version}")
                .mark(f"rollback-{summary.version}")
            )
            # Where the current version's row would have its rollback button, so the columns line up.
            self.current_labels[summary.version] = ui.label("current").classes(
                "w-28 text-center text-xs uppercase tracking-wider text-indigo-600 dark:text-indigo-300"
            )
        if index >= 0:
            row.move(self.versions, target_index=index)
        self.version_rows[summary.version] = row
        self._refresh_rollback_buttons()

    def _refresh_rollback_buttons(self) -> None:
        current = self.current.version if self.current else 0
        for version, button in self.rollback_buttons.items():
            button.set_visibility(version != current)
            self.current_labels[version].set_visibility(version == current)

    # -- editing ---------------------------------------------------------------------------
    def _mode_changed(self) -> None:
        patch = self.mode.value == "patch"
        self.mode_hint.text = (
            "A JSON merge patch (RFC 7396): keys given are set, keys set to null are removed."
            if patch
            else "The whole context, replaced by this JSON object."
        )
        if self.current is not None and not self.dirty:
            self._reset_editor()

    def _reset_editor(self) -> None:
        assert self.current is not None
        self.base_version = self.current.version
        self.base_text = "{\n  \n}" if self.mode.value == "patch" else pretty_json(self.current.data)
        self.editor.value = self.base_text
        self.conflict_version = None
        for banner in (self.newer_banner, self.conflict_banner, self.error):
            banner.set_visibility(False)

    async def reload_theirs(self) -> None:
        self.current = await run.io_bound(self.services.contexts.get, self.agent_id, self.scope)
        self._show_current()
        self._reset_editor()

    async def overwrite(self) -> None:
        if self.conflict_version is not None:
            await self.save(expected=self.conflict_version)

    async def save(self, expected: int | None = None) -> None:
        self.error.set_visibility(False)
        try:
            value = json.loads(self.editor.value or "")
        except json.JSONDecodeError as exc:
            return self._show_error(json_error_text(exc))
        if not isinstance(value, dict):
            return self._show_error(f"The context must be a JSON object ({{...}}), not {type(value).__name__}.")
        kind = "patch" if self.mode.value == "patch" else "data"
        try:
            change = ContextUpdate(
                **{kind: value}, expected_version=expected or self.base_version, reason=self.reason.value or ""
            )
        except ValidationError as exc:
            return self._show_error("; ".join(e["msg"] for e in exc.errors()))
        try:
            saved = await run.io_bound(self.services.contexts.update, self.agent_id, change, "user", self.scope)
        except StaleVersion as exc:
            self.conflict_version = exc.current
            self.conflict_text.text = (
                f"Not saved: someone saved version {exc.current} after you started editing version "
                f"{self.base_version}. Your text is still in the editor."
            )
            self.conflict_banner.set_visibility(True)
            self.newer_banner.set_visibility(False)
            return None
        except DomainError as exc:
            return self._show_error(f"Not saved: {exc}")
        self.current = saved
        self.reason.value = ""
        self._reset_editor()
        ui.notify(f"Saved context version {saved.version}", type="positive")
        await self.refresh()
        return None

    def _show_error(self, text: str) -> None:
        self.error.text = text
        self.error.set_visibility(True)

    # -- diff ------------------------------------------------------------------------------
    async def compare(self) -> None:
        if self.diff_from.value is None or self.diff_to.value is None:
            ui.notify("Pick two version numbers", type="warning")
            return
        await self.show_diff(int(self.diff_from.value), int(self.diff_to.value))

    async def _compare_newer(self) -> None:
        if self.current is not None:
            await self.show_diff(self.base_version, self.current.version)

    async def _compare_conflict(self) -> None:
        if self.conflict_version is not None:
            await self.show_diff(self.base_version, self.conflict_version)

    async def show_diff(self, old: int, new: int) -> None:
        try:
            diff: ContextDiff = await run.io_bound(self.services.contexts.diff, self.agent_id, old, new, self.scope)
        except DomainError as exc:
            ui.notify(str(exc), type="warning")
            return
        self.diff_from.value, self.diff_to.value = old, new
        left, right = changed_paths(diff.operations)
        count = len(diff.operations)
        self.diff_title.text = f"Version {old} → version {new}: {count} change{'s' if count != 1 else ''}"
        self.diff_ops.content = operations_markup(diff.operations)
        self.diff_left_title.text = f"Version {old}"
        self.diff_right_title.text = f"Version {new}"
        self.diff_left.content = diff_side_markup(diff.from_data, left, "bg-red-100 dark:bg-red-500/25")
        self.diff_right.content = diff_side_markup(diff.to_data, right, "bg-green-100 dark:bg-green-500/25")
        self.diff_card.set_visibility(True)
        ui.run_javascript(
            f"getHtmlElement({self.diff_card.id})?.scrollIntoView({{behavior: 'smooth', block: 'nearest'}})"
        )

    # -- rollback --------------------------------------------------------------------------
    def ask_rollback(self, version: int) -> None:
        current = self.current.version if self.current else 0
        self.rollback_target = version
        self.rollback_title.text = f"Roll back to version {version}?"
        self.rollback_text.text = (
            f"This writes version {current + 1} with the data of version {version}. "
            "Nothing is deleted: every version stays readable, and you can roll forward again."
        )
        self.rollback_reason.value = ""
        self.rollback_error.set_visibility(False)
        self.rollback_dialog.open()

    async def _confirm_rollback(self) -> None:
        request = ContextRollback(
            version=self.rollback_target,
            reason=self.rollback_reason.value or "",
            expected_version=self.current.version if self.current else None,
        )
        try:
            saved = await run.io_bound(self.services.contexts.rollback, self.agent_id, request, "user", self.scope)
        except StaleVersion as exc:
            self.rollback_error.text = f"The context changed meanwhile (now version {exc.current}); review and retry."
            self.rollback_error.set_visibility(True)
            await self.refresh()
            return
        except DomainError as exc:
            self.rollback_error.text = str(exc)
            self.rollback_error.set_visibility(True)
            return
        self.rollback_dialog.close()
        ui.notify(f"Rolled back: version {saved.version} = version {self.rollback_target}", type="positive")
        await self.refresh()
