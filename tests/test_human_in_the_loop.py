"""People in team runs and chats (issue #13): a person plays a role or approves what it publishes.

MetaGPT's real roles and real OpenAI provider run against the loopback server (tests/llm_server.py);
the person is this test, answering through the same service the API and the dashboard call.
"""

from __future__ import annotations

import json
import uuid

import pytest

from core.errors import Conflict, NotFound
from core.run_inputs import FEEDBACK_HEADING, InputAnswer, RunInputPublic
from core.runs import RunCreate
from core.schemas import AgentUpdate
from core.services import Services
from tests import test_runtime
from tests.llm_server import LlmServer, default_responder
from tests.test_runtime import WAIT, _agent, _events, _workspace
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

# The runtime tests' fixtures: a module-wide loopback LLM server, and services with short timeouts.
llm_server, server, rt = test_runtime.llm_server, test_runtime.server, test_runtime.rt


def _pending(rt: Services, run_id: uuid.UUID) -> list[RunInputPublic]:
    return rt.run_inputs.list(run_id, status="pending").items


def _next_request(rt: Services, run_id: uuid.UUID) -> RunInputPublic:
    return wait_until(lambda: (_pending(rt, run_id) or [None])[0], WAIT, "a request to a person")


def _start(rt: Services, ws: uuid.UUID, agents: list[uuid.UUID], **kw: object) -> uuid.UUID:
    data = RunCreate(workspace_id=ws, agent_ids=agents, idea="a CLI todo app", **kw)  # type: ignore[arg-type]
    return rt.runtime.start_run(data).id


def _answer_as_the_role_would(request: RunInputPublic) -> str:
    # What a careful person writes: the answer in the format the prompt asks for.
    return default_responder({"messages": request.prompt})


