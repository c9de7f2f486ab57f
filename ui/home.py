"""The landing page (the real agents board replaces it with the dashboard issue)."""

from __future__ import annotations

from nicegui import APIRouter, run, ui

from core.services import get_services
from core.version import VERSION

router = APIRouter()


@router.page("/")
async def home() -> None:
    services = get_services()
    ui.label("AgentDeck").classes("text-3xl font-bold")
    ui.label(f"version {VERSION}").classes("text-sm text-gray-500")
    counts = await run.io_bound(services.workspaces.counts)
    with ui.row():
        ui.label(f"Workspaces: {counts['workspaces']}").props("data-testid=count-workspaces")
        ui.label(f"Agents: {counts['agents']}").props("data-testid=count-agents")
    ui.label("Health: ok").props("data-testid=health")
