"""The dashboard login in Chromium (issue 12, point 6), against a real server with a password.

- Logout in one tab sends every other open tab of that browser to the login page and ends the
  session for all of them; another browser's session and open page are left alone.
- Wrong passwords typed into the login form are throttled per client address: past the limit
  that address is refused even the right password, while another address still signs in. The
  second address is real: its pages go through `LoopbackRelay`, which connects from 127.0.0.2.

DOM hooks: the login form's "Password" field and "Sign in" button, the header's "Log out" and
"Dark mode" buttons (ARIA labels), the field's error (Quasar gives it role "alert").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.app_process import AppProcess
from tests.browser.conftest import PAGE_TIMEOUT_MS, VIEWPORT
from tests.browser.relay import LoopbackRelay

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
# An hour's window: however slowly this machine types, the wrong guesses all fall inside it.
WRONG_GUESSES_ALLOWED = 3
LOGIN_URL = re.compile(r"/login(\?|$)")
THROTTLED = "Too many wrong passwords from this address"

# Every navigation this document starts (the Navigation API fires `navigate` synchronously when
# NiceGUI's `open` message calls window.open(url, '_self')); a reload replaces the list itself.
RECORD_NAVIGATIONS_JS = """() => {
  window.__navigations = [];
  navigation.addEventListener('navigate', e => window.__navigations.push(e.destination.url));
}"""


@pytest.fixture(scope="module")
def locked_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    data_dir = tmp_path_factory.mktemp("login-app") / "data"
    env = {
        "AGENTDECK_PASSWORD": PASSWORD,
        "AGENTDECK_LOGIN_RATE_LIMIT": f"{WRONG_GUESSES_ALLOWED}/hour",
        "AGENTDECK_RATE_LIMIT": "off",
    }
    with AppProcess(data_dir, env=env) as process:
        yield process


def sign_in(page: Page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page).to_have_url(LOGIN_URL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def submit(page: Page, password: str) -> None:
    """Type a password into a fresh field and send it. Typing clears the last error on the server
    (the input validates on every change), so the error that shows next is this attempt's."""
    field = page.get_by_label("Password")
    field.fill(password)
    expect(page.get_by_role("alert")).to_have_count(0)
    page.get_by_role("button", name="Sign in").click()


def test_logout_closes_that_browsers_tabs_and_leaves_another_browser_signed_in(
    locked_app: AppProcess, new_page: Callable[[], Page], browser: Browser
) -> None:
    base = locked_app.base_url
    tab_1 = new_page()
    sign_in(tab_1, base)
    tab_2 = tab_1.context.new_page()
    tab_2.goto(base + "/runs")  # the same browser: already signed in
    expect(tab_2.get_by_role("button", name="Log out")).to_be_visible()
    signed_in_cookies = tab_1.context.storage_state()

    other = new_page()
    sign_in(other, base)
    other.evaluate(RECORD_NAVIGATIONS_JS)

    tab_1.get_by_role("button", name="Log out").click()
    expect(tab_1).to_have_url(LOGIN_URL)
    # The other tab was never touched by the test: the server sent it to the login page.
    expect(tab_2).to_have_url(LOGIN_URL, timeout=PAGE_TIMEOUT_MS)
    expect(tab_2.get_by_label("Password")).to_be_visible()

    # Its session is gone server-side: neither that browser nor a copy of its cookies gets in.
    tab_2.goto(base + "/runs")
    expect(tab_2).to_have_url(LOGIN_URL)
    replay = browser.new_context(viewport=VIEWPORT, storage_state=signed_in_cookies)
    try:
        replayed = replay.new_page()
        replayed.goto(base + "/")
        expect(replayed).to_have_url(LOGIN_URL)
    finally:
        replay.close()

    # The other browser's page is still the one it had: a round trip over its own socket comes
    # back (an `open` sent to it at logout would have been handled before this answer) and the
    # document started no navigation. Its session still opens pages.
    other.get_by_role("button", name="Dark mode").click()
    expect(other.locator("body.body--dark")).to_have_count(1)
    assert other.evaluate("() => window.__navigations") == []
    other.goto(base + "/runs")
    expect(other).to_have_url(re.compile(r"/runs$"))
    expect(other.get_by_role("button", name="Log out")).to_be_visible()


def test_wrong_passwords_throttle_their_address_but_not_another(
    locked_app: AppProcess, new_page: Callable[[], Page]
) -> None:
    with LoopbackRelay(locked_app.port, source="127.0.0.2") as relay:
        attacker = new_page()
        attacker.goto(relay.base_url + "/login")
        for attempt in range(WRONG_GUESSES_ALLOWED):
            submit(attacker, f"guess {attempt}")
            expect(attacker.get_by_role("alert")).to_have_text("Wrong password")

        submit(attacker, PASSWORD)  # the right one, from that address, for now
        expect(attacker.get_by_role("alert")).to_contain_text(THROTTLED)
        attacker.goto(relay.base_url + "/")
        expect(attacker).to_have_url(LOGIN_URL)

        # The address is throttled, not the browser: a fresh one from there is refused too.
        again = new_page()
        again.goto(relay.base_url + "/login")
        submit(again, PASSWORD)
        expect(again.get_by_role("alert")).to_contain_text(THROTTLED)

        # Meanwhile the owner, at 127.0.0.1, is not locked out: a typo is just a typo.
        owner = new_page()
        owner.goto(locked_app.base_url + "/login")
        submit(owner, "typo")
        expect(owner.get_by_role("alert")).to_have_text("Wrong password")
        submit(owner, PASSWORD)
        expect(owner).not_to_have_url(LOGIN_URL, timeout=PAGE_TIMEOUT_MS)
        expect(owner.get_by_role("button", name="Log out")).to_be_visible()
