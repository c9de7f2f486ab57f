"""The agent status machine (SPEC §3), on the real database (SQLite or PostgreSQL).

The table below is copied from SPEC §3 on purpose, not imported from core: the tests compare core
against the specification, so a change to `core.status` that drifts from the SPEC fails here.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlmodel import func, select

from core.errors import Conflict, InvalidInput, InvalidTransition, StaleVersion
from core.events import EventFilter, EventType, read_events
from core.schemas import AgentCreate, AgentPublic, WorkspaceCreate
from core.services import Services
from core.status import ALLOWED_TRANSITIONS, AgentStatus, allowed_targets, check_transition
from storage.models import AgentInstance, AgentStatusChange, Event

# SPEC §3, verbatim.
SPEC_TRANSITIONS: dict[str, set[str]] = {
    "idle": {"initializing", "active", "offline", "error"},
    "initializing": {"active", "error", "offline"},
    "active": {"busy", "idle", "error", "offline"},
    "busy": {"active", "idle", "error", "offline"},
    "error": {"idle", "active", "offline"},
    "offline": {"idle", "initializing", "active"},
}
STATUSES = sorted(SPEC_TRANSITIONS)
ALL_PAIRS = [(current, target) for current in STATUSES for target in STATUSES]

MACHINE_SETTINGS = settings(
    max_examples=12,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RACE_ROUNDS = 20


# -- helpers -------------------------------------------------------------------------------------
def make_workspace(services: Services) -> uuid.UUID:
    return services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:10]}")).id


def make_agent(services: Services, workspace_id: uuid.UUID) -> AgentPublic:
    return services.agents.create(
        AgentCreate(workspace_id=workspace_id, definition="assistant", name=f"agent-{uuid.uuid4().hex[:10]}")
    )


@dataclass(frozen=True)
class Snapshot:
    """Everything a status change may touch, as stored."""

    status: str
    lock_version: int
    audit_rows: int
    events: int


def snapshot(services: Services, agent_id: uuid.UUID) -> Snapshot:
    with services.db.read() as session:
        agent = session.get_one(AgentInstance, agent_id)
        audit = session.exec(
            select(func.count()).select_from(AgentStatusChange).where(AgentStatusChange.agent_id == agent_id)
        ).one()
        events = session.exec(select(func.count()).select_from(Event).where(Event.agent_id == agent_id)).one()
    return Snapshot(agent.status, agent.lock_version, audit, events)


def audit_trail(services: Services, agent_id: uuid.UUID) -> list[tuple[str | None, str]]:
    """(from, to) of every AgentStatusChange, oldest first, read through the service's pages."""
    rows, cursor = [], None
    while True:
        page = services.agents.status_history(agent_id, limit=500, cursor=cursor)
        rows.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return [(r.from_status, r.to_status) for r in reversed(rows)]


def status_events(services: Services, agent_id: uuid.UUID) -> list[dict[str, Any]]:
    """Payloads of the agent's `agent_status_changed` events, in seq order."""
    flt = EventFilter(agent_id=agent_id, types=frozenset({EventType.AGENT_STATUS_CHANGED.value}))
    with services.db.read() as session:
        return [e.data for e in read_events(session, flt, since=0, limit=100_000)]


def path_to(target: str) -> list[str]:
    """The shortest sequence of SPEC transitions from `idle` to `target` (breadth-first)."""
    paths: dict[str, list[str]] = {"idle": []}
    frontier = ["idle"]
    while frontier:
        current = frontier.pop(0)
        for nxt in sorted(SPEC_TRANSITIONS[current]):
            if nxt not in paths:
                paths[nxt] = [*paths[current], nxt]
                frontier.append(nxt)
    return paths[target]


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on their own threads, released together; each result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


# -- core.status against the SPEC table ----------------------------------------------------------
def test_core_knows_exactly_the_statuses_of_the_spec() -> None:
    assert {s.value for s in AgentStatus} == set(SPEC_TRANSITIONS)
    assert {s.value for s in ALLOWED_TRANSITIONS} == set(SPEC_TRANSITIONS)


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_each_pair_is_allowed_exactly_when_the_spec_table_allows_it(current: str, target: str) -> None:
    if target in SPEC_TRANSITIONS[current]:
        assert check_transition(current, target) == target
    else:
        with pytest.raises(InvalidTransition) as refused:
            check_transition(current, target)
        assert refused.value.current == current
        assert refused.value.target == target
        assert sorted(refused.value.allowed) == sorted(SPEC_TRANSITIONS[current])


