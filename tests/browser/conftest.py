"""Real-browser fixtures: the app as a process, Debian's Chromium driven by Playwright, data set up
from the test process.

- `app` (session): `main.py` on a free port with its own data dir and SQLite database (always
  SQLite, even when TEST_DATABASE_URL points the rest of the suite at PostgreSQL).
- `app_services` (session): a second `Services` on the same database file. What it commits reaches
  the server's event bus through the log (polled about once a second on SQLite), so pages update
  live exactly as if another process or an API client had made the change.
- `seed` (session): a `Seed` for the "Browser tests" workspace. Its slug sorts first and it exists
  before any page is opened, so every new browser user lands in it (the header lists workspaces by
  slug and a new user gets the first). Other workspaces (the screenshots' one) are picked in the UI.
- `browser` (session): Chromium from /usr/bin/chromium, headless, with the flags of notes/nicegui.md.
- `user_a` / `user_b`: two pages in two browser contexts, i.e. two people with their own session
  cookie, at 1280x800. An uncaught JavaScript error in a page fails the test that opened it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from core.config import Settings
from core.schemas import AgentCreate, WorkspaceCreate, WorkspacePublic
from core.services import Services, build_services
from tests.app_process import AppProcess

CHROMIUM = os.environ.get("AGENTDECK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1280, "height": 800}
# How long a change made elsewhere may take to show up (the SQLite log is polled every ~1 s).
LIVE_TIMEOUT_MS = 8_000
# First load of a page (NiceGUI's assets are cached after the first one of a context).
PAGE_TIMEOUT_MS = 15_000


# -- the app and its data ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    data_dir = tmp_path_factory.mktemp("browser-app") / "data"
    process = AppProcess(data_dir, env={"AGENTDECK_RATE_LIMIT": "off"})
    with process:
        yield process
    log = process.log()
    if "Traceback" in log:
        print(f"--- app log ({process.log_path}) ---\n{log[-6000:]}")


@pytest.fixture(scope="session")
def app_services(app: AppProcess) -> Iterator[Services]:
    """A second Services on the app's SQLite file: what it commits reaches the app's bus."""
    settings = Settings(data_dir=app.data_dir, database_url=f"sqlite:///{app.data_dir / 'agentdeck.db'}")
    services = build_services(settings)
    yield services
    services.db.dispose()


@dataclass
class Seed:
    """Sets up data in one workspace of the running app, as another process would."""

    services: Services
    workspace: WorkspacePublic
    base_url: str

    @classmethod
    def create(cls, services: Services, base_url: str, slug: str, name: str) -> Seed:
        workspace = services.workspaces.create(WorkspaceCreate(slug=slug, name=name))
        return cls(services=services, workspace=workspace, base_url=base_url)

    def agent(
        self,
        name: str,
        definition: str = "assistant",
        *,
        context: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        created = self.services.agents.create(
            AgentCreate(
                workspace_id=self.workspace.id, definition=definition, name=name, context=context, config=config
            ),
            actor="seed",
        )
        return created.id

    def token(self, name: str = "browser-tests") -> str:
        _, secret = self.services.tokens.create(self.workspace.id, name)
        return secret

    def api(self, token: str | None = None) -> httpx.Client:
        secret = token or self.token()
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="session")
def seed(app: AppProcess, app_services: Services) -> Seed:
    """The workspace every new browser user lands in: its slug sorts first (the header lists
    workspaces by slug and a new user gets the first), and it exists before any page is opened."""
    return Seed.create(app_services, app.base_url, slug="browser-tests", name="Browser tests")


# -- the browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API runs an event loop in the main thread while it is open,
    # which would break every asyncio test that pytest runs after the browser tests.
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (./deck test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Open a page in a fresh browser context (a new person); each fails the test on a JS error."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def make() -> Page:
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, "uncaught JavaScript errors:\n" + "\n".join(errors)


@pytest.fixture
def user_a(new_page: Callable[[], Page]) -> Page:
    return new_page()


@pytest.fixture
def user_b(new_page: Callable[[], Page]) -> Page:
    return new_page()


# -- helpers ----------------------------------------------------------------------------------
