"""Agent instances (SPEC §2, §6): creation, config, listing, update, deletion, scoping, the demo.

Runs on the real database (SQLite or PostgreSQL). "Nothing was written" is checked by counting
the rows of every table an agent touches before and after.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import func, select

from core.context import ContextRollback, ContextUpdate
from core.demo import DEMO_AGENTS, seed_demo
from core.errors import Conflict, InvalidInput, NotFound, StaleVersion, TooLarge
from core.events import EventFilter, EventType, read_events
from core.pagination import MAX_LIMIT, encode_cursor
from core.registry import AgentSpec, discover_specs, sync_definitions
from core.schemas import AgentCreate, AgentPublic, AgentUpdate, ProjectCreate, WorkspaceCreate
from core.services import Services
from storage.models import (
    AgentContext,
    AgentContextVersion,
    AgentInstance,
    AgentMessage,
    AgentStatusChange,
    Event,
)
from storage.types import utcnow

TABLES = (AgentInstance, AgentContext, AgentContextVersion, AgentStatusChange, AgentMessage, Event)


# -- factories and probes ------------------------------------------------------------------------
def make_workspace(services: Services, slug: str | None = None) -> uuid.UUID:
    return services.workspaces.create(WorkspaceCreate(slug=slug or f"ws-{uuid.uuid4().hex[:10]}")).id


def make_agent(
    services: Services,
    workspace_id: uuid.UUID,
    name: str | None = None,
    definition: str = "assistant",
    actor: str = "system",
    **fields: Any,
) -> AgentPublic:
    data = AgentCreate(
        workspace_id=workspace_id, definition=definition, name=name or f"agent-{uuid.uuid4().hex[:8]}", **fields
    )
    return services.agents.create(data, actor=actor)


def row_counts(services: Services) -> dict[str, int]:
    with services.db.read() as session:
        return {t.__name__: session.exec(select(func.count()).select_from(t)).one() for t in TABLES}


def events_of(services: Services, agent_id: uuid.UUID, type: EventType | None = None) -> list[dict[str, Any]]:
    flt = EventFilter(agent_id=agent_id, types=frozenset({type.value}) if type else None)
    with services.db.read() as session:
        return [{"type": e.type, **e.data} for e in read_events(session, flt, since=0, limit=100_000)]


def walk(services: Services, workspace_id: uuid.UUID, limit: int, **filters: Any) -> list[AgentPublic]:
    items: list[AgentPublic] = []
    cursor = None
    while True:
        page = services.agents.list(workspace_id, limit=limit, cursor=cursor, **filters)
        assert len(page.items) <= limit
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        assert len(page.items) == limit, "only the last page may be short"
        cursor = page.next_cursor


def add_definition(services: Services, spec: AgentSpec) -> None:
    sync_definitions(services.db, [*discover_specs(), spec])


# -- creation ------------------------------------------------------------------------------------
def test_create_writes_the_agent_its_context_v1_the_created_row_and_one_event_in_one_commit(
    services: Services,
) -> None:
    ws = make_workspace(services)
    commits: list[int] = []
    services.db.on_commit_with_events(lambda: commits.append(1))

    agent = make_agent(services, ws, "alice", context={"goal": "ship"}, actor="user")

    assert len(commits) == 1
    assert (agent.status, agent.lock_version, agent.definition, agent.role_kind) == (
        "idle",
        1,
        "assistant",
        "assistant",
    )
    assert services.agents.get(agent.id) == agent
    context = services.contexts.get(agent.id)
    assert (context.version, context.data) == (1, {"goal": "ship"})
    [created] = services.agents.status_history(agent.id).items
    assert (created.from_status, created.to_status, created.reason, created.actor) == (None, "idle", "created", "user")
    [event] = events_of(services, agent.id)
    assert event["type"] == EventType.AGENT_CREATED
    assert (event["agent"]["id"], event["agent"]["name"], event["actor"]) == (str(agent.id), "alice", "user")


def test_a_failure_late_in_create_leaves_nothing_behind(services: Services) -> None:
    """The context is checked after the agent row is flushed: its refusal must undo the row too."""
    ws = make_workspace(services)
    before = row_counts(services)
    with pytest.raises(TooLarge):
        make_agent(services, ws, "big", context={"blob": "x" * (1024 * 1024)})
    with pytest.raises(InvalidInput):
        make_agent(services, ws, "nul", context={"x": "\x00"})
    assert row_counts(services) == before
    assert services.agents.list(ws).items == []


def test_a_duplicate_name_is_a_conflict_and_writes_nothing(services: Services) -> None:
    ws, other = make_workspace(services), make_workspace(services)
    make_agent(services, ws, "alice")
    before = row_counts(services)
    for name in ("alice", "  alice  "):  # names are stripped before they are compared
        with pytest.raises(Conflict):
            make_agent(services, ws, name)
    assert row_counts(services) == before
    assert make_agent(services, other, "alice").name == "alice"  # unique per workspace only
    assert make_agent(services, ws, "Alice").name == "Alice"  # and case-sensitive


def test_unknown_definition_workspace_or_project_is_not_found_and_writes_nothing(services: Services) -> None:
    ws, other = make_workspace(services), make_workspace(services)
    foreign_project = services.workspaces.create_project(other, ProjectCreate(slug="p", name="P")).id
    before = row_counts(services)
    for attempt in (
        lambda: make_agent(services, ws, definition="no-such-role"),
        lambda: make_agent(services, uuid.uuid4()),
        lambda: make_agent(services, ws, project_id=uuid.uuid4()),
        lambda: make_agent(services, ws, project_id=foreign_project),
        lambda: services.agents.create(AgentCreate(workspace_id=ws, definition="assistant", name="x"), scope=other),
    ):
        with pytest.raises(NotFound):
            attempt()
    assert row_counts(services) == before


def test_names_with_nul_are_refused_on_every_database(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws, "ok")
    before = row_counts(services)
    # Request models refuse NUL in names (a 422 at the API); the services refuse the rest.
    with pytest.raises(ValidationError, match="NUL"):
        make_agent(services, ws, "bad\x00name")
    with pytest.raises(ValidationError, match="NUL"):
        AgentUpdate(name="bad\x00name")
    # A definition slug with NUL was a PostgreSQL DataError (500) in the catalog lookup.
    with pytest.raises(ValidationError, match="NUL"):
        make_agent(services, ws, "nul definition", definition="assist\x00ant")
    with pytest.raises(InvalidInput):
        services.agents.set_status(agent.id, "active", reason="\x00")
    with pytest.raises(InvalidInput):
        services.agents.list(ws, name="\x00")
    assert row_counts(services) == before


# -- config --------------------------------------------------------------------------------------
def test_config_is_the_definitions_defaults_overlaid_with_what_is_given(services: Services) -> None:
    ws = make_workspace(services)
    default_prompt = services.agents.definition("assistant").default_config["system_prompt"]
    assert make_agent(services, ws).config == {"system_prompt": default_prompt}
    agent = make_agent(services, ws, config={"temperature": 0.5})
    assert agent.config == {"system_prompt": default_prompt, "temperature": 0.5}
    # An update's config replaces the stored one; the defaults fill in what it leaves out.
    updated = services.agents.update(agent.id, AgentUpdate(config={"system_prompt": "Be terse."}))
    assert updated.config == {"system_prompt": "Be terse."}
    assert services.agents.get(agent.id).config == {"system_prompt": "Be terse."}


ASSISTANT_CONFIG_ERRORS = [
    ({"system_prompt": ""}, "system_prompt"),
    ({"system_prompt": None}, "system_prompt"),
    ({"system_prompt": 42}, "system_prompt"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 5}, "temperature"),
    ({"llm_profile": 7}, "llm_profile"),
]


def test_config_that_breaks_the_assistant_schema_is_refused_with_its_path(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws, "existing")
    before = row_counts(services)
    for config, path in ASSISTANT_CONFIG_ERRORS:
        with pytest.raises(InvalidInput) as refused:
            make_agent(services, ws, "new", config=config)
        assert path in [e["path"] for e in refused.value.details["errors"]], config
        assert path in str(refused.value)
        with pytest.raises(InvalidInput):
            services.agents.update(agent.id, AgentUpdate(config=config))
    assert row_counts(services) == before
    assert services.agents.get(agent.id).lock_version == 1


def test_config_errors_name_nested_paths_and_every_error(services: Services) -> None:
    add_definition(
        services,
        AgentSpec(
            slug="tooling",
            name="Tooling",
            role_kind="assistant",
            config_schema={
                "type": "object",
                "properties": {
                    "tools": {"type": "array", "items": {"type": "string"}},
                    "limits": {"type": "object", "properties": {"calls": {"type": "integer", "minimum": 1}}},
                },
                "required": ["tools"],
            },
        ),
    )
    ws = make_workspace(services)
    with pytest.raises(InvalidInput) as refused:
        make_agent(services, ws, definition="tooling", config={"tools": ["git", 3], "limits": {"calls": 0}})
    assert sorted(e["path"] for e in refused.value.details["errors"]) == ["limits/calls", "tools/1"]
    with pytest.raises(InvalidInput) as missing:
        make_agent(services, ws, definition="tooling", config={})
    assert [e["path"] for e in missing.value.details["errors"]] == ["(root)"]
    assert make_agent(services, ws, definition="tooling", config={"tools": ["git"]}).config == {"tools": ["git"]}


def test_config_that_is_not_storable_json_or_too_large_is_refused(services: Services) -> None:
    ws = make_workspace(services)
    before = row_counts(services)
    for config in ({"temperature": float("nan")}, {"system_prompt": "a\x00b"}, {"x": object()}):
        with pytest.raises(InvalidInput):
            make_agent(services, ws, config=config)
    with pytest.raises(TooLarge):
        make_agent(services, ws, config={"notes": "x" * (64 * 1024)})
    assert row_counts(services) == before


# -- listing -------------------------------------------------------------------------------------
def test_keyset_pages_walk_every_agent_exactly_once_oldest_first(services: Services) -> None:
    ws, other = make_workspace(services), make_workspace(services)
    created = [make_agent(services, ws, f"agent-{i:03}").id for i in range(120)]
    make_agent(services, other, "elsewhere")
    seen = walk(services, ws, limit=7)
    assert [a.id for a in seen] == created
    assert [(a.created_at, a.id) for a in seen] == sorted((a.created_at, a.id) for a in seen)
    assert len(services.agents.list(ws).items) == 50  # the default limit
    assert [a.id for a in walk(services, ws, limit=500)] == created


def test_ties_in_created_at_are_broken_by_id_and_the_limit_is_clamped_to_500(services: Services) -> None:
    ws = make_workspace(services)
    definition_id = services.agents.definition("assistant").id
    same_instant = utcnow() - timedelta(days=1)
    with services.db.write() as session:
        session.add_all(
            AgentInstance(workspace_id=ws, definition_id=definition_id, name=f"bulk-{i:03}", created_at=same_instant)
            for i in range(MAX_LIMIT + 5)
        )
    page = services.agents.list(ws, limit=10_000)
    assert len(page.items) == MAX_LIMIT and page.next_cursor is not None
    seen = walk(services, ws, limit=37)
    assert len(seen) == MAX_LIMIT + 5
    assert len({a.id for a in seen}) == MAX_LIMIT + 5
    assert [a.id for a in seen] == sorted(a.id for a in seen)


def test_list_filters_by_status_project_and_name(services: Services) -> None:
    ws = make_workspace(services)
    project = services.workspaces.create_project(ws, ProjectCreate(slug="p", name="P")).id
    names = ["100% done", "100 done", "a_b", "axb", "back\\slash", "Alice", "alice smith"]
    agents = {name: make_agent(services, ws, name) for name in names}
    services.agents.activate(agents["axb"].id)
    services.agents.update(agents["a_b"].id, AgentUpdate(project_id=project))

    def names_for(**filters: Any) -> set[str]:
        return {a.name for a in walk(services, ws, limit=3, **filters)}

    assert names_for(name="%") == {"100% done"}
    assert names_for(name="_") == {"a_b"}
    assert names_for(name="\\") == {"back\\slash"}
    assert names_for(name="ALICE") == {"Alice", "alice smith"}
    assert names_for(name="0 d") == {"100 done"}
    assert names_for(status="active") == {"axb"}
    assert names_for(status="idle") == set(names) - {"axb"}
    assert names_for(status="busy") == set()
    assert names_for(project_id=project) == {"a_b"}
    assert names_for(project_id=project, status="active") == set()
    assert names_for(name="a", status="active") == {"axb"}
    with pytest.raises(InvalidInput):
        services.agents.list(ws, status="sleeping")


def test_bad_limits_and_cursors_are_invalid_input(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws)
    for limit in (0, -1):
        with pytest.raises(InvalidInput):
            services.agents.list(ws, limit=limit)
    for cursor in (
        "%%%",
        "not-base64!",
        encode_cursor("only one part"),
        encode_cursor("yesterday", agent.id),
        encode_cursor(agent.created_at.isoformat(), "not-a-uuid"),
        encode_cursor(agent.created_at.replace(tzinfo=None).isoformat(), agent.id),  # naive time
        encode_cursor(5, 6),
    ):
        with pytest.raises(InvalidInput):
            services.agents.list(ws, cursor=cursor)
        with pytest.raises(InvalidInput):
            services.agents.status_history(agent.id, cursor=cursor)


# -- update --------------------------------------------------------------------------------------
def test_update_renames_and_writes_one_event_with_the_changed_fields(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws, "alice")
    renamed = services.agents.update(agent.id, AgentUpdate(name="alicia", expected_lock_version=1), actor="user")
    assert (renamed.name, renamed.lock_version) == ("alicia", 2)
    assert services.agents.get(agent.id) == renamed
    updated = events_of(services, agent.id, EventType.AGENT_UPDATED)
    assert [(e["changed"], e["agent"]["name"], e["actor"]) for e in updated] == [(["name"], "alicia", "user")]
    # Nothing to change writes nothing.
    before = row_counts(services)
    assert services.agents.update(agent.id, AgentUpdate(name="alicia")).lock_version == 2
    assert services.agents.update(agent.id, AgentUpdate()).lock_version == 2
    assert row_counts(services) == before


def test_rename_onto_a_taken_name_is_a_conflict_and_writes_nothing(services: Services) -> None:
    ws = make_workspace(services)
    make_agent(services, ws, "alice")
    bob = make_agent(services, ws, "bob")
    before = row_counts(services)
    with pytest.raises(Conflict):
        services.agents.update(bob.id, AgentUpdate(name="alice"))
    assert row_counts(services) == before
    assert services.agents.get(bob.id) == bob


def test_a_stale_lock_version_is_refused_and_changes_nothing(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws, "alice")
    services.agents.activate(agent.id)  # lock_version 2 now
    before = row_counts(services)
    with pytest.raises(StaleVersion) as stale:
        services.agents.update(agent.id, AgentUpdate(name="other", expected_lock_version=1))
    assert (stale.value.expected, stale.value.current) == (1, 2)
    with pytest.raises(StaleVersion):
        services.agents.set_status(agent.id, "busy", expected_lock_version=1)
    assert row_counts(services) == before
    assert services.agents.get(agent.id).name == "alice"
    assert services.agents.update(agent.id, AgentUpdate(name="other", expected_lock_version=2)).lock_version == 3


def test_update_moves_an_agent_between_projects_of_its_workspace_only(services: Services) -> None:
    ws, other = make_workspace(services), make_workspace(services)
    mine = services.workspaces.create_project(ws, ProjectCreate(slug="p", name="P")).id
    theirs = services.workspaces.create_project(other, ProjectCreate(slug="p", name="P")).id
    agent = make_agent(services, ws)
    assert services.agents.update(agent.id, AgentUpdate(project_id=mine)).project_id == mine
    with pytest.raises(NotFound):
        services.agents.update(agent.id, AgentUpdate(project_id=theirs))
    assert services.agents.update(agent.id, AgentUpdate(project_id=None)).project_id is None


# -- deletion ------------------------------------------------------------------------------------
def test_delete_writes_agent_deleted_and_removes_context_thread_and_audit(services: Services) -> None:
    ws = make_workspace(services)
    agent = make_agent(services, ws, "doomed", context={"a": 1})
    keeper = make_agent(services, ws, "keeper")
    services.agents.activate(agent.id)
    services.contexts.update(agent.id, ContextUpdate(patch={"b": 2}))
    with services.db.write() as session:
        session.add(AgentMessage(workspace_id=ws, agent_id=agent.id, seq=1, sender="user", role="user", content="hi"))

    services.agents.delete(agent.id, actor="user")

    with pytest.raises(NotFound):
        services.agents.get(agent.id)
    with services.db.read() as session:
        assert session.exec(select(AgentContext).where(AgentContext.agent_id == agent.id)).all() == []
        assert session.exec(select(AgentMessage).where(AgentMessage.agent_id == agent.id)).all() == []
        assert session.exec(select(AgentStatusChange).where(AgentStatusChange.agent_id == agent.id)).all() == []
        assert session.exec(select(func.count()).select_from(AgentContextVersion)).one() == 1  # keeper's v1
    events = events_of(services, agent.id)
    assert events[-1]["type"] == EventType.AGENT_DELETED
    assert (events[-1]["name"], events[-1]["actor"]) == ("doomed", "user")
    assert [e["type"] for e in events[:-1]] == ["agent_created", "agent_status_changed", "agent_context_updated"]
    assert services.agents.get(keeper.id) == keeper
    with pytest.raises(NotFound):
        services.agents.delete(agent.id)
    # The name is free again.
    assert make_agent(services, ws, "doomed").name == "doomed"


# -- scoping -------------------------------------------------------------------------------------
def test_another_workspaces_agent_is_not_found_through_every_call(services: Services) -> None:
    mine, theirs = make_workspace(services), make_workspace(services)
    agent = make_agent(services, theirs, "secret-agent", context={"k": 1})
    before = row_counts(services)
    for call in (
        lambda: services.agents.get(agent.id, scope=mine),
        lambda: services.agents.update(agent.id, AgentUpdate(name="x"), scope=mine),
        lambda: services.agents.delete(agent.id, scope=mine),
        lambda: services.agents.set_status(agent.id, "active", scope=mine),
        lambda: services.agents.activate(agent.id, scope=mine),
        lambda: services.agents.status_history(agent.id, scope=mine),
        lambda: services.contexts.get(agent.id, scope=mine),
        lambda: services.contexts.update(agent.id, ContextUpdate(data={}), scope=mine),
        lambda: services.contexts.rollback(agent.id, ContextRollback(version=1), scope=mine),
        lambda: services.contexts.versions(agent.id, scope=mine),
        lambda: services.contexts.version(agent.id, 1, scope=mine),
        lambda: services.contexts.diff(agent.id, 1, 1, scope=mine),
    ):
        with pytest.raises(NotFound) as missing:
            call()
        assert "secret-agent" not in str(missing.value)
    assert row_counts(services) == before
    assert services.agents.list(mine).items == []
    # The same calls with the right scope, or none (inside core), work.
    assert services.agents.get(agent.id, scope=theirs).name == "secret-agent"
    assert services.agents.get(agent.id).name == "secret-agent"


def test_an_unknown_agent_id_is_not_found_like_another_workspaces(services: Services) -> None:
    unknown = uuid.uuid4()
    for call in (
        lambda: services.agents.get(unknown),
        lambda: services.agents.update(unknown, AgentUpdate(name="x")),
        lambda: services.agents.delete(unknown),
        lambda: services.agents.set_status(unknown, "active"),
        lambda: services.agents.status_history(unknown),
    ):
        with pytest.raises(NotFound):
            call()


# -- the demo workspace --------------------------------------------------------------------------
def test_seed_demo_creates_the_demo_team_once(services: Services) -> None:
    ws = seed_demo(services)
    assert ws.slug == "demo"
    agents = {a.name: a for a in walk(services, ws.id, limit=500)}
    assert set(agents) == {a.name for a in DEMO_AGENTS}
    assert {a.definition for a in agents.values()} == {
        "product-manager",
        "architect",
        "project-manager",
        "engineer",
        "qa-engineer",
        "assistant",
    }
    assert "Alice (PM)" in agents and agents["Alice (PM)"].definition == "product-manager"
    for spec in DEMO_AGENTS:
        context = services.contexts.get(agents[spec.name].id)
        assert (context.version, context.data) == (1, spec.context)
        assert context.data, "every demo agent starts with a little context"

    before = row_counts(services)
    assert seed_demo(services).id == ws.id
    assert row_counts(services) == before
    assert [w.slug for w in services.workspaces.list()].count("demo") == 1


def test_seed_demo_leaves_a_seeded_workspace_as_the_user_left_it(services: Services) -> None:
    ws = seed_demo(services)
    alice = next(a for a in walk(services, ws.id, limit=500) if a.name == "Alice (PM)")
    services.agents.delete(alice.id)
    seed_demo(services)
    assert "Alice (PM)" not in {a.name for a in walk(services, ws.id, limit=500)}


def test_seed_demo_finishes_a_seeding_that_stopped_half_way(services: Services) -> None:
    ws = services.workspaces.ensure_demo()  # as if a first start died right after this
    first = DEMO_AGENTS[0]
    make_agent(services, ws.id, first.name, definition=first.definition, context=first.context)
    seed_demo(services)
    names = [a.name for a in walk(services, ws.id, limit=500)]
    assert sorted(names) == sorted(a.name for a in DEMO_AGENTS)
