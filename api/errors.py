"""The one place where core's domain errors become HTTP answers.

Every error is JSON `{"detail": ...}` (plus machine-readable extras for 409s):

    NotFound 404 · InvalidInput 422 · TooLarge 413 · Unauthorized 401 (+ WWW-Authenticate)
    InvalidTransition 409 {"detail", "current", "target", "allowed"}
    StaleVersion 409 {"detail", "current", "expected"} · Conflict 409

FastAPI's RequestValidationError keeps its default 422 `{"detail": [...]}` (a non-UTF-8 body echoed
in it is decoded with replacement characters instead of crashing the answer). A crash under
/api answers a JSON 500 instead of NiceGUI's plain text. On a WebSocket the same mapping refuses
the handshake with that HTTP answer, or, once accepted, closes with code 4000 + status.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketState

from core.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    StaleVersion,
    TooLarge,
    Unauthorized,
)

API_PREFIX = "/api"
_WRAPPED = "_agentdeck_api_json"


def status_of(exc: DomainError) -> int:
    # Most specific first: TooLarge is an InvalidInput; InvalidTransition and StaleVersion are
    # Conflicts, and every other DomainError (Conflict included) is a 409.
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, InvalidInput):
        return 422
    return 409


def body_of(exc: DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": exc.message}
    if isinstance(exc, InvalidTransition):
        body |= {"current": exc.current, "target": exc.target, "allowed": exc.allowed}
    elif isinstance(exc, StaleVersion):
        body |= {"current": exc.current, "expected": exc.expected}
    return body


def error_response(exc: DomainError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body_of(exc), status_code=status, headers=headers)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on `app`. Safe to call again (NiceGUI's test harness re-runs main.py)."""
    fallback = app.exception_handlers.get(Exception)
    if getattr(fallback, _WRAPPED, False):
        return

    async def domain_error(conn: HTTPConnection, exc: Exception) -> Response | None:
        assert isinstance(exc, DomainError)
        if conn.scope.get("nicegui_page_path") and fallback is not None:
            # A dashboard page that let a domain error escape gets NiceGUI's error page, not JSON.
            return await _call(fallback, conn, exc)
        if isinstance(conn, WebSocket) and conn.application_state == WebSocketState.CONNECTED:
            # A close reason may hold at most 123 bytes.
            await conn.close(code=4000 + status_of(exc), reason=exc.message.encode()[:120].decode(errors="ignore"))
            return None
        return error_response(exc)

    async def crash(request: Request, exc: Exception) -> Response:
        if is_api_path(request.url.path):
            # ServerErrorMiddleware re-raises after sending this, so the traceback is still logged.
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        if fallback is None:
            raise exc
        return await _call(fallback, request, exc)

    setattr(crash, _WRAPPED, True)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, crash)


async def invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, except that a body which is not UTF-8 (echoed back as `input`) cannot make
    the error answer itself crash: bytes are shown decoded with replacement characters."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", errors="replace")})
    return JSONResponse({"detail": errors}, status_code=422)


async def _call(handler: Callable[..., Any], conn: HTTPConnection, exc: Exception) -> Any:
    result = handler(conn, exc)
    return await result if inspect.isawaitable(result) else result
