"""The inbox: every request waiting for a person in the workspace (runs and chats), live."""

from __future__ import annotations

from nicegui import APIRouter, ui

from ui.inputs import InputPanel
from ui.palette import MUTED
from ui.state import app_services, current_workspace
from ui.theme import frame

router = APIRouter()


@router.page("/inputs")
async def inputs_page() -> None:
    services = app_services()
    workspace = current_workspace(services)
    with frame(services, "Waiting for you"):
        ui.label(
            "Runs and chats wait here for a person: answer for a role you play, or approve what an agent is about "
            "to publish."
        ).classes(f"text-sm {MUTED}")
        empty = ui.label("Nothing is waiting for you.").classes(f"text-sm {MUTED}").mark("inputs-empty")
        panel = InputPanel(services, workspace.id, on_change=lambda: empty.set_visibility(not panel.cards))
        await panel.start()
