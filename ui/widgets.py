"""Small widgets shared by the dashboard pages."""

from __future__ import annotations

import nh3
from nicegui import ui

from core.runtime_labels import DEMO_MODEL_LABEL

STATUS_COLORS: dict[str, str] = {
    "idle": "grey-6",
    "initializing": "blue-5",
    "active": "positive",
    "busy": "warning",
    "error": "negative",
    "offline": "blue-grey-8",
}

RUN_STATUS_COLORS: dict[str, str] = {
    "queued": "grey-6",
    "running": "primary",
    "completed": "positive",
    "failed": "negative",
    "cancelled": "blue-grey-6",
    "interrupted": "orange-8",
}


def status_badge(status: str) -> ui.badge:
    """A coloured badge; call `.set_text()`/`.props(f"color=...")` via `update_status_badge`."""
    return ui.badge(status, color=STATUS_COLORS.get(status, "grey")).props(f"data-status={status}")


def update_status_badge(badge: ui.badge, status: str) -> None:
    badge.set_text(status)
    badge.props(f"color={STATUS_COLORS.get(status, 'grey')} data-status={status}")


def run_status_badge(status: str) -> ui.badge:
    return ui.badge(status, color=RUN_STATUS_COLORS.get(status, "grey")).props(f"data-status={status}")


# Images are dropped too: agent output could otherwise make the browser fetch a remote URL
# (a way to leak what the page shows), and a broken image helps nobody.
SAFE_TAGS = nh3.ALLOWED_TAGS - {"img"}


def sanitize_html(html: str) -> str:
    """Agent and LLM output is untrusted: keep formatting tags, drop scripts, handlers, images."""
    return nh3.clean(html, tags=SAFE_TAGS, link_rel="noopener noreferrer nofollow")


def safe_markdown(text: str) -> ui.markdown:
    """Untrusted markdown, rendered and then sanitized on the server (never raw HTML)."""
    return ui.markdown(text, sanitize=sanitize_html)


def demo_model_chip() -> ui.chip:
    return (
        ui.chip(DEMO_MODEL_LABEL, icon="science", color="amber-3", text_color="grey-10")
        .props("dense square")
        .tooltip("The offline demo model: canned, deterministic answers, no network, no cost.")
    )
