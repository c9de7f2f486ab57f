"""Agent context: versioned, append-only, rollback is a new version (SPEC §4).

Runs on the real database (SQLite or PostgreSQL). JSON is compared with `same_json` (canonical
text), so `1`, `1.0` and `true` are different values here, as they are in JSON.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from pydantic import ValidationError
from sqlmodel import func, select

from core.context import MAX_CONTEXT_BYTES, ContextPublic, ContextRollback, ContextUpdate
from core.errors import InvalidInput, NotFound, StaleVersion, TooLarge
from core.events import EventFilter, EventType, read_events
from core.schemas import AgentCreate, AgentPublic, WorkspaceCreate
from core.services import Services
from storage.models import AgentContext, AgentContextVersion, AgentInstance, Event

MACHINE_SETTINGS = settings(
    max_examples=10,
    stateful_step_count=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RACE_ROUNDS = 15

# -- JSON strategies -----------------------------------------------------------------------------
# Few keys, so patches hit existing ones; "~", "/" and "." exercise JSON Pointer escaping in diffs.
KEYS = st.sampled_from(["a", "b", "c", "name", "x/y", "m~n", "é", ""])
TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=6)
# Floats that every database hands back as the same JSON number.
SCALARS = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.sampled_from([0.5, -2.25, 1e-3]) | TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
OBJECTS = st.dictionaries(KEYS, JSON_VALUES, max_size=4)
# A merge patch is an object whose values may be null (remove) or objects (merge deeper).
PATCHES = st.dictionaries(KEYS, JSON_VALUES, max_size=4)
EXPECTATIONS = st.sampled_from(["none", "current", "stale"])


def patches_for(target: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Merge patches aimed at `target`: they reuse its keys and reach into its nested objects
    (where a shallow merge would go wrong), plus fresh keys."""
    if not isinstance(target, dict) or not target:
        return PATCHES

    def value_for(key: str) -> st.SearchStrategy[Any]:
        if isinstance(target[key], dict) and depth < 3:
            return patches_for(target[key], depth + 1) | JSON_VALUES
        return JSON_VALUES

    aimed = st.fixed_dictionaries({}, optional={key: value_for(key) for key in target})
    return st.tuples(PATCHES, aimed).map(lambda pair: {**pair[0], **pair[1]})