@pytest.mark.parametrize("current", STATUSES)
def test_allowed_targets_lists_each_spec_target_once(current: str) -> None:
    allowed = allowed_targets(current)
    assert len(allowed) == len(set(allowed))
    assert set(allowed) == SPEC_TRANSITIONS[current]


@pytest.mark.parametrize("name", ["", "IDLE", " active", "running", "idle ", "None"])
def test_unknown_status_names_are_invalid_input_not_a_transition(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_transition("idle", name)
    with pytest.raises(InvalidInput):
        check_transition(name, "idle")


@pytest.mark.parametrize("current", STATUSES)
def test_the_service_applies_the_spec_table_from_every_status(services: Services, current: str) -> None:
    ws = make_workspace(services)
    reached = make_agent(services, ws)
    for step in path_to(current):
        reached = services.agents.set_status(reached.id, step)
    assert reached.status == current
    assert set(reached.allowed_transitions) == SPEC_TRANSITIONS[current]

    for target in STATUSES:
        if target in SPEC_TRANSITIONS[current]:
            continue
        before = snapshot(services, reached.id)
        with pytest.raises(InvalidTransition) as refused:
            services.agents.set_status(reached.id, target)
        assert set(refused.value.allowed) == SPEC_TRANSITIONS[current]
        assert snapshot(services, reached.id) == before

    for target in sorted(SPEC_TRANSITIONS[current]):
        agent = make_agent(services, ws)
        for step in path_to(current):
            agent = services.agents.set_status(agent.id, step)
        moved = services.agents.set_status(agent.id, target, reason="table test")
        assert (moved.status, moved.lock_version) == (target, agent.lock_version + 1)
        assert status_events(services, agent.id)[-1]["from"] == current
        assert audit_trail(services, agent.id)[-1] == (current, target)


def test_activate_is_the_transition_to_active(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    assert services.agents.activate(agent.id).status == "active"
    with pytest.raises(InvalidTransition) as refused:
        services.agents.activate(agent.id)
    assert set(refused.value.allowed) == SPEC_TRANSITIONS["active"]


# -- random sequences of status changes ----------------------------------------------------------
class StatusMachine(RuleBasedStateMachine):
    """One fresh agent per example; the model is the SPEC table and the list of accepted moves."""

    services: Services
    workspace_id: uuid.UUID

    def __init__(self) -> None:
        super().__init__()
        self.agent_id = make_agent(self.services, self.workspace_id).id
        self.status = "idle"
        self.lock_version = 1
        self.accepted: list[tuple[str, str]] = []

    @rule(
        wanted=st.sampled_from(STATUSES),
        lock=st.sampled_from(["none", "current", "stale"]),
        reason=st.text(max_size=20).filter(lambda s: "\x00" not in s),
    )
    def set_status(self, wanted: str, lock: str, reason: str) -> None:
        refusal_expected = lock == "stale" or wanted not in SPEC_TRANSITIONS[self.status]
        before = snapshot(self.services, self.agent_id) if refusal_expected else None
        expected = {"none": None, "current": self.lock_version, "stale": self.lock_version - 1}[lock]
        try:
            moved = self.services.agents.set_status(
                self.agent_id, wanted, reason=reason, actor="test", expected_lock_version=expected
            )
        except StaleVersion as exc:
            assert lock == "stale"
            assert (exc.expected, exc.current) == (expected, self.lock_version)
            assert snapshot(self.services, self.agent_id) == before
        except InvalidTransition as exc:
            assert lock != "stale", "a stale lock_version must be refused as stale"
            assert wanted not in SPEC_TRANSITIONS[self.status]
            assert (exc.current, exc.target) == (self.status, wanted)
            assert sorted(exc.allowed) == sorted(SPEC_TRANSITIONS[self.status])
            assert snapshot(self.services, self.agent_id) == before
        else:
            assert lock != "stale"
            assert wanted in SPEC_TRANSITIONS[self.status]
            assert (moved.status, moved.status_reason) == (wanted, reason)
            assert moved.lock_version == self.lock_version + 1
            assert set(moved.allowed_transitions) == SPEC_TRANSITIONS[wanted]
            self.accepted.append((self.status, wanted))
            self.status, self.lock_version = wanted, moved.lock_version

    @rule(name=st.text(max_size=12).filter(lambda s: s not in SPEC_TRANSITIONS))
    def set_unknown_status(self, name: str) -> None:
        before = snapshot(self.services, self.agent_id)
        with pytest.raises(InvalidInput):
            self.services.agents.set_status(self.agent_id, name)
        assert snapshot(self.services, self.agent_id) == before

    @invariant()
    def stored_status_is_the_last_accepted_transition(self) -> None:
        agent = self.services.agents.get(self.agent_id)
        assert (agent.status, agent.lock_version) == (self.status, self.lock_version)

    @invariant()
    def replaying_the_audit_trail_reproduces_the_current_status(self) -> None:
        trail = audit_trail(self.services, self.agent_id)
        assert trail[0] == (None, "idle")
        replayed = trail[0][1]
        for from_status, to_status in trail[1:]:
            assert from_status == replayed
            assert to_status in SPEC_TRANSITIONS[replayed]
            replayed = to_status
        assert replayed == self.status
        assert trail[1:] == self.accepted

    @invariant()
    def each_accepted_transition_has_exactly_one_event(self) -> None:
        events = status_events(self.services, self.agent_id)
        assert [(e["from"], e["to"]) for e in events] == self.accepted


def test_random_status_changes_follow_the_spec_and_leave_a_faithful_trail(services: Services) -> None:
    StatusMachine.services = services
    StatusMachine.workspace_id = make_workspace(services)
    run_state_machine_as_test(StatusMachine, settings=MACHINE_SETTINGS)


# -- concurrent writers --------------------------------------------------------------------------
def test_two_writers_racing_the_same_transition_cannot_both_win(services: Services) -> None:
    ws = make_workspace(services)
    for _ in range(RACE_ROUNDS):
        agent = make_agent(services, ws)
        results = race(
            lambda a=agent: services.agents.set_status(a.id, "active", actor="one"),
            lambda a=agent: services.agents.set_status(a.id, "active", actor="two"),
        )
        winners = [r for r in results if isinstance(r, AgentPublic)]
        losers = [r for r in results if not isinstance(r, AgentPublic)]
        assert len(winners) == 1, results
        assert len(losers) == 1 and isinstance(losers[0], InvalidTransition | Conflict), results
        assert winners[0].lock_version == 2
        assert audit_trail(services, agent.id) == [(None, "idle"), ("idle", "active")]
        assert [(e["from"], e["to"]) for e in status_events(services, agent.id)] == [("idle", "active")]


def test_two_writers_with_the_same_lock_version_one_is_stale(services: Services) -> None:
    ws = make_workspace(services)
    for _ in range(RACE_ROUNDS):
        agent = make_agent(services, ws)
        results = race(
            lambda a=agent: services.agents.set_status(a.id, "active", expected_lock_version=a.lock_version),
            lambda a=agent: services.agents.set_status(a.id, "offline", expected_lock_version=a.lock_version),
        )
        winners = [r for r in results if isinstance(r, AgentPublic)]
        stale = [r for r in results if isinstance(r, StaleVersion)]
        assert len(winners) == 1 and len(stale) == 1, results
        assert (stale[0].expected, stale[0].current) == (1, 2)
        stored = services.agents.get(agent.id)
        assert (stored.status, stored.lock_version) == (winners[0].status, 2)
        assert len(audit_trail(services, agent.id)) == 2
        assert len(status_events(services, agent.id)) == 1


def test_a_refused_transition_writes_no_audit_row_even_inside_a_caller_transaction(services: Services) -> None:
    """transition_in (the runtime's way in) obeys the same table; the caller's rollback undoes all."""
    agent = make_agent(services, make_workspace(services))
    before = snapshot(services, agent.id)
    with pytest.raises(InvalidTransition), services.db.write() as session:
        services.agents.transition_in(session, agent.id, "busy")
    assert snapshot(services, agent.id) == before
    with services.db.write() as session:
        services.agents.transition_in(session, agent.id, "active", reason="run", actor="agent:x")
    assert audit_trail(services, agent.id) == [(None, "idle"), ("idle", "active")]
    assert snapshot(services, agent.id).events == before.events + 1
