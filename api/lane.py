"""The API's own lane through the middleware stack.

NiceGUI wraps the whole app in middlewares that only its pages need: the session cookie
(`SessionMiddleware`, which signs and sets a cookie on every answer), `RequestTrackingMiddleware`
(which also creates a per-browser storage for every cookieless request), cache headers for its
assets, `X-Forwarded-Prefix` redirects, gzip at level 9, and our dashboard login (ui/auth.py).
Three of NiceGUI's are `BaseHTTPMiddleware`s, each running the rest of the request in a new task
with memory streams in between. Measured in-process, they took GET /api/health from 0.28 to 1.1
CPU ms, and a message POST from 3.1 to 4.3.

`ApiLane` is the outermost user middleware: requests for the API (`/api`, `/ws/...`, `/metrics`)
go straight to the guards (`api.app.API_GUARDS`: Host and Origin checks, metrics, body size
limit, rate limit) and the router; everything else goes through the dashboard's middlewares
first, then the same guards, exactly as before. Token authentication is a dependency of every API
route (api/deps.py), so it does not depend on the lane.

API answers keep a gzip of their own (when the client asks and the body is big enough), at level
1: a page of 500 messages, 200 KB, becomes 20 KB in 0.5 ms of CPU, where level 9 took 2.7 ms for
17 KB.

A middleware the API needs too must be one of `API_GUARDS` (and installed by `install_api`,
inside every other): every other middleware is skipped by API requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Paths served by the API lane: REST, its WebSocket streams and the Prometheus scrape.
API_PATHS = ("/api", "/metrics")
API_PREFIXES = ("/api/", "/ws/")


def is_api_lane(path: str) -> bool:
    return path in API_PATHS or path.startswith(API_PREFIXES)


class ApiLane:
    """API requests go through `api` (the API's own middlewares, e.g. its gzip) and skip
    `dashboard` (the middlewares only pages need); everything else — pages, NiceGUI's assets and
    socket, /docs, lifespan — goes through `dashboard`. Both end in `app`: the guards and the
    router."""

    def __init__(self, app: ASGIApp, dashboard: Sequence[Middleware], api: Sequence[Middleware] = ()) -> None:
        self.api = _wrap(app, api)
        self.dashboard = _wrap(app, dashboard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"} and is_api_lane(scope["path"]):
            await self.api(scope, receive, send)
        else:
            await self.dashboard(scope, receive, send)


def _wrap(app: ASGIApp, middleware: Sequence[Middleware]) -> ASGIApp:
    for cls, args, kwargs in reversed(middleware):
        app = cls(app, *args, **kwargs)
    return app


def install_api_lane(app: FastAPI, guards: tuple[type, ...], api: Sequence[Middleware] = ()) -> None:
    """Build `app`'s middleware stack with the lane in front; `api`: middlewares for API
    requests only. The stack is built on the first request (NiceGUI's middlewares are added by
    `ui.run`, after `install_api`), so the partition happens then, on whatever
    `app.user_middleware` holds."""
    original = type(app).build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        everything = list(app.user_middleware)
        dashboard = [m for m in everything if m.cls not in guards]
        shared = [m for m in everything if m.cls in guards]
        if everything != dashboard + shared:
            # A dashboard middleware inside a guard would be moved outside it: refuse to guess.
            names = [m.cls.__name__ for m in everything]  # type: ignore[attr-defined]
            raise RuntimeError(f"API guards must be the innermost middlewares, got {names}")
        app.user_middleware = [Middleware(ApiLane, dashboard=dashboard, api=api), *shared]
        try:
            return original(app)
        finally:
            app.user_middleware = everything

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
