"""GET /metrics (Prometheus text format) and the middleware that measures every HTTP request.

Who may scrape: anyone when the server is bound to a loopback address (it is a local server);
on any other bind only a caller with `Authorization: Bearer <AGENTDECK_METRICS_TOKEN>` (401
otherwise, and 401 when no metrics token is configured: nothing is served openly on a network).

The series themselves are defined in core/metrics.py; shared state (runs by status, event-log head,
dashboard clients) is read at scrape time through the reader installed here.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ServicesDep
from core import metrics
from core.errors import DomainError
from core.services import Services

router = APIRouter(tags=["metrics"])


def is_loopback_bind(host: str) -> bool:
    if host in {"localhost", ""}:
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scrape_allowed(services: Services, authorization: str | None) -> bool:
    """Open on loopback binds; elsewhere `AGENTDECK_METRICS_TOKEN` or an admin API token."""
    settings = services.settings
    if is_loopback_bind(settings.host):
        return True
    if not authorization:
        return False
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return False
    expected = settings.metrics_token
    if expected and hmac.compare_digest(secret.encode(), expected.encode()):
        return True
    try:
        return services.tokens.authenticate(secret).admin
    except DomainError:
        return False


@router.get("/metrics", include_in_schema=False)
def scrape(request: Request, services: ServicesDep) -> Response:
    if not scrape_allowed(services, request.headers.get("authorization")):
        return JSONResponse(
            {
                "detail": "metrics need `Authorization: Bearer <AGENTDECK_METRICS_TOKEN or an admin token>` on this address"
            },
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if _reader_services is not services:
        install_state_reader(services)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


_reader_services: Services | None = None


def install_state_reader(services: Services) -> None:
    """Scrapes read runs by status and the event bus's lag from these services."""
    global _reader_services
    _reader_services = services

    def read() -> dict[str, Any]:
        state = metrics.database_state(services.db, services.bus.pumped_seq if services.bus.running else None)
        state["event_subscribers"] = services.bus.subscriber_count
        from nicegui import Client

        state["dashboard_clients"] = sum(1 for c in list(Client.instances.values()) if c.has_socket_connection)
        return state

    metrics.STATE.set_reader(read)


class HttpMetrics:
    """Pure ASGI: counts each HTTP request by method, route template and status, and its latency;
    keeps the number of open API WebSocket streams. Unmatched paths share one label (`unmatched`)
    so a scanner cannot blow up the number of series."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope.get("path", "").startswith("/ws/"):
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.observe_http(scope.get("method", ""), route, status, time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False

        async def send_accept(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                metrics.websocket_opened()
            await send(message)

        try:
            await self.app(scope, receive, send_accept)
        finally:
            if accepted:
                metrics.websocket_closed()
