"""The page's dark-mode element, for parts that redraw themselves when it flips (charts, JSON
editors). The frame (ui/theme.py) creates it; widgets find it here without importing the frame."""

from __future__ import annotations

from nicegui import context, ui


def page_dark_mode() -> ui.dark_mode | None:
    """The frame's dark-mode element of this page, for parts that redraw themselves when it flips."""
    for element in context.client.elements.values():
        if isinstance(element, ui.dark_mode):
            return element
    return None
