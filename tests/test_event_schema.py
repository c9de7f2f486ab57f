"""The event vocabulary is defined once (core/event_schema.py) and holds producers to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.event_schema import PAYLOADS, EventType, InvalidEventPayload, frames_schema, payload_of
from core.events import EventFilter, append_event, read_events
from core.schemas import WorkspaceCreate
from core.services import Services

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "events.schema.json"


def test_every_event_type_has_a_payload_model() -> None:
    assert set(PAYLOADS) == set(EventType)


def test_the_documented_websocket_schema_is_the_generated_one() -> None:
    documented = json.loads(SCHEMA_FILE.read_text())
    assert documented == json.loads(json.dumps(frames_schema())), (
        "docs/events.schema.json is stale: uv run python -m core.event_schema > docs/events.schema.json"
    )
    assert set(documented["discriminator"]["mapping"]) == {t.value for t in EventType}


def test_a_payload_that_breaks_the_contract_is_refused_and_writes_nothing(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="events"))
    with services.db.read() as session:
        before = len(read_events(session, EventFilter(workspace_id=ws.id), 0, 100))
    with pytest.raises(InvalidEventPayload, match="agent_status_changed"), services.db.write() as session:
        append_event(session, EventType.AGENT_STATUS_CHANGED, ws.id, {"to": "busy"})
    with services.db.read() as session:
        assert len(read_events(session, EventFilter(workspace_id=ws.id), 0, 100)) == before


def test_consumers_read_typed_payloads_of_real_events(services: Services) -> None:
    from core.registry import sync_definitions
    from core.schemas import AgentCreate

    sync_definitions(services.db)
    ws = services.workspaces.create(WorkspaceCreate(slug="typed"))
    agent = services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="Ada"))
    services.agents.activate(agent.id)
    services.messages.append(agent.id, "hello")
    with services.db.read() as session:
        events = read_events(session, EventFilter(workspace_id=ws.id), 0, 100)
    typed = {e.type: payload_of(e.type, e.data) for e in events}
    assert typed["agent_created"].agent.name == "Ada"  # type: ignore[attr-defined]
    assert typed["agent_status_changed"].to == "active"  # type: ignore[attr-defined]
    assert "busy" in typed["agent_status_changed"].allowed_transitions  # type: ignore[attr-defined]
    assert typed["agent_message"].message.content == "hello"  # type: ignore[attr-defined]


def test_a_consumer_reads_an_event_as_its_own_type_only(services: Services) -> None:
    from core.event_schema import AgentCreated, AgentStatusChanged
    from core.registry import sync_definitions
    from core.schemas import AgentCreate

    sync_definitions(services.db)
    ws = services.workspaces.create(WorkspaceCreate(slug="typed-of"))
    services.agents.create(AgentCreate(workspace_id=ws.id, definition="assistant", name="Ada"))
    with services.db.read() as session:
        (created,) = read_events(session, EventFilter(workspace_id=ws.id, types=frozenset({"agent_created"})), 0, 10)
    assert AgentCreated.of(created).agent.name == "Ada"
    with pytest.raises(TypeError, match="agent_created event carries AgentCreated, not AgentStatusChanged"):
        AgentStatusChanged.of(created)


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ({"activity": "thinking", "agent_name": "Ada"}, "thinking…"),
        ({"activity": "calling_llm", "agent_name": "Ada"}, "calling the LLM…"),
        ({"activity": "acting", "agent_name": "Ada", "action": "WriteCode"}, "working on WriteCode…"),
        ({"activity": "acting", "agent_name": "Ada"}, "working on its task…"),
        # An activity the dashboard has no words for is shown by its name, braces and all.
        ({"activity": "installing_{0}_{action}"}, "installing {0} {action}…"),
    ],
)
def test_an_activity_is_described_once_for_every_page(payload: dict[str, str], said: str) -> None:
    from core.event_schema import AgentActivity

    assert AgentActivity.model_validate(payload).describe() == said
