"""The MetaGPT runtime over real HTTP: MetaGPT's own OpenAI provider talks to a loopback
OpenAI-compatible server (tests/llm_server.py); nothing of MetaGPT or AgentDeck is mocked."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.context import ContextUpdate
from core.events import EventFilter, read_events
from core.llm_profiles import LlmProfileCreate
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from tests.llm_server import LlmServer, count_words, default_responder, prompt_tokens
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WAIT = 60.0


@pytest.fixture(scope="module")
def llm_server() -> Iterator[LlmServer]:
    with LlmServer() as server:
        yield server


@pytest.fixture
def server(llm_server: LlmServer) -> LlmServer:
    llm_server.clear_faults()
    llm_server.clear_requests()
    llm_server.responder = default_responder
    llm_server.token_delay = 0.0
    return llm_server


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    """Services with short LLM timeouts so failure paths end quickly."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings.model_copy(update={"llm_timeout": 2, "run_time_limit": 120}))
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def _workspace(rt: Services, server: LlmServer | None, code_execution: bool = False) -> uuid.UUID:
    ws = rt.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:8]}"))
    rt.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": code_execution}))
    if server is not None:
        rt.llm_profiles.create(
            ws.id,
            LlmProfileCreate(
                name="loopback", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key="sk-test"
            ),
        )
    return ws.id


def _agent(rt: Services, ws: uuid.UUID, definition: str, name: str, active: bool = True) -> uuid.UUID:
    agent = rt.agents.create(AgentCreate(workspace_id=ws, definition=definition, name=name))
    if active:
        rt.agents.activate(agent.id)
    return agent.id


def _events(rt: Services, **flt: uuid.UUID) -> list[tuple[str, dict]]:
    with rt.db.read() as session:
        return [(e.type, e.data) for e in read_events(session, EventFilter(**flt), 0, 5000)]


def _statuses(rt: Services, agent_id: uuid.UUID) -> list[str]:
    return [c.to_status for c in reversed(rt.agents.status_history(agent_id, limit=500).items)]


# -- chat ------------------------------------------------------------------------------------


def test_chat_answer_goes_through_the_openai_provider_and_is_recorded(rt: Services, server: LlmServer) -> None:
    server.responder = lambda body: "Paris is the capital of France."
    ws = _workspace(rt, server)
    agent = _agent(rt, ws, "assistant", "geo")

    asked = rt.runtime.send_message(agent, "What is the capital of France?")
    assert rt.runtime.wait_for_chat(agent, WAIT)

    thread = rt.messages.list(agent).items  # newest first
    assert [m.role for m in thread] == ["assistant", "user"]
    reply = thread[0]
    assert reply.content == "Paris is the capital of France."
    assert reply.metadata["in_reply_to"] == str(asked.id)
    assert reply.metadata["demo_model"] is False
    body = server.chat_bodies[-1]
    assert body["model"] == "gpt-4o-mini"
    assert "What is the capital of France?" in json.dumps(body["messages"])
    assert reply.prompt_tokens == prompt_tokens(body)
    assert reply.completion_tokens == count_words("Paris is the capital of France.")
    assert reply.cost > 0  # gpt-4o-mini has a price in MetaGPT's table

    assert _statuses(rt, agent)[-3:] == ["active", "busy", "active"]
    types = [t for t, _ in _events(rt, agent_id=agent)]
    first_user = types.index("agent_message")
    busy = types.index("agent_status_changed", first_user)
    reply_at = len(types) - 1 - types[::-1].index("agent_message")
    assert first_user < busy < types.index("agent_activity") < reply_at
    assert types[-1] == "agent_status_changed"  # back to active after the reply is stored
    activities = [d["activity"] for t, d in _events(rt, agent_id=agent) if t == "agent_activity"]
    assert "thinking" in activities and "calling_llm" in activities


