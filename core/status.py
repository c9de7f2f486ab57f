"""The agent status machine of SPEC §3 — the one place that says which transitions exist."""

from __future__ import annotations

from enum import StrEnum

from core.errors import InvalidInput, InvalidTransition


class AgentStatus(StrEnum):
    IDLE = "idle"
    INITIALIZING = "initializing"
    ACTIVE = "active"
    BUSY = "busy"
    ERROR = "error"
    OFFLINE = "offline"


S = AgentStatus
ALLOWED_TRANSITIONS: dict[AgentStatus, tuple[AgentStatus, ...]] = {
    S.IDLE: (S.INITIALIZING, S.ACTIVE, S.OFFLINE, S.ERROR),
    S.INITIALIZING: (S.ACTIVE, S.ERROR, S.OFFLINE),
    S.ACTIVE: (S.BUSY, S.IDLE, S.ERROR, S.OFFLINE),
    S.BUSY: (S.ACTIVE, S.IDLE, S.ERROR, S.OFFLINE),
    S.ERROR: (S.IDLE, S.ACTIVE, S.OFFLINE),
    S.OFFLINE: (S.IDLE, S.INITIALIZING, S.ACTIVE),
}


def parse_status(value: str) -> AgentStatus:
    try:
        return AgentStatus(value)
    except ValueError as exc:
        raise InvalidInput(
            f"unknown status {value!r}; statuses are: {', '.join(s.value for s in AgentStatus)}",
            status=value,
        ) from exc


def allowed_targets(current: str) -> list[str]:
    return [s.value for s in ALLOWED_TRANSITIONS[parse_status(current)]]


def check_transition(current: str, target: str) -> AgentStatus:
    """The parsed target if `current -> target` is allowed; InvalidTransition otherwise."""
    parsed = parse_status(target)
    allowed = allowed_targets(current)
    if parsed.value not in allowed:
        raise InvalidTransition(current, parsed.value, allowed)
    return parsed


class RunStatus(StrEnum):
    """A team run's lifecycle (SPEC §9): queued → running (⇄ waiting) → one terminal status, with a reason.
    `interrupted` is left only for runs a user chose not to resume."""

    QUEUED = "queued"
    RUNNING = "running"
    # A person has a request of the run to answer (core/run_inputs.py); executing, not finished.
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


RUN_FINISHED: frozenset[RunStatus] = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED}
)
RUN_UNFINISHED: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING})