def same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2, transcribed: the reference the service is compared with."""
    if isinstance(patch, dict):
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = merge_patch(result.get(key), value)
        return result
    return patch


# -- helpers -------------------------------------------------------------------------------------
def make_workspace(services: Services) -> uuid.UUID:
    return services.workspaces.create(WorkspaceCreate(slug=f"ws-{uuid.uuid4().hex[:10]}")).id


def make_agent(services: Services, workspace_id: uuid.UUID, context: dict[str, Any] | None = None) -> AgentPublic:
    return services.agents.create(
        AgentCreate(
            workspace_id=workspace_id, definition="assistant", name=f"agent-{uuid.uuid4().hex[:10]}", context=context
        )
    )


def all_versions(services: Services, agent_id: uuid.UUID, limit: int = 500) -> list[int]:
    """Every version number from the paginated list, in the order the pages give them."""
    seen, cursor = [], None
    while True:
        page = services.contexts.versions(agent_id, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        seen.extend(item.version for item in page.items)
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit, "only the last page may be short"
        cursor = page.next_cursor


def context_events(services: Services, agent_id: uuid.UUID) -> list[dict[str, Any]]:
    flt = EventFilter(agent_id=agent_id, types=frozenset({EventType.AGENT_CONTEXT_UPDATED.value}))
    with services.db.read() as session:
        return [e.data for e in read_events(session, flt, since=0, limit=100_000)]


def stored(services: Services, agent_id: uuid.UUID) -> tuple[int, str, int, int]:
    """(current version, current data, number of version rows, number of events) as stored."""
    with services.db.read() as session:
        context = session.exec(select(AgentContext).where(AgentContext.agent_id == agent_id)).one()
        versions = session.exec(
            select(func.count()).select_from(AgentContextVersion).where(AgentContextVersion.context_id == context.id)
        ).one()
        events = session.exec(select(func.count()).select_from(Event).where(Event.agent_id == agent_id)).one()
        return context.current_version, json.dumps(context.data, sort_keys=True), versions, events


def total_rows(services: Services) -> dict[str, int]:
    with services.db.read() as session:
        return {
            table.__name__: session.exec(select(func.count()).select_from(table)).one()
            for table in (AgentInstance, AgentContext, AgentContextVersion, Event)
        }


# -- random histories ----------------------------------------------------------------------------
class ContextHistory(RuleBasedStateMachine):
    """The model: every version ever written (number -> data, author, reason)."""

    services: Services
    workspace_id: uuid.UUID

    @initialize(initial=OBJECTS)
    def create_agent(self, initial: dict[str, Any]) -> None:
        self.agent_id = make_agent(self.services, self.workspace_id, context=initial).id
        self.versions: dict[int, Any] = {1: initial}
        self.meta: dict[int, tuple[str, str]] = {1: ("system", "created")}
        self.current = 1

    def _expected(self, data: st.DataObject, expectation: str) -> int | None:
        if expectation == "none":
            return None
        if expectation == "current":
            return self.current
        return data.draw(st.integers(1, self.current + 2).filter(lambda v: v != self.current), label="stale")

    def _apply(self, call: Any, expected: int | None, new_data: Any, author: str, reason: str) -> None:
        if expected is not None and expected != self.current:
            before = stored(self.services, self.agent_id)
            with pytest.raises(StaleVersion) as refused:
                call()
            assert (refused.value.expected, refused.value.current) == (expected, self.current)
            assert stored(self.services, self.agent_id) == before
            return
        result: ContextPublic = call()
        assert result.version == self.current + 1
        assert same_json(result.data, new_data)
        self.current += 1
        self.versions[self.current] = new_data
        self.meta[self.current] = (author, reason)

    @rule(data=st.data(), new=OBJECTS, expectation=EXPECTATIONS)
    def replace(self, data: st.DataObject, new: dict[str, Any], expectation: str) -> None:
        expected = self._expected(data, expectation)
        change = ContextUpdate(data=new, expected_version=expected, reason="replace")
        self._apply(
            lambda: self.services.contexts.update(self.agent_id, change, actor="user"), expected, new, "user", "replace"
        )

    @rule(data=st.data(), expectation=EXPECTATIONS)
    def merge(self, data: st.DataObject, expectation: str) -> None:
        patch = data.draw(patches_for(self.versions[self.current]), label="patch")
        expected = self._expected(data, expectation)
        change = ContextUpdate(patch=patch, expected_version=expected, reason="patch")
        new = merge_patch(self.versions[self.current], patch)
        self._apply(
            lambda: self.services.contexts.update(self.agent_id, change, actor="agent:bob"),
            expected,
            new,
            "agent:bob",
            "patch",
        )

    @rule(data=st.data(), expectation=EXPECTATIONS)
    def rollback(self, data: st.DataObject, expectation: str) -> None:
        target = data.draw(st.integers(1, self.current), label="target")
        expected = self._expected(data, expectation)
        request = ContextRollback(version=target, expected_version=expected)
        self._apply(
            lambda: self.services.contexts.rollback(self.agent_id, request, actor="user"),
            expected,
            self.versions[target],
            "user",
            f"rollback to version {target}",
        )

    @rule(beyond=st.integers(1, 3))
    def rollback_to_an_unknown_version_is_not_found(self, beyond: int) -> None:
        before = stored(self.services, self.agent_id)
        with pytest.raises(NotFound):
            self.services.contexts.rollback(self.agent_id, ContextRollback(version=self.current + beyond))
        assert stored(self.services, self.agent_id) == before

    @rule(data=st.data())
    def diff_turns_one_version_into_the_other(self, data: st.DataObject) -> None:
        a = data.draw(st.integers(1, self.current), label="from")
        b = data.draw(st.integers(1, self.current), label="to")
        diff = self.services.contexts.diff(self.agent_id, a, b)
        assert same_json(diff.from_data, self.versions[a]) and same_json(diff.to_data, self.versions[b])
        assert same_json(jsonpatch.apply_patch(self.versions[a], diff.operations), self.versions[b])

    @rule(limit=st.integers(1, 6))
    def version_list_walks_newest_first_exactly_once(self, limit: int) -> None:
        assert all_versions(self.services, self.agent_id, limit) == list(range(self.current, 0, -1))

    @invariant()
    def current_data_equals_the_latest_version(self) -> None:
        if not hasattr(self, "agent_id"):
            return
        context = self.services.contexts.get(self.agent_id)
        assert context.version == self.current
        assert same_json(context.data, self.versions[self.current])

    @invariant()
    def versions_are_one_to_n_without_gaps(self) -> None:
        if not hasattr(self, "agent_id"):
            return
        page = self.services.contexts.versions(self.agent_id, limit=500)
        assert [v.version for v in page.items] == list(range(self.current, 0, -1))
        assert [(v.author, v.reason) for v in reversed(page.items)] == [self.meta[n] for n in sorted(self.meta)]

    def teardown(self) -> None:
        """Every version ever written stays readable and unchanged. Checked once at the end (each
        step reads two random versions in `diff...`): nothing can restore a rewritten version, so a
        rewrite at any step shows here."""
        if not hasattr(self, "agent_id"):
            return
        for number, data in self.versions.items():
            assert same_json(self.services.contexts.version(self.agent_id, number).data, data), number

    @invariant()
    def each_new_version_has_one_event(self) -> None:
        if not hasattr(self, "agent_id"):
            return
        events = context_events(self.services, self.agent_id)
        assert [(e["previous_version"], e["version"]) for e in events] == [
            (n - 1, n) for n in range(2, self.current + 1)
        ]


def test_random_histories_keep_every_version_and_follow_rfc_7396(services: Services) -> None:
    ContextHistory.services = services
    ContextHistory.workspace_id = make_workspace(services)
    run_state_machine_as_test(ContextHistory, settings=MACHINE_SETTINGS)


# -- RFC 7396 ------------------------------------------------------------------------------------
# RFC 7396 Appendix A, the cases whose target and result are objects (a context always is one).
RFC_7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    # Arrays are replaced verbatim: nulls inside them are values, not removals.
    ({"a": [1, 2, 3]}, {"a": [None, {"x": None}]}, {"a": [None, {"x": None}]}),
    ({"a": {"b": {"c": 1, "d": 2}}, "e": 3}, {"a": {"b": {"c": None}}}, {"a": {"b": {"d": 2}}, "e": 3}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_the_reference_merge_patch_agrees_with_rfc_7396(
    target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]
) -> None:
    assert same_json(merge_patch(target, patch), result)


def test_a_merge_patch_follows_rfc_7396(services: Services) -> None:
    ws = make_workspace(services)
    for target, patch, result in RFC_7396_EXAMPLES:
        agent = make_agent(services, ws, context=target)
        updated = services.contexts.update(agent.id, ContextUpdate(patch=patch))
        assert updated.version == 2
        assert same_json(updated.data, result), (target, patch)
        assert same_json(services.contexts.get(agent.id).data, result), (target, patch)
        assert same_json(services.contexts.version(agent.id, 1).data, target), (target, patch)


def test_a_merge_patch_does_not_alias_the_stored_version(services: Services) -> None:
    agent = make_agent(services, make_workspace(services), context={"a": {"b": 1}})
    services.contexts.update(agent.id, ContextUpdate(patch={"a": {"c": 2}}))
    assert same_json(services.contexts.version(agent.id, 1).data, {"a": {"b": 1}})
    assert same_json(services.contexts.version(agent.id, 2).data, {"a": {"b": 1, "c": 2}})


# -- creation, rollback and pagination -----------------------------------------------------------
def test_version_one_is_written_with_the_agent(services: Services) -> None:
    agent = make_agent(services, make_workspace(services), context={"goal": "ship"})
    assert services.contexts.get(agent.id).version == 1
    first = services.contexts.version(agent.id, 1)
    assert (first.data, first.author, first.reason) == ({"goal": "ship"}, "system", "created")
    plain = make_agent(services, make_workspace(services))
    assert services.contexts.get(plain.id).data == {}


def test_rollback_is_a_new_version_with_the_old_data(services: Services) -> None:
    agent = make_agent(services, make_workspace(services), context={"v": 1})
    services.contexts.update(agent.id, ContextUpdate(data={"v": 2}))
    services.contexts.update(agent.id, ContextUpdate(patch={"bad": "agent write"}), actor="agent:eve")
    rolled = services.contexts.rollback(agent.id, ContextRollback(version=2, reason="undo eve"), actor="user")
    assert (rolled.version, rolled.data) == (4, {"v": 2})
    assert all_versions(services, agent.id) == [4, 3, 2, 1]
    assert services.contexts.version(agent.id, 3).data == {"v": 2, "bad": "agent write"}
    last = services.contexts.version(agent.id, 4)
    assert (last.author, last.reason) == ("user", "undo eve")
    assert context_events(services, agent.id)[-1]["rolled_back_to"] == 2


def test_version_list_pagination_walks_every_version_newest_first_once(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    for i in range(2, 31):
        services.contexts.update(agent.id, ContextUpdate(patch={"i": i}))
    for limit in (1, 7, 29, 30, 31, 500, 10_000):
        assert all_versions(services, agent.id, limit) == list(range(30, 0, -1))
    assert services.contexts.versions(agent.id).next_cursor is None  # default limit 50 covers 30
    with pytest.raises(InvalidInput):
        services.contexts.versions(agent.id, limit=0)


def test_a_malformed_version_cursor_is_invalid_input(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    # base64 of: garbage, "not json", [1, 2] (two keys), ["x"] (not a version), {} (not a list)
    for cursor in ("%%%", "bm90IGpzb24", "WzEsIDJd", "WyJ4Il0", "e30"):
        with pytest.raises(InvalidInput):
            services.contexts.versions(agent.id, cursor=cursor)
    # An empty cursor means "first page", like no cursor at all.
    assert [v.version for v in services.contexts.versions(agent.id, cursor="").items] == [1]


# -- concurrent writers --------------------------------------------------------------------------
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


def test_two_writers_with_the_same_expected_version_one_is_stale(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    winners: list[ContextPublic] = []
    for expected in range(1, RACE_ROUNDS + 1):
        results = race(
            *(
                lambda i=i, expected=expected: services.contexts.update(
                    agent.id, ContextUpdate(data={"writer": i, "round": expected}, expected_version=expected)
                )
                for i in range(2)
            )
        )
        won = [r for r in results if isinstance(r, ContextPublic)]
        stale = [r for r in results if isinstance(r, StaleVersion)]
        assert len(won) == 1 and len(stale) == 1, results
        assert (stale[0].expected, stale[0].current) == (expected, expected + 1)
        winners.append(won[0])

    n = RACE_ROUNDS + 1
    assert all_versions(services, agent.id) == list(range(n, 0, -1))
    assert [w.version for w in winners] == list(range(2, n + 1))
    for w in winners:
        assert services.contexts.version(agent.id, w.version).data == w.data
    assert services.contexts.get(agent.id).data == winners[-1].data
    assert len(context_events(services, agent.id)) == RACE_ROUNDS


# -- bad input changes nothing -------------------------------------------------------------------
@pytest.mark.parametrize("bad", [[1, 2], "text", 42, 1.5, True])
def test_non_object_context_is_refused_by_the_schema(bad: Any) -> None:
    with pytest.raises(ValidationError):
        ContextUpdate(data=bad)
    with pytest.raises(ValidationError):
        ContextUpdate(patch=bad)


@pytest.mark.parametrize("fields", [{}, {"data": {}, "patch": {}}, {"data": {"a": 1}, "patch": {"a": None}}])
def test_an_update_is_exactly_one_of_data_or_patch(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ContextUpdate(**fields)


def test_non_object_data_given_directly_is_invalid_input_and_writes_nothing(services: Services) -> None:
    """Past the schema (a caller inside core), the service itself still refuses non-objects."""
    ws = make_workspace(services)
    agent = make_agent(services, ws, context={"keep": True})
    before = total_rows(services)
    for bad in ([1, 2], "text", 42, None):
        replace = ContextUpdate.model_construct(data=bad, patch=None, expected_version=None, reason="")
        with pytest.raises(InvalidInput):
            services.contexts.update(agent.id, replace)
        with pytest.raises(InvalidInput):
            services.agents.create(
                AgentCreate.model_construct(workspace_id=ws, definition="assistant", name="new", context=bad or [])
            )
    patch_to_list = ContextUpdate.model_construct(data=None, patch=[1], expected_version=None, reason="")
    with pytest.raises(InvalidInput):
        services.contexts.update(agent.id, patch_to_list)
    assert total_rows(services) == before
    assert services.contexts.get(agent.id).data == {"keep": True}


def test_data_that_is_not_portable_json_is_invalid_input_and_writes_nothing(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    before = total_rows(services)
    for data in (
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": object()},
        # PostgreSQL's jsonb cannot store NUL (SQLite could): both databases refuse it alike.
        {"x": "a\x00b"},
        {"k\x00": 1},
        {"x": [{"deep": "\x00"}]},
    ):
        with pytest.raises(InvalidInput):
            services.contexts.update(agent.id, ContextUpdate(data=data))
        with pytest.raises(InvalidInput):
            services.contexts.update(agent.id, ContextUpdate(patch={"p": data}))
    assert total_rows(services) == before
    # A backslash followed by "u0000" is ordinary text, not a NUL.
    assert services.contexts.update(agent.id, ContextUpdate(data={"x": "\\u0000"})).data == {"x": "\\u0000"}


def test_an_oversize_context_is_too_large_and_writes_nothing(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws, context={"small": 1})
    before = total_rows(services)
    blob = "x" * MAX_CONTEXT_BYTES
    with pytest.raises(TooLarge):
        services.contexts.update(agent.id, ContextUpdate(data={"blob": blob}))
    with pytest.raises(TooLarge):
        services.contexts.update(agent.id, ContextUpdate(patch={"blob": blob}))
    with pytest.raises(TooLarge):
        make_agent(services, ws, context={"blob": blob})
    assert total_rows(services) == before
    # Just under the limit is fine: the limit is on the serialized size.
    fits = "x" * (MAX_CONTEXT_BYTES - len(json.dumps({"blob": ""})))
    assert services.contexts.update(agent.id, ContextUpdate(data={"blob": fits})).version == 2


def test_a_reason_with_nul_is_refused_by_the_request_model(services: Services) -> None:
    make_agent(services, make_workspace(services))
    before = total_rows(services)
    with pytest.raises(ValidationError, match="NUL"):
        ContextUpdate(data={}, reason="a\x00b")
    with pytest.raises(ValidationError, match="NUL"):
        ContextRollback(version=1, reason="a\x00b")
    assert total_rows(services) == before


def test_integers_beyond_64_bits_are_refused_and_nothing_is_written(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    before = total_rows(services)
    with pytest.raises(InvalidInput, match="64-bit"):
        services.contexts.update(agent.id, ContextUpdate(data={"n": 2**70}))
    with pytest.raises(InvalidInput, match="64-bit"):
        services.contexts.update(agent.id, ContextUpdate(patch={"nested": [1, -(2**64)]}))
    # jsonb would hand 1e300 back as a 301-digit integer.
    with pytest.raises(InvalidInput, match="64-bit"):
        services.contexts.update(agent.id, ContextUpdate(data={"big": 1e300}))
    assert total_rows(services) == before


def test_unknown_versions_and_agents_are_not_found(services: Services) -> None:
    agent = make_agent(services, make_workspace(services))
    before = total_rows(services)
    with pytest.raises(NotFound):
        services.contexts.rollback(agent.id, ContextRollback(version=2))
    with pytest.raises(NotFound):
        services.contexts.version(agent.id, 2)
    with pytest.raises(NotFound):
        services.contexts.diff(agent.id, 1, 2)
    with pytest.raises(ValidationError):
        ContextRollback(version=0)
    unknown = uuid.uuid4()
    for call in (
        lambda: services.contexts.get(unknown),
        lambda: services.contexts.update(unknown, ContextUpdate(data={})),
        lambda: services.contexts.rollback(unknown, ContextRollback(version=1)),
        lambda: services.contexts.versions(unknown),
        lambda: services.contexts.version(unknown, 1),
        lambda: services.contexts.diff(unknown, 1, 1),
    ):
        with pytest.raises(NotFound):
            call()
    assert total_rows(services) == before


def test_another_workspaces_agent_is_not_found_through_any_context_call(services: Services) -> None:
    mine, theirs = make_workspace(services), make_workspace(services)
    agent = make_agent(services, theirs, context={"secret": 1})
    before = total_rows(services)
    for call in (
        lambda: services.contexts.get(agent.id, scope=mine),
        lambda: services.contexts.update(agent.id, ContextUpdate(data={}), scope=mine),
        lambda: services.contexts.rollback(agent.id, ContextRollback(version=1), scope=mine),
        lambda: services.contexts.versions(agent.id, scope=mine),
        lambda: services.contexts.version(agent.id, 1, scope=mine),
        lambda: services.contexts.diff(agent.id, 1, 1, scope=mine),
    ):
        with pytest.raises(NotFound) as missing:
            call()
        assert "secret" not in str(missing.value)
    assert total_rows(services) == before
    assert services.contexts.get(agent.id, scope=theirs).data == {"secret": 1}


def test_version_numbers_beyond_the_column_range_are_unknown_not_errors(services: Services) -> None:
    """Versions are 32-bit INTEGER columns: PostgreSQL would refuse larger numbers (a 500)."""
    agent = make_agent(services, make_workspace(services))
    before = total_rows(services)
    with pytest.raises(NotFound):
        services.contexts.version(agent.id, 2**40)
    with pytest.raises(NotFound):
        services.contexts.diff(agent.id, 1, 2**40)
    with pytest.raises(ValidationError):
        ContextRollback(version=2**40)
    assert total_rows(services) == before
