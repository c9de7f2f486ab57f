"""Requests to people in a real browser (issue #13): a request appears live in two tabs, is
answered in one, and leaves the other at once; the header's count follows. Nothing sleeps."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from core.run_inputs import InputRequest
from core.runs import RunCreate
from tests.browser.conftest import LIVE_TIMEOUT_MS, Seed

pytestmark = pytest.mark.browser


def test_a_request_answered_in_one_tab_leaves_the_other(seed: Seed, user_a: Page, user_b: Page) -> None:
    name = f"Approver {uuid.uuid4().hex[:6]}"
    agent_id = seed.agent(name, definition="product-manager")
    services = seed.services
    run = services.runs.create(RunCreate(workspace_id=seed.workspace.id, agent_ids=[agent_id], idea="a timer app"))
    services.runs.mark_running(run.id, "demo model")

    user_a.goto(seed.url(f"/runs/{run.id}"))
    user_b.goto(seed.url("/inputs"))
    expect(user_b.get_by_text("Nothing is waiting for you.")).to_be_visible()

    request = services.run_inputs.request(
        InputRequest(
            workspace_id=seed.workspace.id,
            run_id=run.id,
            agent_id=agent_id,
            agent_name=name,
            key=f"browser:{uuid.uuid4()}",
            kind="approval",
            proposed="A PRD for **a timer app**",
        )
    )
    cards = [page.locator(f'[data-input-id="{request.id}"]') for page in (user_a, user_b)]
    for card in cards:
        expect(card).to_contain_text(f"Approve the work of {name}", timeout=LIVE_TIMEOUT_MS)
        expect(card.locator("strong")).to_have_text("a timer app")
    expect(user_b.get_by_label("Requests waiting for you").locator(".q-badge")).to_have_text("1")

    cards[0].get_by_role("button", name="Approve").click()
    expect(cards[1]).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(cards[0]).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(user_b.get_by_text("Nothing is waiting for you.")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    expect(user_b.get_by_label("Requests waiting for you").locator(".q-badge")).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
    answered = services.run_inputs.get(request.id)
    assert (answered.status, answered.decision) == ("answered", "approve")
