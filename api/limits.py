"""Guards in front of the API, as pure ASGI middleware: they run before routing, parsing or any
database work, so a refused request costs next to nothing.

- `BodySizeLimit`: an /api request body over `max_body` bytes is answered 413 — at once when its
  Content-Length says so, or as soon as the bytes of a chunked body pass the limit.
- `RateLimit`: a moving window (`limits`, in memory, per process) over /api requests and /ws
  handshakes; over it → 429 with Retry-After. /api/health is exempt: load balancers and start-up
  probes poll it.

The key is the token only once the token has been validated (it is in TokenService's cache of
valid tokens); every other request — no token, a wrong one, or one not checked yet — counts
against its client address: it is let through only while the address has budget left, and a
401 counts against the address (anything else against the token). So a fresh bogus token per
request gains nothing: the failures share the client's budget, and past it they are refused
before any database read; a good token's first request costs its address nothing.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import is_api_path

if TYPE_CHECKING:
    from core.services import Services

RATE_LIMITED_PREFIXES = ("/api/", "/ws/")
RATE_LIMIT_EXEMPT = frozenset({"/api/health"})


def parse_rate_limit(text: str) -> limits.RateLimitItem | None:
    """`"600/minute"` → the limit; `"off"` → None. Anything else is a ValueError that says why."""
    if text.strip().lower() == "off":
        return None
    try:
        return limits.parse(text)
    except ValueError as exc:
        raise ValueError(f"rate limit {text!r} is not like '600/minute' (or 'off' to disable)") from exc


class BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI re-raises it from body parsing instead of calling it a 400.
    def __init__(self, max_body: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {max_body} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_body = max_body
        # Routes that enforce a limit of their own while streaming (bundle import).
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]) or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await _too_large(self.max_body, scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Normally FastAPI's exception middleware answers it; this covers apps that don't.
            if started:
                raise
            await _too_large(self.max_body, scope, receive, send)


class RateLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit: limits.RateLimitItem,
        exempt: Iterable[str] = RATE_LIMIT_EXEMPT,
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] not in {"http", "websocket"}
            or not path.startswith(RATE_LIMITED_PREFIXES)
            or path in self.exempt
        ):
            await self.app(scope, receive, send)
            return
        key, token_key = rate_keys(scope)
        if token_key is None or key == token_key:
            # No token, or one validated recently: count it now against its own key.
            if self.limiter.hit(self.limit, key):
                await self.app(scope, receive, send)
            else:
                await self._refuse(key, scope, receive, send)
            return
        # A token not validated yet: only allowed while its address has budget left; a refusal
        # (401) counts against the address, anything else against the token.
        if not self.limiter.test(self.limit, key):
            await self._refuse(key, scope, receive, send)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] in {"http.response.start", "websocket.http.response.start"}:
                status = message.get("status", 0)
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            self.limiter.hit(self.limit, key if status == 401 else token_key)

    async def _refuse(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        reset_at = self.limiter.get_window_stats(self.limit, key).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        response = JSONResponse(
            {"detail": f"rate limit of {self.limit} exceeded: retry in {retry_after} s"},
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008, "reason": "rate limit exceeded"})
            return
        await response(scope, receive, send)


def rate_keys(scope: Scope) -> tuple[str, str | None]:
    """(the key to check now, the token's own key or None). The first is `token:<sha256>` for a
    token validated recently, else `ip:<address>`."""
    scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
    secret = credentials.strip() if scheme.lower() == "bearer" else ""
    if not secret and scope["type"] == "websocket":
        secret = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
    address = "ip:" + client_address(scope)
    if not secret or len(secret) > 200:
        return address, None
    token_key = "token:" + hashlib.sha256(secret.encode()).hexdigest()
    return (token_key if _validated(scope, token_key[6:]) else address), token_key


def rate_key(scope: Scope) -> str:
    """`token:<sha256>` for a request whose token was validated recently, else `ip:<address>`."""
    return rate_keys(scope)[0]


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _validated(scope: Scope, secret_hash: str) -> bool:
    # The token cache is that of the app serving the request (Starlette puts itself in the scope);
    # a scope without one (an app not started by main.py) knows no validated token.
    state = getattr(scope.get("app"), "state", None)
    services: Services | None = getattr(state, "services", None)
    return services is not None and services.tokens.cached(secret_hash) is not None


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _too_large(max_body: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": BodyTooLarge(max_body).detail}, status_code=413)
    await response(scope, receive, send)


class Slots:
    """Open connections per key (a token), capped; in memory, per process."""

    def __init__(self) -> None:
        self._open: dict[object, int] = {}

    def acquire(self, key: object, limit: int) -> bool:
        # Called on the event loop only: no lock needed.
        if self._open.get(key, 0) >= limit:
            return False
        self._open[key] = self._open.get(key, 0) + 1
        return True

    def release(self, key: object) -> None:
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)


WS_SLOTS = Slots()
