"""The event vocabulary (SPEC §5): every event type and the payload each carries, defined once.

`append_event` and `EventBus.publish_ephemeral` validate each payload against the model of its
type before it is written or pushed, so a producer that drifts from what consumers read fails at
the producer, in tests, instead of silently in a dashboard. Consumers read a typed payload with
`AgentStatusChanged.of(event)` (or `payload_of` when the type varies); the WebSocket's message schema is generated from these models
(`uv run python -m core.event_schema > docs/events.schema.json`, checked by a test).

Fields listed here are the contract; producers may add detail (extra keys are kept), so adding a
field is backwards compatible and removing or retyping one is a schema change.
"""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class EventType(StrEnum):
    AGENT_CREATED = "agent_created"
    AGENT_UPDATED = "agent_updated"
    AGENT_DELETED = "agent_deleted"
    AGENT_STATUS_CHANGED = "agent_status_changed"
    AGENT_ACTIVITY = "agent_activity"
    AGENT_MESSAGE = "agent_message"
    AGENT_CONTEXT_UPDATED = "agent_context_updated"
    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_ROUND = "run_round"
    RUN_FINISHED = "run_finished"
    # A person resumed an interrupted run (core/runs.py `reopen`): it is queued again.
    RUN_RESUMED = "run_resumed"
    RUN_INPUT_REQUESTED = "run_input_requested"
    RUN_INPUT_ANSWERED = "run_input_answered"
    # A bundle was imported as this workspace (core/bundles.py): one summary event, not its history.
    WORKSPACE_IMPORTED = "workspace_imported"
    LLM_TOKEN = "llm_token"
    # An LLM call started or finished (core/llm_calls.py).
    LLM_CALL = "llm_call"
    # Control frame: the subscriber fell behind and was re-synced from the log.
    RESUME = "resume"


class ReceivedEvent(Protocol):
    type: str
    data: dict[str, Any]


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    @classmethod
    def of(cls, event: ReceivedEvent) -> Self:
        """The payload of a received event of this model's type. Reading an event as the wrong
        type is the consumer's bug: it fails here, not as a missing key somewhere later."""
        expected = PAYLOADS.get(EventType(event.type))
        if expected is not cls:
            raise TypeError(
                f"a {event.type} event carries {expected.__name__ if expected else 'nothing'}, not {cls.__name__}"
            )
        return cls.model_validate(event.data)


# Objects embedded whole (an agent, a run, a message, a request) are their API models as JSON:
# typed here as objects with the fields every consumer reads.
class EmbeddedAgent(Payload):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    status: str


class EmbeddedRun(Payload):
    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str
    idea: str


class EmbeddedMessage(Payload):
    id: uuid.UUID
    agent_id: uuid.UUID
    seq: int
    role: str
    sender: str
    content: str


class EmbeddedInput(Payload):
    id: uuid.UUID
    run_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    kind: Literal["answer", "approval"]
    status: Literal["pending", "answered", "expired", "cancelled"]


class AgentCreated(Payload):
    agent: EmbeddedAgent
    actor: str


class AgentUpdated(Payload):
    agent: EmbeddedAgent
    changed: list[str]
    actor: str


class AgentDeleted(Payload):
    agent_id: uuid.UUID
    name: str
    actor: str


class AgentStatusChanged(Payload):
    from_: str | None = Field(alias="from")
    to: str
    reason: str
    actor: str
    lock_version: int
    allowed_transitions: list[str]

    def agent_fields(self) -> dict[str, Any]:
        """What this change sets on the agent it is about: `agent.model_copy(update=...)`."""
        return {
            "status": self.to,
            "status_reason": self.reason,
            "allowed_transitions": self.allowed_transitions,
            "lock_version": self.lock_version,
        }


class AgentActivity(Payload):
    activity: str
    agent_name: str = ""  # run-level activity (sandbox, refused files) names no agent
    action: str | None = None  # "acting": the MetaGPT action the agent works on

    def describe(self) -> str:
        """What the agent is doing, as the dashboard says it: "working on WriteCode…"."""
        if self.activity == "thinking":
            return "thinking…"
        if self.activity == "calling_llm":
            return "calling the LLM…"
        if self.activity == "acting":
            return f"working on {self.action or 'its task'}…"
        return self.activity.replace("_", " ") + "…"


class AgentMessage(Payload):
    message: EmbeddedMessage
    actor: str | None = None


class AgentContextUpdated(Payload):
    version: int
    previous_version: int
    kind: str
    author: str
    reason: str
    rolled_back_to: int | None = None


