"""The agent page, /agents/{id}: header, config editor, status controls, the versioned context
(edit, conflict, diff, rollback) and the message thread, as a person in the `user` fixture's
simulated browser sees them. Changes made by "someone else" go through the same core services."""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from collections.abc import Callable

import pytest
from nicegui import ElementFilter, ui
from nicegui.testing import User

from core.context import ContextUpdate
from core.events import EventType
from core.schemas import AgentCreate, AgentPublic, AgentUpdate, WorkspaceCreate, WorkspacePublic
from tests.ui.running_app import app_services
from tests.waiting import eventually


def only(user: User, marker: str) -> ui.element:
    """The one element with this marker, shown or hidden (`user.find` sees shown ones only)."""
    assert user.client is not None
    with user.client:
        elements = list(ElementFilter(marker=marker, local_scope=False))
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}"
    return elements[0]


def count(user: User, marker: str) -> int:
    try:
        return len(user.find(marker=marker).elements)
    except AssertionError:  # find() insists on at least one
        return 0


def visible(element: ui.element) -> bool:
    return element.visible and all(parent.visible for parent in element.ancestors())


def workspace(slug: str = "alpha") -> WorkspacePublic:
    return app_services().workspaces.create(WorkspaceCreate(slug=slug, name=slug.title()))


def make_agent(ws: WorkspacePublic | None = None, name: str = "scout", **fields: object) -> AgentPublic:
    ws = ws or workspace()
    return app_services().agents.create(
        AgentCreate(workspace_id=ws.id, definition="assistant", name=name, **fields)  # type: ignore[arg-type]
    )


def rendered_seqs(user: User) -> list[int]:
    assert user.client is not None
    with user.client:
        return sorted(int(el.props["data-seq"]) for el in ElementFilter(marker="message", local_scope=False))


def seed_thread(agent: AgentPublic, count: int) -> None:
    messages = app_services().messages
    for i in range(1, count + 1):
        sender, role = ("user", "user") if i % 2 else (agent.name, "assistant")
        messages.append(agent.id, f"message number {i}", sender=sender, role=role)


# -- not found -------------------------------------------------------------------------------
async def test_an_unknown_or_malformed_id_is_a_friendly_not_found_page(user: User) -> None:
    workspace()
    await user.open(f"/agents/{uuid.uuid4()}")
    await user.should_see(marker="agent-not-found")
    await user.open("/agents/not-a-uuid")
    await user.should_see(marker="agent-not-found")


async def test_another_workspaces_agent_is_not_found(user: User) -> None:
    workspace("alpha")
    other = make_agent(workspace("beta"), name="secret-agent")
    await user.open(f"/agents/{other.id}")  # the user is in alpha, the first workspace
    await user.should_see(marker="agent-not-found")
    await user.should_not_see("secret-agent")


