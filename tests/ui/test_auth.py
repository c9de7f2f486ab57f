"""Dashboard auth (SPEC §8): with a password, every page needs a login; the API, the event stream
and NiceGUI's own assets are left to their own auth."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from nicegui import ui
from nicegui.testing import User

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


@pytest.mark.parametrize("target", ["//evil.example", "/\\evil.example", "https://evil.example/", "", "/logout"])
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


async def test_wrong_guesses_are_answered_one_at_a_time(user: User) -> None:
    auth = sys.modules["ui.auth"]  # the module main.py imported for this app, not a stale copy
    started = time.monotonic()
    results = await asyncio.gather(auth.check_password("guess 1"), auth.check_password("guess 2"))
    assert results == [False, False]
    assert time.monotonic() - started >= 2 * auth.WRONG_PASSWORD_DELAY * 0.9
    assert await auth.check_password(PASSWORD) is True
