"""Guards in front of the API, as pure ASGI middleware: they run before routing, parsing or any
database work, so a refused request costs next to nothing.

- `BodySizeLimit`: an /api request body over `max_body` bytes is answered 413 — at once when its
  Content-Length says so, or as soon as the bytes of a chunked body pass the limit.
- `RateLimit`: a moving window per token (`limits`, in memory, per process) over /api requests
  and /ws handshakes; over it → 429 with Retry-After. Requests without a token count against
  their client address. /api/health is exempt: load balancers and start-up probes poll it.

The token is hashed for the key, not checked: checking needs the database, and a request with
a wrong token only ever gets a 401 anyway.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from urllib.parse import parse_qs

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import is_api_path

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
            or self.limiter.hit(self.limit, rate_key(scope))
        ):
            await self.app(scope, receive, send)
            return
        reset_at = self.limiter.get_window_stats(self.limit, rate_key(scope)).reset_time
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


def rate_key(scope: Scope) -> str:
    """`token:<sha256>` for a request that carries a token, else `ip:<client address>`."""
    scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
    secret = credentials.strip() if scheme.lower() == "bearer" else ""
    if not secret and scope["type"] == "websocket":
        secret = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
    if secret:
        return "token:" + hashlib.sha256(secret.encode()).hexdigest()
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _too_large(max_body: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": BodyTooLarge(max_body).detail}, status_code=413)
    await response(scope, receive, send)
