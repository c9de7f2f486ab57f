"""Dashboard login (SPEC §8, issue 12): one shared password, server-side sessions, a middleware in
front of pages.

Only active when a password is configured (main.py refuses a non-loopback bind without one).
The middleware sends every unauthenticated page request to `/login?redirect_to=...`; NiceGUI's
own assets and socket (`/_nicegui*`) and the REST API (`/api`, `/ws`: their own bearer tokens)
pass through. `/docs`, `/redoc` and `/openapi.json` need the login.

- Wrong passwords are counted per client address with `limits` (AGENTDECK_LOGIN_RATE_LIMIT,
  default 10/minute): past it that address is refused until the window moves on. There is no
  global lock, so a brute-forcer cannot lock the real user (another address) out.
- A login creates a new random session id, kept server-side (its SHA-256, with an expiry of
  AGENTDECK_SESSION_SECONDS) in NiceGUI's general storage; the browser's storage holds the id
  only. A session id set before the login (fixation) is never one the server knows. Changing
  the password invalidates every session (the record is keyed with an HMAC of the password).
- Logout deletes the server-side session and sends every open tab of that browser to /login.
- Redirect targets after login are plain same-origin paths only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from urllib.parse import quote, unquote, urlsplit

import limits
from fastapi import Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from nicegui import APIRouter, Client, app, ui
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from core.config import Settings
from ui.state import app_services
from ui.theme import apply_theme, brand

SESSION_KEY = "auth"
SESSIONS_KEY = "auth_sessions"
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
)

router = APIRouter()
_limiter = MovingWindowRateLimiter(MemoryStorage())


def _login_limit(settings: Settings) -> limits.RateLimitItem:
    return limits.parse(settings.login_rate_limit)


def _record_key(settings: Settings, session_id: str) -> str:
    """What the server stores for a session: an HMAC of its id, keyed by the password."""
    password = (settings.password or "").encode()
    return hmac.new(password, session_id.encode(), hashlib.sha256).hexdigest()


def _sessions() -> dict[str, float]:
    sessions = app.storage.general.get(SESSIONS_KEY)
    if not isinstance(sessions, dict):
        sessions = {}
        app.storage.general[SESSIONS_KEY] = sessions
    return sessions


def start_session(settings: Settings) -> str:
    """A new server-side session for this browser (its id replaces whatever the browser held)."""
    session_id = secrets.token_urlsafe(32)
    now = time.time()
    sessions = {k: v for k, v in _sessions().items() if isinstance(v, int | float) and v > now}
    sessions[_record_key(settings, session_id)] = now + settings.session_seconds
    app.storage.general[SESSIONS_KEY] = sessions
    app.storage.user[SESSION_KEY] = session_id
    return session_id


def end_session(settings: Settings) -> None:
    session_id = app.storage.user.pop(SESSION_KEY, None)
    if isinstance(session_id, str):
        sessions = dict(_sessions())
        sessions.pop(_record_key(settings, session_id), None)
        app.storage.general[SESSIONS_KEY] = sessions


def is_authenticated(settings: Settings) -> bool:
    """True when no password is configured, or this browser holds a live server-side session."""
    if not settings.password:
        return True
    session_id = app.storage.user.get(SESSION_KEY)
    if not isinstance(session_id, str):
        return False
    expires = _sessions().get(_record_key(settings, session_id))
    return isinstance(expires, int | float) and expires > time.time()


class TooManyAttempts(Exception):
    pass


async def check_password(settings: Settings, candidate: str, client_address: str = "unknown") -> bool:
    """Compare in constant time; wrong guesses count against the client's address only."""
    limit = _login_limit(settings)
    key = f"login:{client_address}"
    if not _limiter.test(limit, key):
        raise TooManyAttempts
    password = settings.password or ""
    ok = bool(password) and hmac.compare_digest(candidate.encode(), password.encode())
    if not ok:
        _limiter.hit(limit, key)
    return ok


def safe_target(path: str | None) -> str:
    """Only plain same-origin paths: no scheme or host, no `//` or `\\` start, no control or
    space characters (browsers drop a tab, so `/%09/evil.example` would become `//evil.example`)."""
    if not path or not path.startswith("/") or _is_public(path):
        return "/"
    decoded = unquote(path)
    if any(unicodedata.category(c)[0] in {"C", "Z"} for c in decoded) or "\\" in decoded:
        return "/"
    if decoded.startswith("//") or path.startswith("//"):
        return "/"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return "/"
    return path


def _is_public(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PUBLIC_PREFIXES)


class AuthMiddleware:
    """Redirects unauthenticated page requests to /login; installed only when a password is set.

    Pure ASGI (a `BaseHTTPMiddleware` runs the rest of every request in a new task). Must be added
    before `ui.run` so that it runs inside NiceGUI's session middleware.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_public(scope["path"]) or is_authenticated(self.settings):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response: Response
        if request.method not in {"GET", "HEAD"}:
            response = PlainTextResponse("login required", status_code=401)
        else:
            path = request.url.path
            target = path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(f"/login?redirect_to={quote(target, safe='')}", status_code=303)
        await response(scope, receive, send)


@router.page("/login", title="Sign in · AgentDeck")
def login(redirect_to: str = "/") -> RedirectResponse | None:
    settings = app_services().settings
    target = safe_target(redirect_to)
    if is_authenticated(settings):
        return RedirectResponse(target, status_code=303)
    apply_theme()

    request = ui.context.client.request
    address = request.client.host if request is not None and request.client else "unknown"

    async def try_login() -> None:
        button.disable()
        try:
            ok = await check_password(settings, password.value or "", address)
        except TooManyAttempts:
            password.value = ""
            password.error = "Too many wrong passwords from this address: wait a minute"
            return
        finally:
            button.enable()
        if ok:
            start_session(settings)
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
async def logout(request: Request) -> RedirectResponse:
    # Only the login is dropped: the workspace choice and dark mode stay with the browser.
    end_session(app_services().settings)
    close_browser_clients(request.session.get("id"))
    return RedirectResponse("/login", status_code=303)


def close_browser_clients(browser_id: object) -> int:
    """Send every open tab of this browser to /login (their pages were opened while logged in)."""
    if not browser_id:
        return 0
    closed = 0
    for client in list(Client.instances.values()):
        request = client.request
        if request is None or request.session.get("id") != browser_id:
            continue
        with client:
            ui.navigate.to("/login")
        closed += 1
    return closed


def install(settings: Settings) -> None:
    """Wire the middleware; call before `ui.run` and only when `settings` has a password."""
    app.add_middleware(AuthMiddleware, settings=settings)
