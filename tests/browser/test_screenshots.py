"""Screenshots of the dashboard with realistic data, saved to docs/screenshots/*.png (1280x800).

The data lives in its own workspace, "Acme Robotics" (slug `robotics`), set up from the test
process as another process would: a small MetaGPT software team plus an assistant and a researcher
in different statuses, an assistant thread, context versions, and one finished team run of the
offline demo model (started over the REST API with code execution off, polled until it ends).
Each browser context switches to that workspace once with the header's switcher.

The tests assert what each page must show before it is photographed, so a screenshot of an empty
or broken page fails instead of landing in the docs. Each test stands alone: the data is complete
before the first one (profiles and tokens included), so any order or any single test takes the
same picture.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from core.context import ContextUpdate
from core.llm_profiles import LlmProfileCreate
from core.schemas import ProjectCreate, WorkspaceUpdate
from core.services import Services
from tests.app_process import ROOT
from tests.browser.conftest import PAGE_TIMEOUT_MS, VIEWPORT, Seed
from tests.waiting import wait_until

pytestmark = pytest.mark.browser

# The committed pictures are refreshed on purpose (AGENTDECK_UPDATE_SCREENSHOTS=1); an ordinary run
# writes its own under test-artifacts/, so running the suite leaves the checkout unchanged.
SHOTS = ROOT / ("docs" if os.environ.get("AGENTDECK_UPDATE_SCREENSHOTS") else "test-artifacts") / "screenshots"
RUN_TIMEOUT = 120.0  # the first run waits for the server to finish importing MetaGPT
FINISHED = {"completed", "failed", "cancelled", "interrupted"}

TEAM = (
    ("product-manager", "Alice (PM)"),
    ("architect", "Bob (Architect)"),
    ("project-manager", "Carol (Project Manager)"),
    ("engineer", "Dave (Engineer)"),
    ("qa-engineer", "Erin (QA)"),
)
IDEA = "A command-line tool that tracks the battery level of each warehouse robot and warns before one runs out"
# name -> (status, reason) shown on the board once the run is over
STATUSES = {
    "Alice (PM)": ("active", "ready for the next brief"),
    "Bob (Architect)": ("busy", "reviewing the charging-dock API"),
    "Carol (Project Manager)": ("idle", ""),
    "Dave (Engineer)": ("error", "LLM request timed out after 120 s"),
    "Erin (QA)": ("offline", "maintenance window"),
    "Assistant": ("active", "answering questions"),
    "Frank (Research)": ("initializing", "loading the fleet manuals"),
}
THREAD = (
    ("user", "What's the battery status of the fleet this morning?"),
    (
        "assistant",
        "Here is the overnight summary:\n\n"
        "| Robot | Battery | Trend |\n|---|---|---|\n"
        "| R-07 | 92 % | charging |\n| R-12 | 41 % | steady |\n| R-19 | **18 %** | dropping |\n\n"
        "R-19 should go to the dock before the 10:00 shift.",
    ),
    ("user", "Draft a short note to the night shift about R-19."),
    (
        "assistant",
        "**To the night shift:** R-19 dropped to 18 % overnight. Please dock it at the end of each shift "
        "and log the charge in the `fleet-status` sheet.\n\n- Dock: bay 3\n- Owner: Carol",
    ),
    ("user", "Thanks! Add the dock bay to your notes for next time."),
)


def move_to(services: Services, agent_id: uuid.UUID, target: str, reason: str) -> None:
    """Walk the status machine to `target` (directly, or through idle or active)."""
    agent = services.agents.get(agent_id)
    if agent.status == target:
        return
    if target not in agent.allowed_transitions:
        via = "idle" if "idle" in agent.allowed_transitions and target == "initializing" else "active"
        if agent.status != via:
            services.agents.set_status(agent_id, via, reason="", actor="seed")
    services.agents.set_status(agent_id, target, reason=reason, actor="seed")


@dataclass
class Showcase:
    seed: Seed
    agents: dict[str, uuid.UUID] = field(default_factory=dict)
    run_id: str = ""

    def url(self, path: str) -> str:
        return self.seed.url(path)


@pytest.fixture(scope="module")
def showcase(app_services: Services, seed: Seed) -> Showcase:
    shop = Showcase(Seed.create(app_services, seed.base_url, slug="robotics", name="Acme Robotics"))
    services, ws = app_services, shop.seed.workspace
    services.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
    services.workspaces.create_project(
        ws.id, ProjectCreate(slug="fleet", name="Fleet monitor", description="Battery and uptime tooling")
    )
    for definition, name in TEAM:
        shop.agents[name] = shop.seed.agent(name, definition, context={"team": "fleet", "focus": "battery tooling"})
    shop.agents["Assistant"] = shop.seed.agent(
        "Assistant",
        context={"notes": "Answers questions about the fleet.", "fleet_size": 24},
        config={"system_prompt": "You are the Acme Robotics operations assistant. Answer briefly."},
    )
    shop.agents["Frank (Research)"] = shop.seed.agent("Frank (Research)", context={"topic": "battery chemistry"})

    # One team run of the offline demo model, over the API as a client would start it.
    with shop.seed.api() as api:
        response = api.post(
            "/api/runs",
            json={
                "workspace_id": str(ws.id),
                "agent_ids": [str(shop.agents[name]) for _, name in TEAM],
                "idea": IDEA,
                "n_rounds": 8,
                "investment": 3.0,
            },
        )
        assert response.status_code == 202, response.text
        shop.run_id = response.json()["id"]

        # Meanwhile: the assistant's thread and context history.
        assistant = shop.agents["Assistant"]
        for index, (role, text) in enumerate(THREAD):
            if role == "user":
                services.messages.append(assistant, text, sender="user", role="user", actor="user")
            else:
                services.messages.append(
                    assistant,
                    text,
                    sender="Assistant",
                    role="assistant",
                    metadata={"demo_model": True},
                    prompt_tokens=180 + 40 * index,
                    completion_tokens=60 + 25 * index,
                )
        contexts = services.contexts
        contexts.update(assistant, ContextUpdate(patch={"shift_lead": "Carol"}, reason="from the handbook"), "user")
        contexts.update(assistant, ContextUpdate(patch={"low_battery": ["R-19"]}, reason="morning check"), "Assistant")
        contexts.update(
            assistant, ContextUpdate(patch={"dock_bay": 3, "fleet_size": 25}, reason="asked to"), "Assistant"
        )

        def finished() -> dict | None:
            run = api.get(f"/api/runs/{shop.run_id}").json()
            return run if run["status"] in FINISHED else None

        run = wait_until(finished, RUN_TIMEOUT, interval=0.5, what="the demo run to finish")
        assert run["status"] == "completed", run

    for name, (status, reason) in STATUSES.items():
        move_to(services, shop.agents[name], status, reason)
    # Only now that the run is over: the workspace's first profile becomes its default, and the run
    # had to use the demo model.
    services.llm_profiles.create(
        ws.id,
        LlmProfileCreate(
            name="local-ollama", api_type="ollama", model="llama3.1:8b", base_url="http://127.0.0.1:11434/api"
        ),
    )
    services.llm_profiles.create(
        ws.id, LlmProfileCreate(name="openai", api_type="openai", model="gpt-4o-mini", api_key="sk-test-0123456789")
    )
    shop.seed.token("ci-pipeline")
    return shop


def switch_to(page: Page, shop: Showcase) -> None:
    """Choose the showcase workspace in the header (kept for this browser context)."""
    workspace = shop.seed.workspace
    page.goto(shop.url("/catalog"))
    page.get_by_role("combobox", name="Workspace").click()
    page.get_by_role("option", name=re.compile(re.escape(workspace.name))).click()
    expect(page.get_by_text(workspace.name, exact=True)).to_be_visible()


def open_context(browser: Browser, shop: Showcase, *, dark: bool = False) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    switch_to(page, shop)
    if dark:
        page.get_by_role("button", name="Dark mode").click()
        expect(page.locator("body.body--dark")).to_have_count(1)
    yield page
    context.close()
    assert not errors, "uncaught JavaScript errors:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def light(browser: Browser, showcase: Showcase) -> Iterator[Page]:
    yield from open_context(browser, showcase)


@pytest.fixture(scope="module")
def dark(browser: Browser, showcase: Showcase) -> Iterator[Page]:
    yield from open_context(browser, showcase, dark=True)


# Resolves once the page has not scrolled for 5 animation frames (smooth scrolls are over).
SETTLE_SCROLL = """() => new Promise(resolve => {
    let last = -1, still = 0;
    const tick = () => {
        const y = window.scrollY + document.documentElement.scrollTop;
        still = y === last ? still + 1 : 0;
        last = y;
        if (still >= 5) resolve(); else requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
})"""


def shoot(page: Page, name: str) -> Path:
    """A 1280x800 screenshot of the viewport, once fonts (the icon font too) are in."""
    page.evaluate("() => document.fonts.ready")
    page.evaluate(SETTLE_SCROLL)
    page.mouse.move(0, VIEWPORT["height"] - 1)  # no hover effect or tooltip in the picture
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    header = page.screenshot(path=str(path), animations="disabled", caret="hide")[:24]
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert (width, height) == (VIEWPORT["width"], VIEWPORT["height"]), name
    return path


# -- pages ------------------------------------------------------------------------------------
def show_board(page: Page, shop: Showcase) -> None:
    page.goto(shop.url("/"))
    expect(page.locator("[data-agent-id]")).to_have_count(len(STATUSES))
    for name, (status, _) in STATUSES.items():
        card = page.locator(f'[data-agent-id="{shop.agents[name]}"]')
        expect(card.locator(".q-badge[data-status]")).to_have_attribute("data-status", status)


def show_thread(page: Page, shop: Showcase) -> None:
    page.goto(shop.url(f"/agents/{shop.agents['Assistant']}"))
    expect(page.locator("[data-seq]")).to_have_count(len(THREAD))
    expect(page.locator("[data-seq] table")).to_be_visible()


def show_run(page: Page, shop: Showcase) -> None:
    page.goto(shop.url(f"/runs/{shop.run_id}"))
    expect(page.locator(".q-badge[data-status=completed]").first).to_be_visible()
    expect(page.locator("[data-message-id]").first).to_be_visible()


def test_board(light: Page, showcase: Showcase) -> None:
    show_board(light, showcase)
    shoot(light, "board")


def test_agent_conversation(light: Page, showcase: Showcase) -> None:
    show_thread(light, showcase)
    shoot(light, "agent-conversation")


def test_agent_context_and_diff(light: Page, showcase: Showcase) -> None:
    light.goto(showcase.url(f"/agents/{showcase.agents['Assistant']}?tab=context"))
    expect(light.get_by_text("version 4", exact=True)).to_be_visible()
    expect(light.locator("b", has_text=re.compile(r"^v1$"))).to_be_visible()
    shoot(light, "agent-context")
    light.get_by_role("button", name="Changes").first.click()
    expect(light.get_by_text("Version 3 → version 4")).to_be_in_viewport()
    shoot(light, "agent-context-diff")


def test_agent_status(light: Page, showcase: Showcase) -> None:
    light.goto(showcase.url(f"/agents/{showcase.agents['Dave (Engineer)']}?tab=status"))
    expect(light.get_by_text("LLM request timed out after 120 s").first).to_be_visible()
    shoot(light, "agent-status")


def test_catalog(light: Page, showcase: Showcase) -> None:
    light.goto(showcase.url("/catalog"))
    expect(light.get_by_text("product-manager", exact=True)).to_be_visible()
    shoot(light, "catalog")


def test_runs(light: Page, showcase: Showcase) -> None:
    light.goto(showcase.url("/runs"))
    expect(light.locator(f'[data-run-id="{showcase.run_id}"]')).to_contain_text("completed")
    shoot(light, "runs")


def test_run(light: Page, showcase: Showcase) -> None:
    show_run(light, showcase)
    shoot(light, "run")
    light.get_by_text("Transcript", exact=True).scroll_into_view_if_needed()
    light.evaluate("() => window.scrollBy(0, 360)")
    shoot(light, "run-transcript")


def show_analytics(page: Page, shop: Showcase) -> None:
    page.goto(shop.url("/analytics"))
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.get_by_text("Loading…")).to_have_count(0)
    expect(page.get_by_text("Nothing to chart yet")).to_be_hidden()


def test_analytics(light: Page, showcase: Showcase) -> None:
    show_analytics(light, showcase)
    shoot(light, "analytics")


# -- dark mode --------------------------------------------------------------------------------
def test_board_dark(dark: Page, showcase: Showcase) -> None:
    show_board(dark, showcase)
    shoot(dark, "board-dark")


def test_agent_conversation_dark(dark: Page, showcase: Showcase) -> None:
    show_thread(dark, showcase)
    shoot(dark, "agent-conversation-dark")


def test_run_dark(dark: Page, showcase: Showcase) -> None:
    show_run(dark, showcase)
    shoot(dark, "run-dark")


def test_analytics_dark(dark: Page, showcase: Showcase) -> None:
    show_analytics(dark, showcase)
    shoot(dark, "analytics-dark")


def test_settings(light: Page, showcase: Showcase) -> None:
    # The key is never shown in full.
    light.goto(showcase.url("/settings"))
    expect(light.get_by_text("local-ollama").first).to_be_visible()
    expect(light.get_by_text("ci-pipeline").first).to_be_visible()
    assert "sk-test-0123456789" not in light.content()
    shoot(light, "settings")
