"""Two people, two browser contexts, one running app: what one does shows up in the other's tab
without a reload (SPEC §5, §11). Every wait is on a locator with a timeout; nothing sleeps.

DOM hooks these tests rely on (keep them stable in ui/):
- board card: `[data-agent-id=<id>]`, its status badge `.q-badge[data-status]`, its "Activate" /
  "Deactivate" button, the "Change status" menu button (aria-label) and the menu's item labels;
- agent page: the header badge `[data-testid=agent-status]`, the tabs "Status" / "Context"
  (role tab), the transition buttons' labels ("Activate", "Take offline"), the composer's
  placeholder "Message <name>…", messages `[data-seq]`, the version chip text "version N", the
  version rows `[data-version=N]`, the current context `[data-testid=context-current]`, the
  "Roll back" buttons and the confirmation dialog (role dialog) with its "Roll back" button.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Locator, Page, expect

from core.context import ContextUpdate
from tests.browser.conftest import LIVE_TIMEOUT_MS, Seed

pytestmark = pytest.mark.browser


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


# -- board ------------------------------------------------------------------------------------
def card(page: Page, agent_id: uuid.UUID) -> Locator:
    return page.locator(f'[data-agent-id="{agent_id}"]')


def card_badge(page: Page, agent_id: uuid.UUID) -> Locator:
    return card(page, agent_id).locator(".q-badge[data-status]")


def test_board_status_changes_show_live_in_the_other_tab(seed: Seed, user_a: Page, user_b: Page) -> None:
    agent_id = seed.agent(unique("Board agent"))
    for page in (user_a, user_b):
        page.goto(seed.url("/"))
        expect(card_badge(page, agent_id)).to_have_attribute("data-status", "idle")

    # A activates with the card's button; B's card turns active and offers "Deactivate".
    card(user_a, agent_id).get_by_role("button", name="Activate").click()
    expect(card_badge(user_b, agent_id)).to_have_attribute("data-status", "active", timeout=LIVE_TIMEOUT_MS)
    expect(card_badge(user_b, agent_id)).to_have_text("active")
    expect(card(user_b, agent_id).get_by_role("button", name="Deactivate")).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    # B picks "Error" from the card's status menu; A sees it, with the reason.
    card(user_b, agent_id).get_by_role("button", name="Change status").click()
    user_b.locator(".q-menu .q-item", has_text=re.compile(r"^\s*Error\s*$")).click()
    expect(card_badge(user_a, agent_id)).to_have_attribute("data-status", "error", timeout=LIVE_TIMEOUT_MS)
    expect(card(user_a, agent_id)).to_contain_text("set from the dashboard", timeout=LIVE_TIMEOUT_MS)


def test_board_shows_an_agent_created_elsewhere(seed: Seed, user_a: Page) -> None:
    user_a.goto(seed.url("/"))
    expect(user_a.get_by_role("button", name="New agent")).to_be_visible()
    name = unique("Created elsewhere")
    agent_id = seed.agent(name)  # another process: the app sees it through the event log
    expect(card(user_a, agent_id)).to_contain_text(name, timeout=LIVE_TIMEOUT_MS)


# -- agent page -------------------------------------------------------------------------------
def header_badge(page: Page) -> Locator:
    return page.get_by_test_id("agent-status")


def open_agent(page: Page, seed: Seed, agent_id: uuid.UUID, tab: str = "conversation") -> None:
    page.goto(seed.url(f"/agents/{agent_id}?tab={tab}"))
    expect(header_badge(page)).to_be_visible()


def test_agent_page_status_change_shows_live_in_the_other_tab(seed: Seed, user_a: Page, user_b: Page) -> None:
    agent_id = seed.agent(unique("Status agent"))
    open_agent(user_a, seed, agent_id, tab="status")
    open_agent(user_b, seed, agent_id, tab="status")
    expect(header_badge(user_b)).to_have_attribute("data-status", "idle")

    user_a.get_by_label("Reason (optional)").fill("maintenance window")
    user_a.get_by_role("button", name="Take offline").click()

    expect(header_badge(user_b)).to_have_attribute("data-status", "offline", timeout=LIVE_TIMEOUT_MS)
    expect(header_badge(user_b)).to_have_text("offline")
    expect(user_b.get_by_text("— maintenance window")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    # B's buttons follow the status machine: from offline, "Take offline" is gone.
    expect(user_b.get_by_role("button", name="Take offline")).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(user_b.get_by_role("button", name="Activate")).to_be_visible()


def test_agent_page_message_sent_in_one_tab_appears_in_the_other(seed: Seed, user_a: Page, user_b: Page) -> None:
    name = unique("Chat agent")
    agent_id = seed.agent(name)  # idle: the message is kept, nobody answers
    open_agent(user_a, seed, agent_id)
    open_agent(user_b, seed, agent_id)
    expect(user_b.get_by_text("No messages yet")).to_be_visible()

    text = unique("Hello from tab A")
    composer = user_a.get_by_placeholder(f"Message {name}")
    composer.fill(text)
    composer.press("Enter")

    expect(user_a.locator("[data-seq]", has_text=text)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(composer).to_have_value("")
    expect(user_b.locator("[data-seq]", has_text=text)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(user_b.locator("[data-seq]")).to_have_count(1)
    expect(user_b.get_by_text("No messages yet")).to_be_hidden()


def version_row(page: Page, version: int) -> Locator:
    return page.locator(f"[data-version='{version}']")


def test_agent_page_context_rollback_shows_the_new_version_in_the_other_tab(
    seed: Seed, user_a: Page, user_b: Page
) -> None:
    agent_id = seed.agent(unique("Context agent"), context={"goal": "draft", "step": 1})
    contexts = seed.services.contexts
    contexts.update(agent_id, ContextUpdate(patch={"goal": "final", "step": 2}, reason="agent wrote"), "agent")
    contexts.update(agent_id, ContextUpdate(patch={"step": 3, "extra": True}, reason="agent wrote"), "agent")

    for page in (user_a, user_b):
        open_agent(page, seed, agent_id, tab="context")
        expect(page.get_by_text("version 3", exact=True)).to_be_visible()

    version_row(user_a, 1).get_by_role("button", name="Roll back").click()
    dialog = user_a.get_by_role("dialog")
    expect(dialog).to_contain_text("Roll back to version 1?")
    expect(dialog).to_contain_text("This writes version 4")
    dialog.get_by_role("button", name="Roll back").click()
    expect(dialog).to_be_hidden()

    for page in (user_a, user_b):
        expect(page.get_by_text("version 4", exact=True)).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        expect(version_row(page, 4)).to_contain_text("rollback to version 1", timeout=LIVE_TIMEOUT_MS)
        current = page.get_by_test_id("context-current")
        expect(current).to_contain_text('"goal": "draft"', timeout=LIVE_TIMEOUT_MS)
        expect(current).not_to_contain_text('"extra"')
    # Nothing was rewritten: the versions rolled back over are still listed.
    for version in (1, 2, 3):
        expect(version_row(user_b, version)).to_be_visible()