def test_the_agent_context_reaches_the_prompt_and_the_agent_can_write_it(rt: Services, server: LlmServer) -> None:
    server.responder = lambda body: (
        "Noted, you like Rust.\n```agentdeck-context\n" + '{"favourite_language": "Rust", "tone": null}\n```'
    )
    ws = _workspace(rt, server)
    agent = _agent(rt, ws, "assistant", "memo")
    rt.contexts.update(agent, ContextUpdate(data={"tone": "formal", "project": "apollo"}))

    rt.runtime.send_message(agent, "I like Rust.")
    assert rt.runtime.wait_for_chat(agent, WAIT)

    assert "apollo" in json.dumps(server.chat_bodies[-1]["messages"])
    context = rt.contexts.get(agent)
    assert context.data == {"project": "apollo", "favourite_language": "Rust"}
    latest = rt.contexts.versions(agent).items[0]
    assert latest.author == "agent:memo"
    reply = rt.messages.list(agent).items[0]
    assert reply.content == "Noted, you like Rust."
    assert reply.metadata["context_version"] == context.version


def test_messages_sent_while_the_agent_answers_are_answered_next_in_order(rt: Services, server: LlmServer) -> None:
    answers = iter(["answer one", "answer two", "answer three"])
    server.responder = lambda body: next(answers)
    ws = _workspace(rt, server)
    agent = _agent(rt, ws, "assistant", "queue")

    server.delay(1.5)  # the first answer takes a while: the next two messages arrive meanwhile
    first = rt.runtime.send_message(agent, "first question")
    wait_until(lambda: rt.agents.get(agent).status == "busy", WAIT, "the agent to start answering", interval=0.02)
    second = rt.runtime.send_message(agent, "second question")
    third = rt.runtime.send_message(agent, "third question")
    assert rt.runtime.chat_in_progress(agent)
    assert rt.runtime.wait_for_chat(agent, WAIT)

    thread = list(reversed(rt.messages.list(agent).items))
    assert [m.content for m in thread] == [
        "first question",
        "second question",
        "third question",
        "answer one",
        "answer two",
        "answer three",
    ]
    assert [m.metadata["in_reply_to"] for m in thread[3:]] == [str(first.id), str(second.id), str(third.id)]
    prompts = [json.dumps(body["messages"]) for body in server.chat_bodies]
    assert len(prompts) == 3
    # Each is answered with the replies written so far, and without the questions still waiting.
    assert "first question" in prompts[0] and "second question" not in prompts[0]
    assert "answer one" in prompts[1] and "second question" in prompts[1] and "third question" not in prompts[1]
    assert "answer two" in prompts[2] and "third question" in prompts[2]
    assert rt.agents.get(agent).status == "active"
    assert not rt.runtime.chat_in_progress(agent)


