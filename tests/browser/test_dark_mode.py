"""Dark mode is readable: text drawn in the brand colours keeps WCAG AA contrast (4.5:1) against
the card it sits on, measured on the colours Chromium computes."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Seed

pytestmark = pytest.mark.browser

# WCAG 2 relative luminance and contrast ratio of the text's colour against its card's background.
CONTRAST_JS = """
el => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const fg = lum(rgb(getComputedStyle(el).color));
  const bg = lum(rgb(getComputedStyle(el.closest('.q-card')).backgroundColor));
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}
"""


def test_board_actions_and_errors_keep_their_contrast_in_dark_mode(seed: Seed, user_a: Page) -> None:
    idle = seed.agent(f"Dark idle {uuid.uuid4().hex[:6]}")
    broken = seed.agent(f"Dark error {uuid.uuid4().hex[:6]}")
    seed.services.agents.set_status(broken, "error", reason="LLM timed out", actor="seed")
    user_a.goto(seed.url("/"))
    user_a.get_by_role("button", name="Dark mode").click()
    expect(user_a.locator("body.body--dark")).to_have_count(1)

    activate = user_a.locator(f'[data-agent-id="{idle}"]').get_by_role("button", name="Activate")
    error_text = user_a.locator(f'[data-agent-id="{broken}"]').get_by_text("LLM timed out")
    for what, element in (("Activate button", activate), ("error reason", error_text)):
        expect(element).to_be_visible()
        ratio = element.evaluate(CONTRAST_JS)
        assert ratio >= 4.5, f"{what}: contrast {ratio:.2f}:1 in dark mode"
