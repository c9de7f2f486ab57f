"""What tests reach of the app that NiceGUI's `user` fixture runs: its services, which main.py's
`serve` puts in the app's state (the dashboard's pages get them from there too)."""

from __future__ import annotations

from nicegui import app

from core.services import Services


def app_services() -> Services:
    """The running app's services; only while a `user` test's app is up."""
    services: Services = app.state.services
    return services