# -- header ----------------------------------------------------------------------------------
async def test_header_shows_name_definition_status_and_the_demo_model(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    assert only(user, "page-title").text == "scout"  # type: ignore[attr-defined]
    assert "assistant" in only(user, "agent-definition").text  # type: ignore[attr-defined]
    assert only(user, "agent-status").text == "idle"  # type: ignore[attr-defined]
    await user.should_see(marker="demo-model-chip")


# -- config ----------------------------------------------------------------------------------
async def test_a_config_edit_is_saved(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    editor = only(user, "config-editor")
    editor.value = json.dumps({"system_prompt": "Be brief.", "temperature": 0.2})  # type: ignore[attr-defined]
    user.find(marker="config-save").click()
    await eventually(lambda: app_services().agents.get(agent.id).config.get("system_prompt") == "Be brief.")
    assert app_services().agents.get(agent.id).config["temperature"] == 0.2
    await user.should_see("Config saved")


async def test_invalid_json_config_shows_the_syntax_error_and_saves_nothing(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    only(user, "config-editor").value = '{"system_prompt": "x",'  # type: ignore[attr-defined]
    user.find(marker="config-save").click()
    await user.should_see("Not valid JSON")
    after = app_services().agents.get(agent.id)
    assert after.lock_version == agent.lock_version and after.config == agent.config
    assert only(user, "config-editor").value == '{"system_prompt": "x",'  # type: ignore[attr-defined]


async def test_a_schema_invalid_config_shows_each_path_and_saves_nothing(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    only(user, "config-editor").value = json.dumps({"system_prompt": "", "temperature": 7})  # type: ignore[attr-defined]
    user.find(marker="config-save").click()
    await eventually(lambda: count(user, "config-error") >= 2)
    errors = " ".join(el.text for el in user.find(marker="config-error").elements)  # type: ignore[attr-defined]
    assert "temperature" in errors and "system_prompt" in errors
    assert app_services().agents.get(agent.id).lock_version == agent.lock_version


async def test_a_status_change_meanwhile_does_not_block_a_config_save(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    app_services().agents.set_status(agent.id, "active")  # bumps lock_version; the config is untouched
    only(user, "config-editor").value = json.dumps({"system_prompt": "Still saved."})  # type: ignore[attr-defined]
    user.find(marker="config-save").click()
    await eventually(lambda: app_services().agents.get(agent.id).config["system_prompt"] == "Still saved.")


async def test_a_concurrent_config_change_is_a_conflict_that_keeps_my_text(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    mine = json.dumps({"system_prompt": "Mine."})
    only(user, "config-editor").value = mine  # type: ignore[attr-defined]
    app_services().agents.update(agent.id, AgentUpdate(config={"system_prompt": "Theirs."}))
    user.find(marker="config-save").click()
    await eventually(lambda: visible(only(user, "config-conflict")))
    assert only(user, "config-editor").value == mine  # type: ignore[attr-defined]
    assert app_services().agents.get(agent.id).config["system_prompt"] == "Theirs."

    user.find(marker="config-overwrite").click()
    await eventually(lambda: app_services().agents.get(agent.id).config["system_prompt"] == "Mine.")


# -- status ----------------------------------------------------------------------------------
def transition_buttons(user: User) -> set[str]:
    return {el.text for el in user.find(marker="status-to").elements}  # type: ignore[attr-defined]


async def test_status_buttons_are_exactly_the_allowed_transitions_and_a_change_updates_badge_and_history(
    user: User,
) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    markers = {m for el in user.find(marker="status-to").elements for m in el._markers if m != "status-to"}
    assert markers == {f"status-to-{t}" for t in agent.allowed_transitions}
    assert count(user, "status-change") == 1  # "created"

    only(user, "status-reason-input").value = "go time"  # type: ignore[attr-defined]
    user.find(marker="status-to-active").click()
    await eventually(lambda: only(user, "agent-status").text == "active")  # type: ignore[attr-defined]
    await eventually(lambda: count(user, "status-change") == 2)
    assert "go time" in only(user, "status-reason").text  # type: ignore[attr-defined]
    active = app_services().agents.get(agent.id)
    assert active.status == "active"
    await eventually(lambda: len(transition_buttons(user)) == len(active.allowed_transitions))
    assert {m for el in user.find(marker="status-to").elements for m in el._markers if m != "status-to"} == {
        f"status-to-{t}" for t in active.allowed_transitions
    }


async def test_a_refused_transition_shows_why(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    app_services().agents.set_status(agent.id, "offline")  # the page still shows idle's buttons
    user.find(marker="status-to-error").click()
    await user.should_see("Refused")
    await user.should_see("allowed")
    assert app_services().agents.get(agent.id).status == "offline"


async def test_status_history_grows_live(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    app_services().agents.set_status(agent.id, "active", reason="from elsewhere")
    await eventually(lambda: count(user, "status-change") == 2)
    await eventually(lambda: only(user, "agent-status").text == "active")  # type: ignore[attr-defined]


async def test_status_history_is_paged_newest_first(user: User) -> None:
    agent = make_agent()
    agents = app_services().agents
    for i in range(12):  # 1 + 24 changes: more than a page of 20
        agents.set_status(agent.id, "active", reason=f"round {i}")
        agents.set_status(agent.id, "idle", reason=f"round {i}")
    await user.open(f"/agents/{agent.id}")
    assert count(user, "status-change") == 20
    first = next(iter(only(user, "status-history").default_slot.children))
    assert "round 11" in first.content  # type: ignore[attr-defined]
    user.find(marker="status-more").click()
    await eventually(lambda: count(user, "status-change") == 25)
    assert not visible(only(user, "status-more"))


async def test_a_deleted_agent_says_so_instead_of_breaking(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    app_services().agents.delete(agent.id)
    await eventually(lambda: visible(only(user, "agent-deleted")))
    user.find(marker="composer").type("anyone there?")
    user.find(marker="composer-send").click()
    await eventually(lambda: visible(only(user, "composer-error")))
    assert only(user, "composer").value == "anyone there?"  # type: ignore[attr-defined]


# -- context ---------------------------------------------------------------------------------
async def test_the_version_list_is_paged_newest_first(user: User) -> None:
    agent = make_agent(context={"n": 0})
    for n in range(1, 25):
        app_services().contexts.update(agent.id, ContextUpdate(data={"n": n}))
    await user.open(f"/agents/{agent.id}")
    assert count(user, "context-versions") == 1
    rows = list(only(user, "context-versions").default_slot.children)
    assert len(rows) == 20 and "version-25" in rows[0]._markers
    user.find(marker="context-more-versions").click()
    await eventually(lambda: len(list(only(user, "context-versions").default_slot.children)) == 25)
    await user.should_see(marker="version-1")


async def test_a_context_edit_creates_a_version(user: User) -> None:
    agent = make_agent(context={"goal": "explore"})
    await user.open(f"/agents/{agent.id}")
    only(user, "context-editor").value = json.dumps({"goal": "ship"})  # type: ignore[attr-defined]
    only(user, "context-reason").value = "new plan"  # type: ignore[attr-defined]
    user.find(marker="context-save").click()
    await eventually(lambda: app_services().contexts.get(agent.id).version == 2)
    assert app_services().contexts.get(agent.id).data == {"goal": "ship"}
    version = app_services().contexts.version(agent.id, 2)
    assert (version.author, version.reason) == ("user", "new plan")
    await user.should_see(marker="version-2")
    assert only(user, "context-version").text == "version 2"  # type: ignore[attr-defined]


async def test_a_merge_patch_edit_merges(user: User) -> None:
    agent = make_agent(context={"keep": 1, "drop": 2})
    await user.open(f"/agents/{agent.id}")
    only(user, "context-mode").value = "patch"  # type: ignore[attr-defined]
    only(user, "context-editor").value = json.dumps({"drop": None, "add": 3})  # type: ignore[attr-defined]
    user.find(marker="context-save").click()
    await eventually(lambda: app_services().contexts.get(agent.id).data == {"keep": 1, "add": 3})


async def test_invalid_context_json_is_shown_and_nothing_is_saved(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    only(user, "context-editor").value = "[1, 2]"  # type: ignore[attr-defined]
    user.find(marker="context-save").click()
    await user.should_see("must be a JSON object")
    only(user, "context-editor").value = "{oops"  # type: ignore[attr-defined]
    user.find(marker="context-save").click()
    await user.should_see("Not valid JSON")
    assert app_services().contexts.get(agent.id).version == 1


async def test_two_users_editing_the_same_context_the_second_save_is_a_conflict_that_keeps_the_text(
    user: User, create_user: Callable[[], User]
) -> None:
    agent = make_agent(context={"goal": "explore"})
    other = create_user()
    await user.open(f"/agents/{agent.id}")
    await other.open(f"/agents/{agent.id}")

    mine = json.dumps({"goal": "mine"}, indent=2)
    only(other, "context-editor").value = mine  # type: ignore[attr-defined]
    only(user, "context-editor").value = json.dumps({"goal": "theirs"})  # type: ignore[attr-defined]
    user.find(marker="context-save").click()
    await eventually(lambda: app_services().contexts.get(agent.id).version == 2)

    other.find(marker="context-save").click()
    await eventually(lambda: visible(only(other, "context-conflict")))
    conflict = only(other, "context-conflict")
    assert "version 2" in " ".join(el.text for el in conflict.descendants() if isinstance(el, ui.label))
    assert only(other, "context-editor").value == mine  # type: ignore[attr-defined]
    assert app_services().contexts.get(agent.id).data == {"goal": "theirs"}

    other.find(marker="context-overwrite").click()
    await eventually(lambda: app_services().contexts.get(agent.id).version == 3)
    assert app_services().contexts.get(agent.id).data == {"goal": "mine"}


async def test_a_live_update_never_clobbers_unsaved_edits(user: User) -> None:
    agent = make_agent(context={"n": 1})
    await user.open(f"/agents/{agent.id}")
    draft = '{"n": 100, "draft": true}'
    only(user, "context-editor").value = draft  # type: ignore[attr-defined]
    app_services().contexts.update(agent.id, ContextUpdate(data={"n": 2}), actor="agent:scout")
    await eventually(lambda: visible(only(user, "context-newer")))
    assert only(user, "context-editor").value == draft  # type: ignore[attr-defined]
    await eventually(lambda: only(user, "context-version").text == "version 2")  # type: ignore[attr-defined]
    await user.should_see(marker="version-2")


async def test_a_live_update_reloads_an_editor_without_edits(user: User) -> None:
    agent = make_agent(context={"n": 1})
    await user.open(f"/agents/{agent.id}")
    app_services().contexts.update(agent.id, ContextUpdate(data={"n": 2}), actor="agent:scout")
    await eventually(lambda: json.loads(only(user, "context-editor").value) == {"n": 2})  # type: ignore[attr-defined]
    assert not visible(only(user, "context-newer"))


async def test_rollback_through_the_dialog_writes_a_new_version_equal_to_the_target(user: User) -> None:
    agent = make_agent(context={"step": 1})
    contexts = app_services().contexts
    contexts.update(agent.id, ContextUpdate(data={"step": 2}))
    contexts.update(agent.id, ContextUpdate(data={"step": 3, "bad": True}))
    await user.open(f"/agents/{agent.id}")
    user.find(marker="rollback-1").click()
    await user.should_see("Roll back to version 1?")
    user.find(marker="rollback-confirm").click()
    await eventually(lambda: contexts.get(agent.id).version == 4)
    assert contexts.get(agent.id).data == contexts.version(agent.id, 1).data == {"step": 1}
    assert [v.version for v in contexts.versions(agent.id).items] == [4, 3, 2, 1]  # nothing deleted
    await user.should_see(marker="version-4")


async def test_the_diff_of_two_versions_shows_the_changed_paths(user: User) -> None:
    agent = make_agent(context={"a": 1, "b": {"c": 2}, "gone": True})
    app_services().contexts.update(agent.id, ContextUpdate(data={"a": 1, "b": {"c": 3}, "d": 4}))
    await user.open(f"/agents/{agent.id}")
    user.find(marker="diff-2").click()
    await eventually(lambda: visible(only(user, "context-diff")))
    operations = only(user, "diff-operations").content  # type: ignore[attr-defined]
    assert "/b/c" in operations and "/d" in operations and "/gone" in operations
    assert "/a" not in operations.replace("/b/c", "")
    right = only(user, "diff-right").props["innerHTML"]  # as sent to the browser
    left = only(user, "diff-left").props["innerHTML"]
    assert '<div class="bg-green-100 dark:bg-green-500/25">  "d": 4</div>' in right
    assert '<div class="bg-red-100 dark:bg-red-500/25">  "gone": true</div>' in left
    assert '<div>  "a": 1,</div>' in right  # unchanged lines are not highlighted

    only(user, "diff-from").value = 2  # type: ignore[attr-defined]
    only(user, "diff-to").value = 1  # type: ignore[attr-defined]
    user.find(marker="diff-compare").click()
    await eventually(lambda: only(user, "diff-title").text.startswith("Version 2 → version 1"))  # type: ignore[attr-defined]


# -- thread ----------------------------------------------------------------------------------
async def test_the_thread_opens_on_its_latest_page_and_loads_older_pages_on_demand(user: User) -> None:
    agent = make_agent()
    seed_thread(agent, 120)
    await user.open(f"/agents/{agent.id}")
    assert rendered_seqs(user) == list(range(91, 121))
    await user.should_see("message number 120")
    await user.should_not_see("message number 90")

    user.find(marker="thread-load-older").click()
    await eventually(lambda: rendered_seqs(user) == list(range(61, 121)))
    # Reaching the top of the scroller does the same.
    user.find(marker="thread-scroller").trigger("scroll")
    await eventually(lambda: rendered_seqs(user) == list(range(31, 121)))
    user.find(marker="thread-scroller").trigger("scroll")
    await eventually(lambda: rendered_seqs(user) == list(range(1, 121)))
    order = [int(el.props["data-seq"]) for el in only(user, "thread-messages").default_slot.children]
    assert order == list(range(1, 121))  # oldest at the top, newest at the bottom
    await user.should_see("Beginning of the conversation")
    assert not visible(only(user, "thread-load-older"))


async def test_past_the_render_cap_the_newest_are_dropped_and_jump_to_latest_brings_them_back(
    user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page modules are re-imported for every test; ui.thread stays loaded in sys.modules.
    monkeypatch.setattr(importlib.import_module("ui.thread"), "MAX_RENDERED", 50)
    agent = make_agent()
    seed_thread(agent, 100)
    await user.open(f"/agents/{agent.id}")
    user.find(marker="thread-load-older").click()
    await eventually(lambda: rendered_seqs(user) == list(range(41, 91)))
    await eventually(lambda: visible(only(user, "thread-jump-latest")))

    app_services().messages.append(agent.id, "arrived while reading old pages", sender="scout", role="assistant")
    await eventually(lambda: "1 new" in only(user, "thread-jump-latest").text)  # type: ignore[attr-defined]
    assert 101 not in rendered_seqs(user)

    user.find(marker="thread-jump-latest").click()
    await eventually(lambda: rendered_seqs(user) == list(range(72, 102)))
    assert not visible(only(user, "thread-jump-latest"))


async def test_a_live_agent_message_appears_without_reload(user: User) -> None:
    agent = make_agent()
    seed_thread(agent, 3)
    await user.open(f"/agents/{agent.id}")
    app_services().messages.append(agent.id, "fresh from the agent", sender="scout", role="assistant")
    await eventually(lambda: rendered_seqs(user) == [1, 2, 3, 4])
    await user.should_see("fresh from the agent")


async def test_sending_a_message_stores_it_and_an_idle_agent_says_how_to_get_answers(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    assert visible(only(user, "thread-idle-hint"))
    await user.should_see("activate it to get answers")
    user.find(marker="composer").type("hello there")
    user.find(marker="composer").trigger("keydown.enter.exact.prevent")
    await eventually(lambda: app_services().messages.count(agent.id) == 1)
    stored = app_services().messages.list(agent.id).items[0]
    assert (stored.content, stored.role, stored.sender) == ("hello there", "user", "user")
    await eventually(lambda: only(user, "composer").value == "")  # type: ignore[attr-defined]
    await eventually(lambda: rendered_seqs(user) == [1])


async def test_a_message_that_is_too_long_shows_the_error_and_keeps_the_text(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    text = "x" * (app_services().messages.max_content_chars + 1)
    only(user, "composer").value = text  # type: ignore[attr-defined]
    user.find(marker="composer-send").click()
    await eventually(lambda: visible(only(user, "composer-error")))
    assert "limit" in only(user, "composer-error").text  # type: ignore[attr-defined]
    assert only(user, "composer").value == text  # type: ignore[attr-defined]
    assert only(user, "composer").enabled
    assert app_services().messages.count(agent.id) == 0


async def test_agent_output_with_html_renders_inert(user: User) -> None:
    agent = make_agent()
    payload = "Look <img src=x onerror=alert(1)> and <script>alert(2)</script> **bold** [x](javascript:alert(3))"
    app_services().messages.append(agent.id, payload, sender="scout", role="assistant")
    await user.open(f"/agents/{agent.id}")
    content = only(user, "message-content")
    html = content.props["innerHTML"]
    assert "<strong>bold</strong>" in html
    # The raw HTML is shown as text, and no link to javascript: is made.
    assert "<img" not in html and "<script" not in html and "href=" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;" in html
    assert content.props.get("sanitize") is False  # sanitized on the server, by widgets.safe_markdown


async def test_single_newlines_in_agent_output_are_line_breaks(user: User) -> None:
    agent = make_agent()
    app_services().messages.append(agent.id, "app.py\nmain.py\n\n- a\n- b", sender="scout", role="assistant")
    await user.open(f"/agents/{agent.id}")
    html = only(user, "message-content").props["innerHTML"]
    assert "app.py<br>" in html and "main.py" in html
    assert "<li>a</li>" in html  # lists still work


async def test_a_live_llm_stream_shows_a_typing_bubble_replaced_by_the_reply(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    bus = app_services().bus
    for chunk in ("Hel", "lo ", "there"):
        bus.publish_ephemeral(
            EventType.LLM_TOKEN, agent.workspace_id, {"text": chunk, "agent_name": "scout"}, agent_id=agent.id
        )
    typing = only(user, "thread-typing")
    await eventually(lambda: visible(typing))
    await eventually(lambda: "Hello there" in [el.text for el in typing.descendants() if isinstance(el, ui.label)])
    app_services().messages.append(agent.id, "Hello there", sender="scout", role="assistant")
    await eventually(lambda: not visible(typing))
    await eventually(lambda: rendered_seqs(user) == [1])


@pytest.mark.slow
async def test_an_active_assistant_answers_live_with_the_demo_model(user: User) -> None:
    agent = make_agent()
    services = app_services()
    await asyncio.to_thread(services.runtime.ensure_ready)  # the first MetaGPT import takes a while
    services.agents.activate(agent.id)
    await user.open(f"/agents/{agent.id}")
    assert not visible(only(user, "thread-idle-hint"))
    user.find(marker="composer").type("What can you do?")
    user.find(marker="composer-send").click()
    await eventually(lambda: len(rendered_seqs(user)) == 2, timeout=90)
    reply = max(user.find(marker="message").elements, key=lambda el: int(el.props["data-seq"]))
    header = next(el for el in reply.descendants() if isinstance(el, ui.html))
    assert "demo model" in header.content
    assert services.messages.list(agent.id).items[0].metadata.get("demo_model") is True
    await eventually(lambda: only(user, "agent-status").text == "active", timeout=10)  # type: ignore[attr-defined]


async def test_json_editors_follow_the_dark_mode_toggle_without_a_reload(user: User) -> None:
    agent = make_agent()
    await user.open(f"/agents/{agent.id}")
    editors = [only(user, "context-editor"), only(user, "config-editor")]
    assert [e.props["theme"] for e in editors] == ["basicLight", "basicLight"]
    user.find(marker="dark-mode").click()
    assert [e.props["theme"] for e in editors] == ["basicDark", "basicDark"]
    user.find(marker="dark-mode").click()
    assert [e.props["theme"] for e in editors] == ["basicLight", "basicLight"]


async def test_a_busy_agent_without_a_chat_says_a_message_now_is_kept_but_not_answered(user: User) -> None:
    agent = make_agent()
    services = app_services()
    services.agents.activate(agent.id)
    services.agents.set_status(agent.id, "busy", reason="team run")  # busy in a run, not answering chat
    await user.open(f"/agents/{agent.id}")
    await eventually(lambda: visible(only(user, "thread-idle-hint")))
    await user.should_see("busy in a team run")
    await user.should_see("kept but not answered")
