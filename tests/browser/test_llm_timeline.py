"""The run page's LLM-call timeline in a real browser: a demo-model team run executed by the app
process draws one bar per call; clicking a bar opens the inspector with that call's prompt.

DOM hooks: the timeline card `[data-testid=run-timeline]` (Plotly bars are `g.point path`), the
inspector `[data-testid=llm-call-inspector]` and its prompt `[data-testid=llm-call-prompt]`.
"""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LIVE_TIMEOUT_MS, Seed
from tests.waiting import wait_until

pytestmark = pytest.mark.browser


def test_the_run_timeline_draws_and_clicking_a_call_shows_its_prompt(seed: Seed, user_a: Page) -> None:
    idea = f"a kanban board for beekeepers {uuid.uuid4().hex[:6]}"
    members = [
        seed.agent(f"PM {uuid.uuid4().hex[:4]}", "product-manager"),
        seed.agent(f"Arch {uuid.uuid4().hex[:4]}", "architect"),
    ]
    with seed.api() as api:
        for agent in members:
            assert api.post(f"/api/agents/{agent}/activate").status_code == 200
        run = api.post(
            "/api/runs",
            json={"workspace_id": str(seed.workspace.id), "agent_ids": [str(a) for a in members], "idea": idea},
        ).json()
        wait_until(
            lambda: api.get(f"/api/runs/{run['id']}").json()["status"] in {"completed", "failed"}, 120, "run end"
        )
        assert api.get(f"/api/runs/{run['id']}").json()["status"] == "completed"
        calls = api.get(f"/api/runs/{run['id']}/llm-calls", params={"limit": 500}).json()["items"]
    assert len(calls) >= 2

    user_a.goto(seed.url(f"/runs/{run['id']}"))
    timeline = user_a.locator('[data-testid="run-timeline"]')
    bars = timeline.locator("g.point path")
    expect(bars).to_have_count(len(calls), timeout=LIVE_TIMEOUT_MS)
    expect(timeline).to_contain_text("ok")  # the legend names the outcome colour
    expect(user_a.get_by_text(f"{len(calls)} calls")).to_be_visible()

    # Plotly picks the clicked bar from the pointer position over its drag layer: click there.
    bars.first.scroll_into_view_if_needed()
    box = bars.first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    user_a.mouse.move(x, y)  # Plotly finds the point under the pointer on hover, then clicks it
    expect(timeline.locator(".hoverlayer .hovertext")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    user_a.mouse.click(x, y)
    inspector = user_a.locator('[data-testid="llm-call-inspector"]')
    expect(inspector).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    prompt = inspector.locator('[data-testid="llm-call-prompt"]')
    expect(prompt).to_contain_text(idea)  # the run's idea is in every SOP role's prompt
    expect(prompt).to_contain_text("system")
    expect(inspector.get_by_role("button", name="Copy prompt")).to_be_visible()
    expect(inspector.get_by_role("button", name="Copy response")).to_be_visible()
