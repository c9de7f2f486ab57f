"""Requests to people on the dashboard (issue #13), in the `user` fixture's simulated browser:
the header's live count, the run page's inline request with its controls, the inbox, and the
start-run form's per-member switches."""

from __future__ import annotations

import uuid

from nicegui import ui
from nicegui.testing import User

from core.run_inputs import InputAnswer, InputRequest, RunInputPublic
from tests.ui.running_app import app_services
from tests.ui.test_runs import SLOW, agent, elements, make_run, only, team, workspace
from tests.waiting import eventually


def ask(run_id: uuid.UUID, ws_id: uuid.UUID, agent_id: uuid.UUID, kind: str = "approval", **fields: object):  # type: ignore[no-untyped-def]
    services = app_services()
    return services.run_inputs.request(
        InputRequest(
            workspace_id=ws_id,
            run_id=run_id,
            agent_id=agent_id,
            agent_name="Alice",
            key=f"test:{uuid.uuid4()}",
            kind=kind,  # type: ignore[arg-type]
            action="WritePRD",
            round=1,
            **fields,  # type: ignore[arg-type]
        )
    )


def count_badge(user: User) -> ui.badge:
    badge = only(user, "pending-inputs-count")
    assert isinstance(badge, ui.badge)
    return badge


async def test_the_header_counts_requests_waiting_in_the_workspace_live(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    app_services().runs.mark_running(run.id, "demo model")
    await user.open("/")
    assert not count_badge(user).visible

    request = ask(run.id, ws.id, alice.id, proposed="The PRD")
    await eventually(lambda: count_badge(user).visible and count_badge(user).text == "1")
    app_services().run_inputs.answer(run.id, request.id, InputAnswer(decision="approve"))
    await eventually(lambda: not count_badge(user).visible)


async def test_a_held_message_is_approved_from_the_run_page(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    app_services().runs.mark_running(run.id, "demo model")
    request = ask(run.id, ws.id, alice.id, proposed="**The PRD** <script>alert(1)</script>")

    await user.open(f"/runs/{run.id}")
    await user.should_see("Approve the work of Alice")
    proposed = only(user, "input-proposed")
    html = " ".join(el.content for el in proposed.descendants() if isinstance(el, ui.html))
    assert "<strong>The PRD</strong>" in html and "<script" not in html  # rendered, sanitized
    assert app_services().runs.get(run.id).status == "waiting"

    user.find(marker="input-approve").click()
    await eventually(lambda: not elements(user, "input-card"))
    answered = app_services().run_inputs.get(request.id)
    assert (answered.status, answered.decision, answered.answered_by) == ("answered", "approve", "user")
    assert app_services().runs.get(run.id).status == "running"


async def test_send_back_needs_no_text_and_edit_publishes_the_edited_text(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    app_services().runs.mark_running(run.id, "demo model")
    first = ask(run.id, ws.id, alice.id, proposed="draft one")

    await user.open(f"/runs/{run.id}")
    await user.should_see(marker="input-card")
    user.find(marker="input-reject").click()
    await eventually(lambda: app_services().run_inputs.get(first.id).status == "answered")
    assert app_services().run_inputs.get(first.id).decision == "reject"
    await eventually(lambda: not elements(user, "input-card"))

    second = ask(run.id, ws.id, alice.id, proposed="draft two")
    await user.should_see(marker="input-card")  # a new request appears live
    user.find(marker="input-edit-start").click()
    text = only(user, "input-text")
    assert text.value == "draft two"  # type: ignore[attr-defined]
    text.value = "draft two, made better by a person"  # type: ignore[attr-defined]
    user.find(marker="input-edit").click()
    await eventually(lambda: app_services().run_inputs.get(second.id).status == "answered")
    assert app_services().run_inputs.get(second.id).answer == "draft two, made better by a person"
    assert app_services().run_inputs.get(second.id).decision == "edit"
    await eventually(lambda: not elements(user, "input-card"))


async def test_a_role_played_by_you_is_answered_from_the_inbox_starting_from_the_format_example(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    app_services().runs.mark_running(run.id, "demo model")
    prompt = [
        {"role": "system", "content": "You are a Product Manager."},
        {"role": "user", "content": 'Write the PRD.\n## format example\n[CONTENT]\n{"Project Name": ""}\n[/CONTENT]'},
    ]
    request = ask(run.id, ws.id, alice.id, kind="answer", prompt=prompt)

    await user.open("/inputs")
    await user.should_see("Your turn as Alice")
    user.find(marker="input-use-example").click()
    text = only(user, "input-text")
    assert text.value == '[CONTENT]\n{"Project Name": ""}\n[/CONTENT]'  # type: ignore[attr-defined]
    text.value = '[CONTENT]\n{"Project Name": "recipes"}\n[/CONTENT]'  # type: ignore[attr-defined]
    user.find(marker="input-send").click()
    await eventually(lambda: app_services().run_inputs.get(request.id).status == "answered")
    assert "recipes" in app_services().run_inputs.get(request.id).answer
    await user.should_see(marker="inputs-empty")


async def test_a_request_answered_elsewhere_leaves_the_page_at_once(user: User) -> None:
    ws = workspace()
    alice, _ = team(ws)
    run = make_run(ws, [alice])
    app_services().runs.mark_running(run.id, "demo model")
    request: RunInputPublic = ask(run.id, ws.id, alice.id, proposed="text")
    await user.open(f"/runs/{run.id}")
    await user.should_see(marker="input-card")

    app_services().run_inputs.answer(None, request.id, InputAnswer(decision="approve"), actor="token:ci")
    await eventually(lambda: not elements(user, "input-card"))


async def test_the_start_form_sends_who_plays_and_who_needs_approval(user: User) -> None:
    ws = workspace()
    alice, bob = team(ws)
    helper = agent(ws, "assistant", "Ada")
    for a in (alice, bob, helper):
        app_services().agents.activate(a.id)
    await user.open("/runs")
    only(user, "run-agents").value = [str(alice.id), str(bob.id)]  # type: ignore[attr-defined]
    await eventually(lambda: len(elements(user, "run-person")) == 2)
    played, approve = elements(user, "run-played-by-you"), elements(user, "run-approve")
    played[0].value = True  # type: ignore[attr-defined]  # Alice
    approve[1].value = True  # type: ignore[attr-defined]  # Bob
    only(user, "run-idea").value = "a recipe organizer"  # type: ignore[attr-defined]
    only(user, "run-input-timeout").value = 600  # type: ignore[attr-defined]
    user.find(marker="run-start").click()

    def started() -> bool:
        return bool(app_services().runs.list(ws.id).items)

    await eventually(started, timeout=SLOW)
    run = app_services().runs.list(ws.id).items[0]
    members = {m.agent_id: m for m in run.members}
    assert members[alice.id].played_by_human and not members[alice.id].needs_approval
    assert members[bob.id].needs_approval and not members[bob.id].played_by_human
    assert run.input_timeout == 600
    app_services().runtime.cancel_run(run.id)
