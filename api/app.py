"""The REST API installed into NiceGUI's FastAPI app: one call from main.py, `install_api`.

Why routers in the one app instead of a sub-app mounted at /api: `/openapi.json` and `/docs`
then describe every route (REST and the /ws streams), WebSocket routes and NiceGUI pages keep
their own paths, and the error handlers and middleware are registered once.

NiceGUI answers unmatched paths with its HTML 404 page (or the root page), so the last API route
is a catch-all under /api that answers JSON 404 — or 405 when the path exists with another
method. Everything it would shadow must be registered before it: add a new router to `ROUTERS`,
never `app.include_router` an /api router from elsewhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api import (
    agents,
    analytics,
    bundles,
    context,
    events,
    health,
    llm_calls,
    llm_profiles,
    messages,
    metrics,
    run_inputs,
    runs,
    templates,
    workspaces,
    ws,
)
from api.errors import install_error_handlers
from api.lane import install_api_lane
from api.limits import BodySizeLimit, RateLimit, parse_rate_limit
from core.config import Settings

# Every API router, in order. Adding one is one line here. A request is matched against the routes
# one by one (each try costs a few µs in FastAPI), so the paths agents write to in bursts come
# first: a message POST matched first costs 0.24 ms less CPU than in sixth place (in-process A/B).
ROUTERS: list[APIRouter] = [
    messages.router,
    health.router,
    workspaces.router,
    ws.router,
    agents.router,
    context.router,
    runs.router,
    run_inputs.router,
    events.router,
    llm_profiles.router,
    analytics.router,
    llm_calls.router,
    metrics.router,
    templates.router,
    bundles.router,
]

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

# Host names a loopback-bound server answers to (DNS rebinding: any other name is refused).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_BINDS = {"", "0.0.0.0", "::"}


def allowed_hosts(settings: Settings) -> list[str]:
    """Loopback names, the bound address (unless a wildcard) and AGENTDECK_ALLOWED_HOSTS."""
    hosts = list(LOOPBACK_NAMES)
    if settings.host not in WILDCARD_BINDS:
        hosts.append(settings.host)
    hosts += [h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()]
    return list(dict.fromkeys(hosts))


def install_host_checks(app: FastAPI, settings: Settings) -> None:
    """Host header on every request (Starlette's TrustedHostMiddleware) and the Origin of every
    request that has one — the socket.io handshake, /ws streams, form posts — against the same
    names, so a page on another site (or a rebound DNS name) can neither read nor drive the app."""
    hosts = allowed_hosts(settings)
    app.add_middleware(OriginCheck, allowed=hosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)


class OriginCheck:
    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {h.strip("[]") for h in allowed}
        self.any = "*" in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or self.any:
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is None or self._allowed(origin):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
            return
        await PlainTextResponse("origin not allowed", status_code=403)(scope, receive, send)

    def _allowed(self, origin: str) -> bool:
        try:
            host = urlsplit(origin).hostname
        except ValueError:
            return False
        return host is not None and host.lower() in self.allowed


# The middlewares API requests go through (api/lane.py); they run for the dashboard too.
API_GUARDS: tuple[type, ...] = (TrustedHostMiddleware, OriginCheck, metrics.HttpMetrics, BodySizeLimit, RateLimit)
# API answers only: compressed when the client asks and the body is worth it (see api/lane.py).
# On the event loop even for big bodies: Starlette hands bodies over 128 KiB to a worker thread, and
# that hop cost more CPU than level-1 compression of a 500-message page itself (server CPU per
# page 17 -> 14 ms, measured on bench/bench_ingest.py's walk).
API_GZIP = Middleware(GZipMiddleware, minimum_size=1024, compresslevel=1, thread_minimum_size=2**40)


def install_api(app: FastAPI, settings: Settings) -> None:
    """Routers, the JSON catch-all, error handlers, request guards and the API's lane past the
    dashboard's middlewares. Raises ValueError for a malformed `settings.rate_limit`."""
    rate_limit = parse_rate_limit(settings.rate_limit)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    for path in ("/api", "/api/{path:path}"):
        app.add_api_route(path, api_not_found, methods=_METHODS, include_in_schema=False)
    # The last one added runs first: oversized bodies are refused before they count as requests.
    if rate_limit is not None:
        app.add_middleware(RateLimit, limit=rate_limit)
    app.add_middleware(BodySizeLimit, max_body=settings.max_body, exempt=frozenset({bundles.IMPORT_PATH}))
    # Outermost: every request is measured, refused ones (413, 429) included.
    app.add_middleware(metrics.HttpMetrics)
    install_host_checks(app, settings)
    install_api_lane(app, API_GUARDS, api=[API_GZIP])


async def api_not_found(request: Request) -> JSONResponse:
    allowed = _allowed_methods(request)
    if allowed:
        return JSONResponse({"detail": "method not allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)})
    return JSONResponse({"detail": f"no API route {request.url.path}"}, status_code=404)


def _allowed_methods(request: Request) -> list[str]:
    """The methods some other route accepts on this path (only computed on this error path)."""
    routes = [route for route in request.app.router.routes if not _is_catch_all(route)]
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def _is_catch_all(route: BaseRoute) -> bool:
    return getattr(route, "endpoint", None) is api_not_found
