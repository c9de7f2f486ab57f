"""The page frame every dashboard page uses: `with frame(services, 'Agents'): ...` (one look, defined once).

Header: menu button (narrow screens), the AgentDeck name, the workspace switcher with a "new
workspace" button, the dark-mode toggle and, when a password is configured, a logout button.
Left drawer: the SPEC §11 sections; it stays open on wide screens and collapses below 1024 px.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from nicegui import app, context, ui

from core.schemas import WorkspacePublic
from core.services import Services
from core.version import VERSION
from ui.components import new_workspace_dialog, workspace_switcher
from ui.inputs import pending_inputs_button
from ui.state import current_workspace

DARK_MODE_KEY = "dark_mode"


class NavItem(NamedTuple):
    label: str
    icon: str
    path: str
    # Detail routes that belong to the section, e.g. /agents/{id} under Agents.
    also: tuple[str, ...] = ()


NAV = (
    NavItem("Agents", "smart_toy", "/", also=("/agents",)),
    NavItem("Catalog", "category", "/catalog"),
    NavItem("Runs", "rocket_launch", "/runs"),
    NavItem("Analytics", "insights", "/analytics"),
    NavItem("Settings", "settings", "/settings"),
)


NAV_LINK = "flex items-center gap-3 px-3 py-2 rounded-lg no-underline text-sm font-medium transition-colors"
NAV_ACTIVE = "bg-indigo-50 text-indigo-700 dark:bg-indigo-500/15 dark:text-indigo-200"
NAV_IDLE = "text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-700/60"


# Quasar's brand colours are tuned for text on light pages; on the dark page indigo-600 and red-700
# text fall below WCAG's 4.5:1, so text in those colours is lifted (backgrounds keep the brand colour).
# Quasar's `.text-*` rules are !important in NiceGUI's last layer; an !important of an earlier layer
# (`overrides`) is the one that beats them.
DARK_TEXT_CSS = """
@layer overrides {
  .body--dark .text-primary { color: #a5b4fc !important; }
  .body--dark .text-negative { color: #fca5a5 !important; }
  .body--dark .text-warning { color: #fcd34d !important; }
}
"""


def apply_theme() -> ui.dark_mode:
    """Colors, page background and this user's dark-mode choice (kept in app.storage.user, so
    every tab and page agrees). Every page calls it, through `frame` or directly (login)."""
    ui.colors(primary="#4f46e5", secondary="#0ea5e9", accent="#a855f7", dark="#1e293b", dark_page="#0f172a")
    ui.query("body").classes("bg-slate-50 dark:bg-slate-900")
    ui.add_css(DARK_TEXT_CSS)
    return ui.dark_mode(bool(app.storage.user.get(DARK_MODE_KEY, False)))


def brand(size: str = "text-xl", *, compact: bool = False) -> None:
    """The logo and name; `compact` drops the name on phone-sized screens."""
    with ui.row().classes("items-center gap-2 no-wrap"):
        ui.icon("hub", color="primary").classes(size)
        ui.label("AgentDeck").classes(f"{size} font-semibold tracking-tight" + (" max-sm:hidden" if compact else ""))


@contextmanager
def frame(services: Services, title: str) -> Iterator[WorkspacePublic]:
    """Build the shell, then yield the current workspace inside the main content column:

    with frame(services, "Runs") as workspace:
        ...  # the page's own elements, scoped to workspace.id
    """
    dark = apply_theme()
    ui.page_title(f"{title} · AgentDeck")
    workspace = current_workspace(services)
    workspaces = services.workspaces.list()
    create_dialog = new_workspace_dialog(services)

    with ui.header(elevated=False, wrap=False).classes(
        "items-center gap-2 px-3 py-2 bg-[#fff] text-slate-900 border-b border-slate-200 "
        "dark:bg-slate-800 dark:text-slate-100 dark:border-slate-700"
    ):
        ui.button(icon="menu", on_click=lambda: drawer.toggle()).props("flat round dense").classes("lg:hidden").mark(
            "menu"
        )
        with ui.link(target="/").classes("no-underline text-inherit"):
            brand(compact=True)
        ui.space()
        workspace_switcher(workspaces, workspace)
        ui.button(icon="add", on_click=create_dialog.open).props("flat round dense").tooltip("New workspace").mark(
            "new-workspace"
        )
        pending_inputs_button(services, workspace.id)
        _dark_mode_button(dark)
        if services.settings.password:
            ui.button(icon="logout", on_click=lambda: ui.navigate.to("/logout")).props(
                'flat round dense aria-label="Log out"'
            ).tooltip("Log out").mark("logout")

    with (
        ui.left_drawer(bordered=True)
        .props("width=220")
        .classes("bg-[#fff] dark:bg-slate-800 px-2 py-4 flex flex-col gap-1") as drawer
    ):
        _nav_links(_current_path())
        ui.space()
        ui.label(f"AgentDeck {VERSION}").classes("px-3 text-xs text-slate-400")

    with ui.column().classes("w-full max-w-6xl mx-auto p-4 md:p-8 gap-6"):
        with ui.column().classes("gap-0"):
            ui.label(workspace.name).classes("text-xs uppercase tracking-wider text-slate-500").mark(
                "current-workspace"
            )
            ui.label(title).classes("text-2xl font-semibold").mark("page-title")
        yield workspace


def _current_path() -> str:
    return context.client.request.url.path


def _nav_links(path: str) -> None:
    for item in NAV:
        active = _is_active(item, path)
        link = ui.link(target=item.path).classes(f"{NAV_LINK} {NAV_ACTIVE if active else NAV_IDLE}")
        link.mark(f"nav nav-{item.label.lower()}")
        if active:
            link.props('aria-current="page"')
        with link:
            ui.icon(item.icon).classes("text-xl")
            ui.label(item.label)


def _is_active(item: NavItem, path: str) -> bool:
    sections = (item.path, *item.also) if item.path != "/" else item.also
    return path == item.path or any(path.startswith(section + "/") for section in sections)


def _dark_mode_button(dark: ui.dark_mode) -> ui.button:
    def icon() -> str:
        return "light_mode" if dark.value else "dark_mode"

    def toggle() -> None:
        dark.value = not dark.value
        app.storage.user[DARK_MODE_KEY] = dark.value
        button.icon = icon()

    button = (
        ui.button(icon=icon(), on_click=toggle)
        .props('flat round dense aria-label="Dark mode"')
        .tooltip("Dark mode")
        .mark("dark-mode")
    )
    return button