def test_an_inactive_agent_keeps_the_message_and_does_not_answer(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    agent = _agent(rt, ws, "assistant", "sleepy", active=False)
    rt.runtime.send_message(agent, "hello?")
    assert rt.runtime.wait_for_chat(agent, 1)
    assert [m.role for m in rt.messages.list(agent).items] == ["user"]
    assert server.chat_bodies == []


@pytest.mark.parametrize("fault", ["http_500", "garbage", "stall", "endpoint_down"])
def test_llm_failure_puts_the_agent_in_error_and_keeps_the_users_message(
    rt: Services, server: LlmServer, fault: str
) -> None:
    ws = _workspace(rt, server)
    if fault == "endpoint_down":
        dead = LlmServer().start()
        dead_url = dead.base_url
        dead.stop()
        profile = rt.llm_profiles.list(ws)[0]
        from core.llm_profiles import LlmProfileUpdate

        rt.llm_profiles.update(profile.id, LlmProfileUpdate(base_url=dead_url))
    elif fault == "http_500":
        server.fail(times=None, status=500)
    elif fault == "garbage":
        server.garbage(times=None)
    else:
        server.stall(times=None)
    agent = _agent(rt, ws, "assistant", f"victim-{fault}")

    started = time.monotonic()
    rt.runtime.send_message(agent, "please answer")
    assert rt.runtime.wait_for_chat(agent, WAIT)
    assert time.monotonic() - started < WAIT

    state = rt.agents.get(agent)
    assert state.status == "error"
    assert state.status_reason.startswith("LLM call failed")
    assert [m.content for m in rt.messages.list(agent).items] == ["please answer"]
    server.clear_faults()


def test_demo_model_answers_without_any_profile(rt: Services) -> None:
    ws = _workspace(rt, None)
    agent = _agent(rt, ws, "assistant", "demo")
    rt.runtime.send_message(agent, "hi")
    assert rt.runtime.wait_for_chat(agent, WAIT)
    reply = rt.messages.list(agent).items[0]
    assert reply.content.startswith("(demo model)")
    assert reply.metadata["llm"] == "demo model" and reply.metadata["demo_model"] is True
    assert reply.completion_tokens > 0 and reply.cost == 0
    assert rt.agents.get(agent).status == "active"


# -- team runs -------------------------------------------------------------------------------


def _start(rt: Services, ws: uuid.UUID, agents: list[uuid.UUID], **kw: object) -> uuid.UUID:
    data = RunCreate(workspace_id=ws, agent_ids=agents, idea="a CLI todo app", **kw)  # type: ignore[arg-type]
    return rt.runtime.start_run(data).id


def test_two_role_team_run_records_messages_events_tokens_and_costs(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    architect = _agent(rt, ws, "architect", "Bob")

    run_id = _start(rt, ws, [pm, architect], n_rounds=5)
    assert rt.runtime.wait_for_run(run_id, WAIT)

    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error
    assert run.stop_reason == "every role finished its work"
    transcript = rt.messages.list_run(run_id, limit=100).items
    assert [(m.sender, m.cause_by) for m in transcript] == [
        ("user", "UserRequirement"),
        ("Alice", "WritePRD"),
        ("Bob", "WriteDesign"),
    ]
    assert transcript[0].agent_id == pm and transcript[0].content == "a CLI todo app"
    assert all(m.run_id == run_id for m in transcript)

    members = {m.agent_id: m for m in run.members}
    assert members[pm].prompt_tokens > 0 and members[architect].prompt_tokens > 0
    assert run.prompt_tokens == sum(m.prompt_tokens for m in run.members)
    assert run.completion_tokens == sum(m.completion_tokens for m in run.members)
    assert run.tokens == run.prompt_tokens + run.completion_tokens
    assert run.cost == pytest.approx(sum(m.cost for m in run.members)) and run.cost > 0
    # Every request the server answered is accounted for, attributed to one of the two agents.
    assert run.prompt_tokens == sum(prompt_tokens(b) for b in server.chat_bodies)
    assert sum(m.prompt_tokens for m in transcript) == run.prompt_tokens

    run_events = [t for t, _ in _events(rt, run_id=run_id)]
    assert run_events[:2] == ["run_created", "run_started"] and run_events[-1] == "run_finished"
    assert run_events.count("run_round") >= 2
    for agent in (pm, architect):
        assert "busy" in _statuses(rt, agent)
        assert rt.agents.get(agent).status == "active"
    files = rt.runtime.run_files(run_id)
    assert any(f.endswith(".json") and "/docs/prd/" in f for f in files)
    assert "Original Requirements" in rt.runtime.read_run_file(run_id, next(f for f in files if "/docs/prd/" in f))


def test_llm_error_fails_the_run_and_the_agent_and_leaves_nobody_busy(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    architect = _agent(rt, ws, "architect", "Bob")
    server.fail(times=None, status=500)

    run_id = _start(rt, ws, [pm, architect])
    assert rt.runtime.wait_for_run(run_id, WAIT)

    run = rt.runs.get(run_id)
    assert run.status == "failed"
    assert "InternalServerError" in run.error
    assert rt.agents.get(pm).status == "error"
    assert "InternalServerError" in rt.agents.get(pm).status_reason
    assert rt.agents.get(architect).status == "active"
    assert [m.cause_by for m in rt.messages.list_run(run_id).items] == ["UserRequirement"]


def test_budget_exhaustion_stops_the_run_with_the_reason(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    architect = _agent(rt, ws, "architect", "Bob")

    run_id = _start(rt, ws, [pm, architect], investment=0.000001, n_rounds=5)
    assert rt.runtime.wait_for_run(run_id, WAIT)

    run = rt.runs.get(run_id)
    assert run.status == "completed"
    assert run.stop_reason.startswith("budget exhausted")
    assert run.cost >= run.investment
    # The architect never got a round: the budget was gone after the PM's PRD.
    assert [m.cause_by for m in rt.messages.list_run(run_id).items] == ["UserRequirement", "WritePRD"]


def test_cancel_mid_round_takes_effect_within_a_second(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    server.token_delay = 0.2  # a slow stream: the run is mid-request when cancelled

    run_id = _start(rt, ws, [pm])
    wait_until(lambda: server.chat_requests, WAIT, "the run to call the LLM", interval=0.05)

    asked = time.monotonic()
    run = rt.runtime.cancel_run(run_id, actor="tester")
    assert time.monotonic() - asked < 1.5
    assert run.status == "cancelled"
    assert run.stop_reason == "cancelled by tester"
    assert rt.agents.get(pm).status == "active"


def test_demo_model_sop_team_completes_a_run_end_to_end(rt: Services) -> None:
    ws = _workspace(rt, None, code_execution=False)
    agents = [
        _agent(rt, ws, slug, name)
        # Not MetaGPT's default names: its roles address each other by those, and the run must
        # work whatever the agents are called.
        for slug, name in [
            ("product-manager", "Priya (PM)"),
            ("architect", "Arjun (Architect)"),
            ("project-manager", "Petra (Project Manager)"),
            ("engineer", "Emil (Engineer)"),
            ("qa-engineer", "Quinn (QA)"),
        ]
    ]
    run_id = _start(rt, ws, agents, n_rounds=12)
    assert rt.runtime.wait_for_run(run_id, 120)

    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error
    assert run.llm_label == "demo model"
    causes = [m.cause_by for m in rt.messages.list_run(run_id, limit=500).items]
    for expected in ("UserRequirement", "WritePRD", "WriteDesign", "WriteTasks", "WriteCode", "WriteTest"):
        assert expected in causes, causes
    # Code execution is off: the QA engineer wrote tests but said it did not run them.
    transcript = rt.messages.list_run(run_id, limit=500).items
    notes = [m.content for m in transcript if m.cause_by == "RunCode"]
    assert notes and all("Code execution is turned off" in n for n in notes)
    assert {m.sender for m in transcript if m.cause_by == "WriteTest"} == {"Quinn (QA)"}
    assert not (rt.runtime.run_dir(run_id) / "venv").exists()
    files = rt.runtime.run_files(run_id)
    assert any(f.endswith(".py") for f in files)


def test_runtime_files_stay_under_the_data_dir(rt: Services, tmp_path: Path) -> None:
    from metagpt.const import METAGPT_ROOT

    assert Path(METAGPT_ROOT).exists()
    assert not (Path.cwd() / "workspace").exists()
    assert not (Path.cwd() / "logs").exists()


def test_two_assistants_in_one_run_both_answer_the_idea(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    server.responder = lambda body: "An answer from the loopback model."
    first = _agent(rt, ws, "assistant", "Ada")
    second = _agent(rt, ws, "assistant", "Grace")

    run_id = _start(rt, ws, [first, second], n_rounds=3)
    assert rt.runtime.wait_for_run(run_id, WAIT)

    assert rt.runs.get(run_id).status == "completed"
    answers = [m for m in rt.messages.list_run(run_id).items if m.cause_by == "Respond"]
    assert sorted(m.sender for m in answers) == ["Ada", "Grace"]
