"""Agent and LLM output is untrusted (SPEC §8): whatever an agent or an API client writes is shown
as text or sanitized markdown, never run. Checked in a real browser, where a handler would fire.

Each test puts the payloads where another process or API client would (messages, names, status
reasons, context data), opens the page, and asserts: no payload ran (`window.__xss` stays
undefined, no alert/confirm dialog opened) and no `<img src=x>` element was created.
"""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Dialog, Page, expect

from core.context import ContextUpdate
from tests.browser.conftest import Seed

pytestmark = pytest.mark.browser

IMG = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=2</script>"
ALERT = "<svg onload=alert(3)></svg>"
PAYLOAD = f"{IMG} {SCRIPT} {ALERT}"


def watch_dialogs(page: Page) -> list[str]:
    fired: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        fired.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return fired


def assert_nothing_ran(page: Page, fired: list[str]) -> None:
    assert page.evaluate("() => typeof window.__xss") == "undefined", "a payload ran"
    assert fired == [], f"a payload opened a dialog: {fired}"
    injected = "() => [...document.scripts].some(s => s.textContent.trim().startsWith('window.__xss'))"
    assert not page.evaluate(injected), "a payload's <script> element is in the page"
    assert page.locator("[onerror], [onload]").count() == 0, "an element with an event handler attribute exists"


def test_message_content_is_rendered_as_sanitized_text(seed: Seed, user_a: Page) -> None:
    fired = watch_dialogs(user_a)
    name = f"XSS thread {uuid.uuid4().hex[:6]}"
    agent_id = seed.agent(name)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    seed.services.messages.append(agent_id, f"{marker} {PAYLOAD} **still markdown**", sender="api", role="user")
    seed.services.messages.append(
        agent_id, f"{IMG}\n\n{SCRIPT}\n\n`{IMG}`", sender=name, role="assistant", metadata={"demo_model": True}
    )

    user_a.goto(seed.url(f"/agents/{agent_id}"))
    thread = user_a.locator("[data-seq]")
    expect(thread).to_have_count(2)
    expect(thread.first).to_contain_text(marker)
    expect(thread.first.locator("strong", has_text="still markdown")).to_be_visible()  # markdown still works
    # Inside a code span the payload is shown literally, as text.
    expect(thread.last.locator("code")).to_have_text(IMG)

    assert_nothing_ran(user_a, fired)
    raw = {tag: thread.locator(selector).count() for tag, selector in (("img", 'img[src="x"]'), ("svg", "svg"))}
    assert raw == {"img": 0, "svg": 0}, f"raw HTML from messages became elements in the thread: {raw}"


def test_message_arriving_live_is_sanitized_too(seed: Seed, user_a: Page) -> None:
    fired = watch_dialogs(user_a)
    agent_id = seed.agent(f"XSS live {uuid.uuid4().hex[:6]}")
    user_a.goto(seed.url(f"/agents/{agent_id}"))
    expect(user_a.get_by_text("No messages yet")).to_be_visible()

    marker = f"live-{uuid.uuid4().hex[:8]}"
    seed.services.messages.append(agent_id, f"{marker} {PAYLOAD}", sender="api", role="user")
    expect(user_a.locator("[data-seq]", has_text=marker)).to_be_visible(timeout=8_000)

    assert_nothing_ran(user_a, fired)
    count = user_a.locator('[data-seq] img[src="x"]').count()
    assert count == 0, f"raw <img> from a live message became an element in the thread ({count})"


def test_names_reasons_and_context_are_shown_as_text(seed: Seed, user_a: Page) -> None:
    fired = watch_dialogs(user_a)
    name = f"{IMG}{SCRIPT} {uuid.uuid4().hex[:6]}"
    agent_id = seed.agent(name, context={"note": PAYLOAD, IMG: SCRIPT})
    seed.services.agents.set_status(agent_id, "error", reason=f"LLM said {PAYLOAD}")
    seed.services.contexts.update(agent_id, ContextUpdate(patch={"step": 2}, reason=PAYLOAD), "agent")

    # The board: name and status reason are labels (text).
    user_a.goto(seed.url("/"))
    card = user_a.locator(f'[data-agent-id="{agent_id}"]')
    expect(card).to_contain_text(name)
    expect(card).to_contain_text("LLM said <img src=x")
    assert_nothing_ran(user_a, fired)
    assert user_a.locator('img[src="x"]').count() == 0

    # The agent page: title, header reason, status history, context view and version reasons.
    for tab, shown in (("status", "LLM said <img src=x"), ("context", '"note": "<img src=x')):
        user_a.goto(seed.url(f"/agents/{agent_id}?tab={tab}"))
        expect(user_a.get_by_text(shown).first).to_be_visible()
        expect(user_a.get_by_text(name).first).to_be_visible()
        assert_nothing_ran(user_a, fired)
        assert user_a.locator('img[src="x"]').count() == 0, f"an <img src=x> element exists on the {tab} tab"
    assert IMG in user_a.title()


PROP_PAYLOAD = 'prop :title="window.__xss=4" :aria-label="(()=>{window.__xss=5;return 1})()" :data-x="alert(6)"'


def test_a_props_payload_in_an_agent_name_runs_on_no_page(seed: Seed, user_a: Page) -> None:
    """Issue 12: NiceGUI evaluates `:key=` props as JavaScript, and run pages once put a member's
    name into a props string. The name of a live agent and of a deleted run member, on every page."""
    from core.runs import RunCreate

    fired = watch_dialogs(user_a)
    name = f"{PROP_PAYLOAD} {uuid.uuid4().hex[:6]}"
    live = seed.agent(name)
    gone = seed.agent(f"{PROP_PAYLOAD} gone {uuid.uuid4().hex[:6]}", definition="architect")
    run = seed.services.runs.create(RunCreate(workspace_id=seed.workspace.id, agent_ids=[live, gone], idea=name))
    seed.services.agents.delete(gone, actor="seed")  # its run member now shows the stored name

    pages = ["/", f"/agents/{live}", f"/agents/{live}?tab=status", "/runs", f"/runs/{run.id}", "/analytics"]
    pages += ["/settings", "/catalog"]
    for path in pages:
        user_a.goto(seed.url(path))
        expect(user_a.locator("header")).to_be_visible()
        assert_nothing_ran(user_a, fired)
        assert user_a.locator("[data-x]").count() == 0, f"a prop from the name was set on {path}"
    user_a.goto(seed.url(f"/runs/{run.id}"))
    expect(user_a.get_by_text("gone").first).to_be_visible()
