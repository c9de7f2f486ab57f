"""Dashboard auth (SPEC §8): with a password, every page needs a login; the API, the event stream
and NiceGUI's own assets are left to their own auth."""

from __future__ import annotations

import sys

import pytest
from nicegui import ui
from nicegui.testing import User

from tests.ui.running_app import app_services
from tests.waiting import eventually
from ui.auth import safe_target

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.dashboard_password(PASSWORD)


def password_field(user: User) -> ui.input:
    return next(iter(user.find(marker="password").elements))  # type: ignore[return-value]


async def sign_in(user: User, password: str) -> None:
    user.find(marker="password").type(password)
    user.find(marker="sign-in").click()


async def test_a_page_without_login_redirects_to_the_login_page(user: User) -> None:
    await user.open("/")
    await user.should_see(marker="password")
    await user.should_not_see(marker="page-title")


async def test_a_wrong_password_is_refused_with_an_error(user: User) -> None:
    await user.open("/")
    await sign_in(user, "guess")
    await eventually(lambda: password_field(user).error == "Wrong password")
    await user.open("/")
    await user.should_see(marker="password")  # still not logged in


async def test_the_right_password_lands_on_the_page_first_asked_for(user: User) -> None:
    @ui.page("/elsewhere")
    def elsewhere() -> None:
        ui.label("the page behind the login")

    await user.open("/elsewhere?tab=2")
    await user.should_see(marker="password")
    await sign_in(user, PASSWORD)
    await user.should_see("the page behind the login", retries=30)

    await user.open("/")
    await user.should_see(marker="page-title")
    await user.should_see(marker="logout")


async def test_logout_ends_the_session(user: User) -> None:
    await user.open("/")
    await sign_in(user, PASSWORD)
    await user.should_see(marker="logout", retries=30)

    user.find(marker="logout").click()
    await user.should_see(marker="password", retries=30)
    await user.open("/")
    await user.should_see(marker="password")


async def test_api_assets_and_login_need_no_dashboard_login(user: User) -> None:
    # /api/health is 503 until the app's startup handlers have run (they run as tasks).
    await eventually(lambda: app_services().ready, timeout=60)
    health = await user.http_client.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    login = await user.http_client.get("/login")
    assert login.status_code == 200
    page = await user.http_client.get("/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?redirect_to=%2F"


async def test_a_non_get_request_without_login_is_refused(user: User) -> None:
    response = await user.http_client.post("/", follow_redirects=False)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "",
        "/logout",
        "/%09/evil.example",
        "/\t/evil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        "/ /evil.example",
    ],
)
def test_the_redirect_after_login_never_leaves_the_site(target: str) -> None:
    assert safe_target(target) == "/"


def test_a_local_redirect_target_is_kept() -> None:
    assert safe_target("/runs/abc?tab=2") == "/runs/abc?tab=2"


async def test_the_login_page_sends_a_logged_in_user_on(user: User) -> None:
    await user.open("/")
    await sign_in(user, PASSWORD)
    await user.should_see(marker="page-title", retries=30)
    response = await user.http_client.get("/login?redirect_to=%2Fruns", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs"


async def test_wrong_guesses_are_throttled_per_address_without_locking_out_others(user: User) -> None:
    auth = sys.modules["ui.auth"]  # the module main.py imported for this app, not a stale copy
    settings = app_services().settings
    attacker, owner = "203.0.113.7", "198.51.100.2"
    for _ in range(10):  # the default limit: 10 wrong passwords a minute per address
        assert await auth.check_password(settings, "guess", attacker) is False
    with pytest.raises(auth.TooManyAttempts):
        await auth.check_password(settings, PASSWORD, attacker)  # even the right one, from there, for now
    assert await auth.check_password(settings, PASSWORD, owner) is True  # the real user is not locked out
    assert await auth.check_password(settings, "typo", owner) is False


async def test_docs_and_the_schema_need_the_login(user: User) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        response = await user.http_client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login")


async def test_a_session_is_server_side_new_at_login_and_gone_at_logout(user: User) -> None:
    from nicegui import app

    auth = sys.modules["ui.auth"]
    await user.open("/")
    app.storage.user[auth.SESSION_KEY] = "chosen-by-an-attacker"  # fixation: not a session the server knows
    await user.open("/")
    await user.should_see(marker="password")
    await sign_in(user, PASSWORD)
    await user.should_see(marker="page-title", retries=30)
    session_id = app.storage.user[auth.SESSION_KEY]
    assert session_id != "chosen-by-an-attacker"
    assert session_id not in str(dict(app.storage.general)), "only a keyed hash is stored server-side"

    user.find(marker="logout").click()
    await user.should_see(marker="password", retries=30)
    app.storage.user[auth.SESSION_KEY] = session_id  # replaying the old id does not log back in
    await user.open("/")
    await user.should_see(marker="password")
