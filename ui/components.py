"""Small reusable widgets of the dashboard. They call the services they are given; the rules stay
in core."""

from __future__ import annotations

from collections.abc import Mapping

from nicegui import run, ui
from nicegui.events import ValueChangeEventArguments
from pydantic import ValidationError

from core.errors import Conflict, DomainError
from core.schemas import WorkspaceCreate, WorkspacePublic
from core.services import Services
from ui.safe_props import with_props
from ui.state import set_current_workspace

SLUG_HINT = "lowercase letters, digits and dashes, starting and ending with a letter or digit"


def validation_messages(exc: ValidationError, hints: Mapping[str, str] | None = None) -> dict[str, str]:
    """One readable message per top-level field; a field's hint replaces pydantic's regex text."""
    messages: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in messages:
            continue
        if error["type"] == "string_pattern_mismatch" and hints and field in hints:
            messages[field] = f"Use {hints[field]}"
        else:
            messages[field] = error["msg"]
    return messages


def workspace_label(workspace: WorkspacePublic) -> str:
    same = workspace.name.casefold() == workspace.slug.casefold()
    return workspace.name if same else f"{workspace.name} ({workspace.slug})"


def workspace_switcher(workspaces: list[WorkspacePublic], current: WorkspacePublic) -> ui.select:
    """The header's workspace select: choosing one stores it for this user and reloads the page."""

    def switch(event: ValueChangeEventArguments) -> None:
        if event.value and event.value != str(current.id):
            set_current_workspace(event.value)
            ui.navigate.reload()

    options = {str(ws.id): workspace_label(ws) for ws in workspaces}
    # The list is capped and read separately, so the current one may be missing from it.
    options.setdefault(str(current.id), workspace_label(current))
    select = (
        ui.select(options, value=str(current.id), on_change=switch)
        .props("dense outlined options-dense")
        .classes("w-40 sm:w-60 min-w-0")
        .props('aria-label="Workspace"')
        .mark("workspace-switcher")
    )
    with select.add_slot("prepend"):
        ui.icon("workspaces", size="xs").classes("text-slate-400")
    return select


def new_workspace_dialog(services: Services) -> ui.dialog:
    """A dialog that creates a workspace and switches to it; errors stay inline on the fields."""
    with ui.dialog() as dialog, ui.card().classes("w-96 max-w-full gap-3 p-6 rounded-xl"):
        ui.label("New workspace").classes("text-lg font-semibold")
        ui.label("Agents, runs and tokens never cross workspaces.").classes("text-sm text-gray-500")
        slug = ui.input("Slug", placeholder="e.g. research").props("outlined dense").classes("w-full")
        slug.props('hint="Lowercase letters, digits and dashes"').mark("new-workspace-slug")
        name = (
            ui.input("Name (optional)", placeholder="e.g. Research team")
            .props("outlined dense")
            .classes("w-full")
            .mark("new-workspace-name")
        )

        async def create() -> None:
            slug.error = name.error = None
            try:
                data = WorkspaceCreate(slug=slug.value or "", name=(name.value or "").strip() or None)
            except ValidationError as exc:
                messages = validation_messages(exc, {"slug": SLUG_HINT})
                slug.error = messages.get("slug")
                name.error = messages.get("name")
                return
            try:
                workspace = await run.io_bound(services.workspaces.create, data)
            except Conflict as exc:
                slug.error = str(exc)
                return
            except DomainError as exc:
                name.error = str(exc)
                return
            set_current_workspace(workspace.id)
            dialog.close()
            ui.notify(f"Workspace {workspace.slug} created", type="positive")
            ui.navigate.reload()

        slug.on("keydown.enter", create)
        name.on("keydown.enter", create)
        with ui.row().classes("w-full justify-end gap-2 pt-2"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Create", on_click=create).props("unelevated").mark("new-workspace-create")
    return dialog


def stat_card(label: str, value: object, icon: str, *, marker: str | None = None) -> ui.card:
    """A figure with a caption, for overview rows; `marker` tags the figure (and its data-testid)."""
    card = ui.card().classes("min-w-44 flex-1 p-4 rounded-xl shadow-sm")
    with card, ui.row().classes("items-center gap-3 no-wrap"):
        with ui.element("div").classes("rounded-lg bg-indigo-50 dark:bg-indigo-500/15 p-2 flex"):
            ui.icon(icon).classes("text-2xl text-indigo-600 dark:text-indigo-300")
        with ui.column().classes("gap-0"):
            figure = ui.label(str(value)).classes("text-2xl font-semibold leading-tight")
            ui.label(label).classes("text-sm text-gray-500")
    if marker:
        with_props(figure.mark(marker), {"data-testid": marker})
    return card
