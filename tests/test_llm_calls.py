"""Every LLM call recorded (issue 14): through MetaGPT's real OpenAI provider talking to the
loopback OpenAI-compatible server, and through the offline demo model in a whole SOP team run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core.config import Settings
from core.context import ContextUpdate
from core.errors import NotFound
from core.events import EventFilter, read_events
from core.llm_calls import LlmCallService, cap_messages
from core.llm_profiles import LlmProfileCreate
from core.registry import sync_definitions
from core.runs import RunCreate
from core.schemas import AgentCreate, WorkspaceCreate, WorkspaceUpdate
from core.services import Services, build_services
from storage.models import LlmCall
from storage.types import utcnow
from tests.llm_server import LlmServer, count_words, default_responder, prompt_tokens

pytestmark = pytest.mark.slow

WAIT = 60.0
API_KEY = "sk-test-secret-key-0123456789"


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


def _build(settings: Settings, **update: object) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = build_services(settings.model_copy(update={"llm_timeout": 2, "run_time_limit": 120, **update}))
    sync_definitions(built.db)
    built.runtime.ensure_ready()
    return built


@pytest.fixture
def rt(settings: Settings) -> Iterator[Services]:
    built = _build(settings)
    yield built
    built.runtime.shutdown()
    built.db.dispose()


def _workspace(rt: Services, server: LlmServer | None) -> uuid.UUID:
    ws = rt.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:8]}"))
    rt.workspaces.update(ws.id, WorkspaceUpdate(settings={"code_execution": False}))
    if server is not None:
        rt.llm_profiles.create(
            ws.id,
            LlmProfileCreate(
                name="loopback", api_type="openai", model="gpt-4o-mini", base_url=server.base_url, api_key=API_KEY
            ),
        )
    return ws.id


def _agent(rt: Services, ws: uuid.UUID, definition: str, name: str) -> uuid.UUID:
    agent = rt.agents.create(AgentCreate(workspace_id=ws, definition=definition, name=name))
    rt.agents.activate(agent.id)
    return agent.id


def _all_run_calls(rt: Services, run_id: uuid.UUID) -> list:
    return rt.llm_calls.run_timeline(run_id)


def test_a_chat_call_stores_the_prompt_as_sent_the_answer_tokens_and_latency(rt: Services, server: LlmServer) -> None:
    answer = "Paris is the capital of France, as your notes say."
    server.responder = lambda body: answer
    server.token_delay = 0.01
    ws = _workspace(rt, server)
    agent = _agent(rt, ws, "assistant", "geo")
    rt.contexts.update(agent, ContextUpdate(data={"project": "apollo-guidance"}))

    rt.runtime.send_message(agent, "What is the capital of France?")
    assert rt.runtime.wait_for_chat(agent, WAIT)

    page = rt.llm_calls.list_agent(agent, scope=ws)
    assert len(page.items) == 1 and page.next_cursor is None
    call = rt.llm_calls.get(page.items[0].id, scope=ws)
    body = server.chat_bodies[-1]
    assert call.request == [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
    sent = json.dumps(call.request)
    assert "What is the capital of France?" in sent
    assert "apollo-guidance" in sent  # the agent's context reached the prompt, and the record
    assert call.response == answer
    assert call.prompt_tokens == prompt_tokens(body)
    assert call.completion_tokens == count_words(answer)
    assert call.cost > 0
    assert call.outcome == "ok" and call.error == ""
    assert call.latency_ms is not None and call.latency_ms > 0
    assert call.stream and call.ttft_ms is not None and 0 < call.ttft_ms <= call.latency_ms
    assert call.model == "gpt-4o-mini" and "loopback" in call.profile
    assert call.action == "Respond" and call.run_id is None and call.round is None
    assert call.agent_id == agent and call.agent_name == "geo"
    # The reply message and the call agree on usage.
    reply = rt.messages.list(agent).items[0]
    assert (reply.prompt_tokens, reply.completion_tokens) == (call.prompt_tokens, call.completion_tokens)

    with rt.db.read() as session:
        events = [e for e in read_events(session, EventFilter(agent_id=agent), 0, 1000) if e.type == "llm_call"]
    assert [e.data["state"] for e in events] == ["started", "finished"]
    assert {e.data["call_id"] for e in events} == {str(call.id)}
    assert events[1].data["outcome"] == "ok"


def test_a_500_from_the_server_is_a_call_with_outcome_error_and_no_key(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    agent = _agent(rt, ws, "assistant", "victim")
    server.fail(times=None, status=500)

    rt.runtime.send_message(agent, "please answer")
    assert rt.runtime.wait_for_chat(agent, WAIT)
    server.clear_faults()

    [summary] = rt.llm_calls.list_agent(agent).items
    call = rt.llm_calls.get(summary.id)
    assert call.outcome == "error"
    assert "InternalServerError" in call.error and "500" in call.error
    assert call.response == "" and call.latency_ms is not None and call.latency_ms > 0
    assert "please answer" in json.dumps(call.request)
    with rt.db.read() as session:
        stored = json.dumps([list(r) for r in session.exec(sa.select(LlmCall))], default=str)  # type: ignore[call-overload]
    assert API_KEY not in stored
    assert rt.agents.get(agent).status == "error"


def test_a_team_run_through_the_server_stores_one_call_per_request(rt: Services, server: LlmServer) -> None:
    ws = _workspace(rt, server)
    pm = _agent(rt, ws, "product-manager", "Alice")
    architect = _agent(rt, ws, "architect", "Bob")
    run_id = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=[pm, architect], idea="a CLI todo app")).id
    assert rt.runtime.wait_for_run(run_id, WAIT)
    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error

    calls = _all_run_calls(rt, run_id)
    assert len(calls) == len(server.chat_requests) > 0
    assert [c.prompt_tokens for c in calls] == [prompt_tokens(b) for b in server.chat_bodies]
    assert sum(c.prompt_tokens for c in calls) == run.prompt_tokens
    assert {c.agent_name for c in calls} == {"Alice", "Bob"}
    assert {c.action for c in calls if c.agent_name == "Alice"} == {"WritePRD"}
    assert {c.action for c in calls if c.agent_name == "Bob"} == {"WriteDesign"}
    assert all(c.round is not None and c.round >= 1 and c.outcome == "ok" for c in calls)
    assert min(c.round for c in calls if c.agent_name == "Bob") > min(c.round for c in calls if c.agent_name == "Alice")


def test_a_demo_model_team_run_stores_one_call_per_llm_call_with_round_and_action(rt: Services) -> None:
    ws = _workspace(rt, None)
    agents = [
        _agent(rt, ws, slug, name)
        for slug, name in [
            ("product-manager", "Priya"),
            ("architect", "Arjun"),
            ("project-manager", "Petra"),
            ("engineer", "Emil"),
        ]
    ]
    run_id = rt.runtime.start_run(RunCreate(workspace_id=ws, agent_ids=agents, idea="a CLI todo app", n_rounds=8)).id
    assert rt.runtime.wait_for_run(run_id, 120)
    run = rt.runs.get(run_id)
    assert run.status == "completed", run.error

    calls = _all_run_calls(rt, run_id)
    # Every LLM call the roles made passed MetaGPT's cost manager once: its totals are the run's.
    assert len(calls) >= 4
    assert sum(c.prompt_tokens for c in calls) == run.prompt_tokens
    assert sum(c.completion_tokens for c in calls) == run.completion_tokens
    assert all(c.prompt_tokens > 0 and c.completion_tokens > 0 for c in calls)
    assert all(c.round is not None and 1 <= c.round <= 8 for c in calls)
    assert all(c.action for c in calls) and all(c.profile == "demo model" for c in calls)
    assert all(c.model == "agentdeck-demo" and c.outcome == "ok" for c in calls)
    by_agent = {c.agent_name: c.action for c in calls}
    assert {"Priya", "Arjun", "Petra", "Emil"} <= set(by_agent)
    actions = {c.action for c in calls}
    assert {"WritePRD", "WriteDesign", "WriteTasks", "WriteCode"} <= actions
    # Each published message's cause has the calls that produced it.
    causes = {m.cause_by for m in rt.messages.list_run(run_id, limit=500).items if m.sender != "user"}
    assert causes <= actions | {"SummarizeCode", "RunCode"}
    full = rt.llm_calls.get(calls[0].id)
    assert full.request and full.response.strip()


def test_prompts_and_responses_over_the_cap_are_truncated_and_marked(settings: Settings, server: LlmServer) -> None:
    rt = _build(settings, llm_call_max_chars=300)
    try:
        server.responder = lambda body: "word " * 200
        ws = _workspace(rt, server)
        agent = _agent(rt, ws, "assistant", "long")
        rt.runtime.send_message(agent, "tell me " * 100)
        assert rt.runtime.wait_for_chat(agent, WAIT)
        call = rt.llm_calls.get(rt.llm_calls.list_agent(agent).items[0].id)
    finally:
        rt.runtime.shutdown()
        rt.db.dispose()
    assert call.response_truncated_from == len("word " * 200)
    assert call.response.startswith("word word") and "truncated by AgentDeck" in call.response
    assert call.request_truncated_from is not None and call.request_truncated_from > 300
    assert "truncated by AgentDeck" in json.dumps(call.request)
    assert sum(len(m["content"]) for m in call.request) < 300 + 200 * len(call.request)
    # Tokens are what the server counted for the whole prompt, not the stored part.
    assert call.prompt_tokens == prompt_tokens(server.chat_bodies[-1])


def test_recording_off_stores_nothing_and_the_chat_still_answers(settings: Settings) -> None:
    rt = _build(settings, record_llm_calls=False)
    try:
        ws = _workspace(rt, None)
        agent = _agent(rt, ws, "assistant", "quiet")
        rt.runtime.send_message(agent, "hi")
        assert rt.runtime.wait_for_chat(agent, WAIT)
        assert rt.messages.list(agent).items[0].role == "assistant"
        assert rt.llm_calls.list_agent(agent).items == []
    finally:
        rt.runtime.shutdown()
        rt.db.dispose()


def test_pages_are_keyset_newest_first_and_scoped_to_the_workspace(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="own")).id
    other = services.workspaces.create(WorkspaceCreate(slug="other")).id
    agent = services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="a")).id
    ids = [
        services.llm_calls.start(ws, [{"role": "user", "content": f"q{i}"}], agent_id=agent, agent_name="a")
        for i in range(7)
    ]
    for call_id in ids:
        services.llm_calls.finish(call_id, "ok", response="r", latency_ms=1.0)
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = services.llm_calls.list_agent(agent, scope=ws, limit=3, cursor=cursor)
        seen += [c.id for c in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert services.llm_calls.list_agent(agent, scope=ws, limit=1).items[0].prompt_preview == "q6"
    with pytest.raises(NotFound):
        services.llm_calls.list_agent(agent, scope=other)
    with pytest.raises(NotFound):
        services.llm_calls.get(ids[0], scope=other)


def test_retention_deletes_calls_older_than_the_event_retention(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="keep")).id
    old = services.llm_calls.start(ws, [{"role": "user", "content": "old"}])
    new = services.llm_calls.start(ws, [{"role": "user", "content": "new"}])
    with services.db.write() as session:
        row = session.get(LlmCall, old)
        assert row is not None
        row.created_at = utcnow() - timedelta(days=40)
        session.add(row)
    assert services.llm_calls.purge_older_than(30) == 1
    assert services.llm_calls.get(new).id == new
    with pytest.raises(NotFound):
        services.llm_calls.get(old)
    assert LlmCallService(services.db).purge_older_than(0) == 0


def test_cap_messages_keeps_every_role_and_marks_the_cut() -> None:
    kept, original = cap_messages([{"role": "system", "content": "s" * 10}, {"role": "user", "content": "u" * 20}], 15)
    assert original == 30
    assert [m["role"] for m in kept] == ["system", "user"]
    assert kept[0]["content"] == "s" * 10
    assert kept[1]["content"].startswith("u" * 5) and "15 more characters" in kept[1]["content"]