def test_a_person_plays_a_role_the_run_waits_and_their_answers_become_its_work(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    architect = _agent(rt, ws, "architect", "Bob")
    run_id = _start(rt, ws, [pm, architect], human_agent_ids=[pm], n_rounds=5)

    first = _next_request(rt, run_id)
    assert first.kind == "answer" and first.agent_id == pm and first.agent_name == "Alice"
    assert rt.runs.get(run_id).status == "waiting"
    prompt = json.dumps(first.prompt)
    assert "a CLI todo app" in prompt  # the prompt the product manager would have sent
    assert not server.chat_bodies  # nothing of Alice's went to the model

    answered: list[RunInputPublic] = []
    while not rt.runtime.wait_for_run(run_id, 0.2):
        for request in _pending(rt, run_id):
            answered.append(
                rt.run_inputs.answer(run_id, request.id, InputAnswer(text=_answer_as_the_role_would(request)))
            )

    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error
    assert answered and {a.agent_id for a in answered} == {pm}
    assert all(a.status == "answered" and a.answered_by == "user" for a in answered)
    transcript = [(m.sender, m.cause_by) for m in rt.messages.list_run(run_id, limit=100).items]
    assert transcript[:3] == [("user", "UserRequirement"), ("Alice", "WritePRD"), ("Bob", "WriteDesign")]
    # The architect's model read the PRD the person wrote (from the run's files).
    person_prd = json.loads(answered[-1].answer.split("[CONTENT]")[1].split("[/CONTENT]")[0])
    assert any(person_prd["Project Name"] in json.dumps(body) for body in server.chat_bodies)
    events = [(t, d) for t, d in _events(rt, run_id=run_id) if t.startswith("run_input")]
    assert events[0] == ("run_input_requested", {"input": events[0][1]["input"], "run_status": "waiting"})
    assert events[-1][0] == "run_input_answered" and events[-1][1]["run_status"] == "running"


def test_reject_sends_the_feedback_in_the_roles_next_prompt_and_keeps_the_rejected_version(
    rt: Services, server: LlmServer
) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    run_id = _start(rt, ws, [pm], approve_agent_ids=[pm], n_rounds=2)

    held = _next_request(rt, run_id)
    assert held.kind == "approval" and held.proposed and rt.runs.get(run_id).status == "waiting"
    requests_before = len(server.chat_bodies)
    rt.run_inputs.answer(run_id, held.id, InputAnswer(decision="reject", text="Add offline sync to the goals."))

    again = wait_until(
        lambda: next((r for r in _pending(rt, run_id) if r.id != held.id), None), WAIT, "the redone message"
    )
    redo_prompts = [json.dumps(b) for b in server.chat_bodies[requests_before:]]
    assert any(FEEDBACK_HEADING in p and "Add offline sync to the goals." in p for p in redo_prompts)
    assert all("Add offline sync" not in json.dumps(b) for b in server.chat_bodies[:requests_before])

    rt.run_inputs.answer(run_id, again.id, InputAnswer(decision="approve"))
    assert rt.runtime.wait_for_run(run_id, WAIT)
    assert rt.runs.get(run_id).status == "completed"
    prds = [m for m in rt.messages.list_run(run_id, limit=100).items if m.cause_by == "WritePRD"]
    assert [m.metadata.get("rejected", False) for m in prds] == [True, False]
    assert prds[0].metadata["feedback"] == "Add offline sync to the goals."
    assert prds[1].content == again.proposed  # approved: published unchanged


def test_an_edited_message_is_published_instead_of_the_proposed_one(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    server.responder = lambda body: "Proposed by the model."
    helper = _agent(rt, ws, "assistant", "Ada")
    run_id = _start(rt, ws, [helper], approve_agent_ids=[helper], n_rounds=2)

    held = _next_request(rt, run_id)
    assert held.proposed == "Proposed by the model."
    rt.run_inputs.answer(run_id, held.id, InputAnswer(decision="edit", text="Edited by a person."))
    assert rt.runtime.wait_for_run(run_id, WAIT)

    answers = [m.content for m in rt.messages.list_run(run_id).items if m.cause_by == "Respond"]
    assert answers == ["Edited by a person."]


def test_no_answer_before_the_deadline_fails_the_run_with_no_answer(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    run_id = _start(rt, ws, [pm], human_agent_ids=[pm], input_timeout=1)

    assert rt.runtime.wait_for_run(run_id, WAIT)
    run = rt.runs.get(run_id)
    assert run.status == "failed" and run.stop_reason == "no answer"
    assert "Alice" in run.error
    (request,) = rt.run_inputs.list(run_id).items
    assert request.status == "expired"
    assert rt.agents.get(pm).status == "active"


def test_answering_twice_is_a_conflict_and_another_workspace_cannot_answer(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    other = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    run_id = _start(rt, ws, [pm], human_agent_ids=[pm], n_rounds=1)
    request = _next_request(rt, run_id)

    with pytest.raises(NotFound):
        rt.run_inputs.answer(run_id, request.id, InputAnswer(text="x"), scope=other)
    with pytest.raises(NotFound):
        rt.run_inputs.list(run_id, scope=other)
    with pytest.raises(Exception, match="asks for an answer"):
        rt.run_inputs.answer(run_id, request.id, InputAnswer(decision="approve"))
    assert rt.run_inputs.get(request.id).status == "pending"  # refused answers changed nothing

    rt.run_inputs.answer(run_id, request.id, InputAnswer(text=_answer_as_the_role_would(request)))
    with pytest.raises(Conflict):
        rt.run_inputs.answer(run_id, request.id, InputAnswer(text="a second answer"))
    assert rt.run_inputs.get(request.id).answer != "a second answer"
    rt.runtime.cancel_run(run_id)


def test_cancel_while_waiting_ends_the_run_and_closes_its_requests(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    run_id = _start(rt, ws, [pm], human_agent_ids=[pm])
    request = _next_request(rt, run_id)

    rt.runtime.cancel_run(run_id)
    assert rt.runtime.wait_for_run(run_id, WAIT)
    assert rt.runs.get(run_id).status == "cancelled"
    assert rt.run_inputs.get(request.id).status == "cancelled"
    with pytest.raises(Conflict):
        rt.run_inputs.answer(run_id, request.id, InputAnswer(text="too late"))
    assert rt.run_inputs.pending_count(ws) == 0
    assert rt.agents.get(pm).status == "active"


def test_a_chat_reply_waits_for_approval_before_it_is_stored(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    server.responder = lambda body: "A draft reply."
    agent = _agent(rt, ws, "assistant", "geo")
    current = rt.agents.get(agent)
    rt.agents.update(
        agent,
        AgentUpdate(config={**current.config, "approve_replies": True}, expected_lock_version=current.lock_version),
    )

    rt.runtime.send_message(agent, "Write me a haiku.")
    held = wait_until(lambda: (rt.run_inputs.pending(ws) or [None])[0], WAIT, "the held reply")
    assert held.run_id is None and held.agent_id == agent and held.proposed == "A draft reply."
    assert [m.role for m in rt.messages.list(agent).items] == ["user"]  # not stored yet

    rt.run_inputs.answer(None, held.id, InputAnswer(decision="edit", text="An approved haiku."))
    assert rt.runtime.wait_for_chat(agent, WAIT)
    assert rt.messages.list(agent).items[0].content == "An approved haiku."
    assert rt.agents.get(agent).status == "active"


def test_an_edited_message_is_the_one_the_next_role_receives(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    architect = _agent(rt, ws, "architect", "Bob")
    run_id = _start(rt, ws, [pm, architect], approve_agent_ids=[pm], n_rounds=3)

    held = _next_request(rt, run_id)
    edited = "EDITED BY A PERSON\n" + held.proposed
    rt.run_inputs.answer(run_id, held.id, InputAnswer(decision="edit", text=edited))
    assert rt.runtime.wait_for_run(run_id, WAIT)
    assert rt.runs.get(run_id).status == "completed", rt.runs.get(run_id).error

    # MetaGPT routed the edited message: it is what the architect holds in its memory (read from the
    # team as checkpointed after each round), and what the transcript shows.
    checkpoints = sorted((rt.runtime.run_dir(run_id) / "checkpoints").glob("round-*/team.json"))
    assert checkpoints
    team = json.loads(checkpoints[-1].read_text())
    roles = team["env"]["roles"]
    architect_state = json.dumps(next(r for r in roles.values() if r.get("profile") == "Architect"))
    assert "EDITED BY A PERSON" in architect_state
    prd = next(m for m in rt.messages.list_run(run_id, limit=50).items if m.cause_by == "WritePRD")
    assert prd.content == edited
