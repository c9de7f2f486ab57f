"""Dashboard login (SPEC §8): one shared password, a signed session, a middleware in front of pages.

Only active when a password is configured (main.py refuses a non-loopback bind without one).
The middleware sends every unauthenticated page request to `/login?redirect_to=...`; NiceGUI's
own assets and socket (`/_nicegui*`), the REST API (`/api`) and the event stream (`/ws`) pass
through, because the API authenticates with its own bearer tokens.

The session holds an HMAC of the password keyed by the storage secret rather than a bare
"authenticated" flag: changing the password logs every browser out, and the server-side storage
file reveals nothing about the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from nicegui import APIRouter, app, ui
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from core.services import get_services
from ui.theme import apply_theme, brand

SESSION_KEY = "auth"
# Wrong guesses are checked one at a time and each one holds the lock this long, so a process
# answers at most one wrong password per WRONG_PASSWORD_DELAY seconds, however many clients try.
WRONG_PASSWORD_DELAY = 1.0
PUBLIC_PREFIXES = (
    "/_nicegui",
    "/_nicegui_ws",
    "/api",
    "/ws",
    # Prometheus scrapes with its own bearer token (api/metrics.py), never a dashboard session.
    "/metrics",
    "/login",
    "/logout",
    "/favicon.ico",
    "/docs",
    "/redoc",
    "/openapi.json",
)

router = APIRouter()
_guesses = asyncio.Lock()


def auth_enabled() -> bool:
    return bool(get_services().settings.password)


def _session_token(password: str) -> str:
    secret = (app.storage.secret or "").encode()
    return hmac.new(secret, password.encode(), hashlib.sha256).hexdigest()


def is_authenticated() -> bool:
    """True when no password is configured, or this browser's session holds a valid login."""
    password = get_services().settings.password
    if not password:
        return True
    token = app.storage.user.get(SESSION_KEY)
    return isinstance(token, str) and hmac.compare_digest(token, _session_token(password))


async def check_password(candidate: str) -> bool:
    password = get_services().settings.password or ""
    async with _guesses:
        ok = bool(password) and hmac.compare_digest(candidate.encode(), password.encode())
        if not ok:
            await asyncio.sleep(WRONG_PASSWORD_DELAY)
    return ok


def safe_target(path: str | None) -> str:
    """Only same-site paths: `//host` and `/\\host` would leave the site (an open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")) or _is_public(path):
        return "/"
    return path


def _is_public(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PUBLIC_PREFIXES)


class AuthMiddleware(BaseHTTPMiddleware):
    """Redirects unauthenticated page requests to /login; installed only when a password is set.

    Must be added before `ui.run` so that it runs inside NiceGUI's session middleware.
    """

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if _is_public(path) or is_authenticated():
            return await call_next(request)
        if request.method not in {"GET", "HEAD"}:
            return PlainTextResponse("login required", status_code=401)
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?redirect_to={quote(target, safe='')}", status_code=303)


@router.page("/login", title="Sign in · AgentDeck")
def login(redirect_to: str = "/") -> RedirectResponse | None:
    target = safe_target(redirect_to)
    if is_authenticated():
        return RedirectResponse(target, status_code=303)
    apply_theme()

    async def try_login() -> None:
        button.disable()
        try:
            ok = await check_password(password.value or "")
        finally:
            button.enable()
        if ok:
            app.storage.user[SESSION_KEY] = _session_token(get_services().settings.password or "")
            ui.navigate.to(target)
        else:
            password.value = ""  # clears any error (auto-validation), so set the error after it
            password.error = "Wrong password"

    with ui.column().classes("absolute-center items-center gap-6 w-full max-w-sm px-4"):
        brand(size="text-3xl")
        with ui.card().classes("w-full p-6 gap-4 shadow-lg rounded-xl"):
            with ui.column().classes("gap-1"):
                ui.label("Sign in").classes("text-lg font-semibold")
                ui.label("This dashboard is protected by a password.").classes("text-sm text-slate-500")
            password = (
                ui.input("Password", password=True, password_toggle_button=True)
                .props("outlined autofocus")
                .classes("w-full")
                .mark("password")
                .on("keydown.enter", try_login)
            )
            button = ui.button("Sign in", on_click=try_login).props("unelevated").classes("w-full").mark("sign-in")
    return None


@router.get("/logout", include_in_schema=False)
async def logout() -> RedirectResponse:
    # Only the login is dropped: the workspace choice and dark mode stay with the browser.
    app.storage.user.pop(SESSION_KEY, None)
    return RedirectResponse("/login", status_code=303)


def install() -> None:
    """Wire the middleware; call before `ui.run` and only when a password is configured."""
    app.add_middleware(AuthMiddleware)