class RunSnapshot(Payload):
    run: EmbeddedRun


class RunResumed(Payload):
    run: EmbeddedRun
    actor: str
    # The round it continues at (the rounds before it are checkpointed and not played again).
    round: int


class RunRound(Payload):
    round: int
    n_rounds: int


class RunInputChanged(Payload):
    input: EmbeddedInput
    run_status: str | None


class WorkspaceImported(Payload):
    slug: str
    rows: dict[str, int]
    files: int
    actor: str


class LlmCall(Payload):
    call_id: uuid.UUID
    state: Literal["started", "finished"]
    agent_name: str
    round: int | None
    action: str
    model: str
    started_at: str | None = None  # state started
    outcome: str | None = None  # state finished: ok, error, cancelled, ...
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None


class LlmToken(Payload):
    text: str
    agent_name: str


class Resume(Payload):
    since: int


PAYLOADS: dict[EventType, type[Payload]] = {
    EventType.AGENT_CREATED: AgentCreated,
    EventType.AGENT_UPDATED: AgentUpdated,
    EventType.AGENT_DELETED: AgentDeleted,
    EventType.AGENT_STATUS_CHANGED: AgentStatusChanged,
    EventType.AGENT_ACTIVITY: AgentActivity,
    EventType.AGENT_MESSAGE: AgentMessage,
    EventType.AGENT_CONTEXT_UPDATED: AgentContextUpdated,
    EventType.RUN_CREATED: RunSnapshot,
    EventType.RUN_STARTED: RunSnapshot,
    EventType.RUN_ROUND: RunRound,
    EventType.RUN_FINISHED: RunSnapshot,
    EventType.RUN_RESUMED: RunResumed,
    EventType.RUN_INPUT_REQUESTED: RunInputChanged,
    EventType.RUN_INPUT_ANSWERED: RunInputChanged,
    EventType.LLM_TOKEN: LlmToken,
    EventType.LLM_CALL: LlmCall,
    EventType.WORKSPACE_IMPORTED: WorkspaceImported,
    EventType.RESUME: Resume,
}


class InvalidEventPayload(ValueError):
    """A producer wrote a payload its event type does not allow: a bug in the producer."""


def validate_payload(type: EventType, data: dict[str, Any]) -> None:
    model = PAYLOADS.get(type)
    if model is None:
        raise InvalidEventPayload(f"no payload model for event type {type!r} (core/event_schema.py)")
    try:
        model.model_validate(data)
    except ValueError as exc:
        raise InvalidEventPayload(f"{type} payload does not match {model.__name__}: {exc}") from exc


def payload_of(type: str, data: dict[str, Any]) -> Payload:
    """A received event's payload as its model (consumers: `payload_of(event.type, event.data)`)."""
    return PAYLOADS[EventType(type)].model_validate(data)


def type_frame(name: str, payload: type[Payload]) -> type[BaseModel]:
    """The WebSocket frame of one event type: the envelope with its typed `data`."""
    fields: dict[str, Any] = {
        "seq": (int | None, Field(description="position in the event log; null for pushed-only events")),
        "type": (Literal[name], ...),
        "workspace_id": (uuid.UUID | None, ...),
        "agent_id": (uuid.UUID | None, None),
        "run_id": (uuid.UUID | None, None),
        "ts": (str, Field(description="ISO 8601 time of the event")),
        "data": (payload, ...),
    }
    from pydantic import create_model

    return create_model(f"{payload.__name__}Frame_{name}", **fields)


def frames_schema() -> dict[str, Any]:
    """JSON Schema of every frame the WebSocket streams send (a union discriminated on `type`)."""
    frames = tuple(type_frame(t.value, p) for t, p in PAYLOADS.items())
    # Built at run time from the registry: a value to the type checker, not a static type.
    union: Any = Annotated[frames[0] if len(frames) == 1 else _union(frames), Field(discriminator="type")]
    schema = TypeAdapter(union).json_schema(by_alias=True)
    schema["title"] = "AgentDeck event frames (/ws/agents/stream, /ws/agents/{agent_id})"
    schema["$comment"] = "Generated by `uv run python -m core.event_schema`; do not edit by hand."
    return schema


def _union(types: tuple[type[BaseModel], ...]) -> Any:
    from typing import Union

    return Union[types]  # noqa: UP007 (built from a runtime tuple)


if __name__ == "__main__":
    print(json.dumps(frames_schema(), indent=2, sort_keys=True))
