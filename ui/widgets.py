"""Small widgets shared by the dashboard pages."""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt
from nicegui import ui

from core.registry import BUILTIN_ROLE_KINDS
from core.runtime_labels import DEMO_MODEL_LABEL
from core.schemas import DefinitionPublic
from core.status import RunStatus
from ui.dark_mode import page_dark_mode
from ui.safe_props import with_props

# One Material icon per MetaGPT role kind (agent cards, run members).
ROLE_ICONS = {
    "ProductManager": "assignment",
    "Architect": "architecture",
    "ProjectManager": "view_kanban",
    "Engineer": "code",
    "QaEngineer": "bug_report",
    "assistant": "chat",
}


def catalog_order(definition: DefinitionPublic) -> tuple[bool, int, str]:
    """Built-ins first, in the order of MetaGPT's software company (PM → ... → QA), then plugins."""
    kinds = BUILTIN_ROLE_KINDS
    position = kinds.index(definition.role_kind) if definition.role_kind in kinds else len(kinds)
    return (definition.source != "builtin", position, definition.name)


STATUS_COLORS: dict[str, str] = {
    "idle": "grey-6",
    "initializing": "blue-5",
    "active": "positive",
    "busy": "warning",
    "error": "negative",
    "offline": "blue-grey-8",
}

RUN_STATUS_COLORS: dict[str, str] = {
    RunStatus.QUEUED: "grey-6",
    RunStatus.RUNNING: "primary",
    RunStatus.WAITING: "amber-8",
    RunStatus.COMPLETED: "positive",
    RunStatus.FAILED: "negative",
    RunStatus.CANCELLED: "blue-grey-6",
    RunStatus.INTERRUPTED: "orange-8",
}


def json_editor(value: str = "") -> ui.codemirror:
    """A JSON editor whose colours follow the page's dark-mode toggle as it flips, not on reload."""
    dark = page_dark_mode()

    def theme(is_dark: bool | None) -> str:
        return "basicDark" if is_dark else "basicLight"

    editor = ui.codemirror(
        value, language="JSON", theme=theme(dark.value if dark else False), indent="  ", line_wrapping=True
    ).classes("w-full rounded-lg border border-slate-200 dark:border-slate-700 text-sm")
    if dark is not None:
        dark.on_value_change(lambda e: with_props(editor, {"theme": theme(e.value)}))
    return editor


def status_badge(status: str) -> ui.badge:
    """A coloured badge; `update_status_badge` changes its status later."""
    return with_props(ui.badge(status, color=STATUS_COLORS.get(status, "grey")), {"data-status": status})


def update_status_badge(badge: ui.badge, status: str) -> None:
    badge.set_text(status)
    with_props(badge, {"color": STATUS_COLORS.get(status, "grey"), "data-status": status})


def run_status_badge(status: str) -> ui.badge:
    return with_props(ui.badge(status, color=RUN_STATUS_COLORS.get(status, "grey")), {"data-status": status})


# Images are dropped too: agent output could otherwise make the browser fetch a remote URL
# (a way to leak what the page shows), and a broken image helps nobody.
SAFE_TAGS = nh3.ALLOWED_TAGS - {"img"}


def sanitize_html(html: str) -> str:
    """Agent and LLM output is untrusted: keep formatting tags, drop scripts, handlers, images."""
    return nh3.clean(html, tags=SAFE_TAGS, link_rel="noopener noreferrer nofollow")


# CommonMark plus GitHub's tables and strikethrough. A single newline is a line break, as in chat
# apps: agents write lists of files one per line. Raw HTML in the text is shown as text.
_MARKDOWN = MarkdownIt("commonmark", {"breaks": True, "html": False}).enable(["table", "strikethrough"])


def render_markdown(text: str) -> str:
    return _MARKDOWN.render(text)


def safe_markdown(text: str) -> ui.html:
    """Untrusted markdown, rendered with its raw HTML escaped and then sanitized on the server all the
    same; styled like `ui.markdown`."""
    html = _cached_safe_html(text) if len(text) <= _CACHED_TEXT_CHARS else sanitize_html(render_markdown(text))
    return ui.html(html, sanitize=False).classes("nicegui-markdown")  # sanitized just above


# Rendered and sanitized once per text, not once per open tab (a live message reaches every tab
# showing the thread); the cache holds the sanitized HTML, of short texts only (bounded memory).
_CACHED_TEXT_CHARS = 16_384


@functools.lru_cache(maxsize=512)
def _cached_safe_html(text: str) -> str:
    return sanitize_html(render_markdown(text))


def demo_model_chip() -> ui.chip:
    return (
        ui.chip(DEMO_MODEL_LABEL, icon="science", color="amber-3", text_color="grey-10")
        .props("dense square")
        .tooltip("The offline demo model: canned, deterministic answers, no network, no cost.")
    )
