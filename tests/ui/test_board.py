"""The agents board (`/`), as a person sees it in the `user` fixture's simulated browser: cards with
live status badges, filters, keyset "load more", the create dialog and the status actions, and
changes made elsewhere (another tab, the API) arriving without a reload."""

from __future__ import annotations

import json
import uuid

from nicegui import ui
from nicegui.testing import User

from core.schemas import AgentCreate, AgentUpdate, ProjectCreate, WorkspaceCreate, WorkspacePublic
from tests.ui.running_app import app_services
from tests.waiting import eventually
from ui.board import PAGE_SIZE
from ui.widgets import STATUS_COLORS


def only(user: User, marker: str) -> ui.element:
    elements = user.find(marker=marker).elements
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}"
    return next(iter(elements))


def workspace(slug: str = "team") -> WorkspacePublic:
    return app_services().workspaces.create(WorkspaceCreate(slug=slug, name=slug.title()))


def add_agent(ws: WorkspacePublic, name: str, definition: str = "assistant", **fields: object):  # type: ignore[no-untyped-def]
    return app_services().agents.create(AgentCreate(workspace_id=ws.id, definition=definition, name=name, **fields))  # type: ignore[arg-type]


def cards(user: User) -> int:
    try:
        return len(user.find(marker="agent-card").elements)
    except AssertionError:
        return 0


def status(user: User, agent_id: uuid.UUID) -> str:
    """The status the agent's card shows (its badge; also the card's data-status attribute)."""
    shown = only(user, f"agent-{agent_id}").props["data-status"]
    assert f'data-status="{shown}"' in body(user, agent_id)
    return shown


def body(user: User, agent_id: uuid.UUID) -> str:
    return only(user, f"agent-body-{agent_id}").content  # type: ignore[attr-defined]


def open_menu(user: User, agent_id: uuid.UUID) -> None:
    user.find(marker=f"more-{agent_id}").click()


def transitions(user: User, agent_id: uuid.UUID, *, open_it: bool = True) -> set[str]:
    """The status actions offered by the agent's menu (which is filled when it opens)."""
    if open_it:
        open_menu(user, agent_id)
    prefix = f"transition-{agent_id}-"
    return {
        marker.removeprefix(prefix)
        for element in user.find(marker=f"transition-{agent_id}").elements
        for marker in element._markers
        if marker.startswith(prefix)
    }


def choose(user: User, marker: str, value: str) -> None:
    with user.client:  # type: ignore[union-attr]
        only(user, marker).value = value  # type: ignore[attr-defined]


async def test_the_board_shows_every_agent_with_a_coloured_status_badge(user: User) -> None:
    ws = workspace()
    pm = add_agent(ws, "Alice", "product-manager")
    bot = add_agent(ws, "Helper")
    app_services().agents.set_status(bot.id, "active", reason="warmed up")

    await user.open("/")
    await user.should_see("Alice")
    await user.should_see("Product Manager")
    await user.should_see("warmed up")
    assert status(user, pm.id) == "idle"
    assert status(user, bot.id) == "active"
    assert f"bg-{STATUS_COLORS['active']}" in body(user, bot.id)  # coloured by status
    assert f'href="/agents/{pm.id}"' in body(user, pm.id)  # the card opens the agent page
    await user.should_see("2 agents")


async def test_an_empty_workspace_invites_to_create_an_agent(user: User) -> None:
    workspace()
    await user.open("/")
    await user.should_see("No agents yet")
    await user.should_not_see(marker="load-more")


async def test_filters_narrow_the_board_by_status_project_and_name(user: User) -> None:
    ws = workspace()
    project = app_services().workspaces.create_project(ws.id, ProjectCreate(slug="site", name="Website"))
    alice = add_agent(ws, "Alice", project_id=project.id)
    bob = add_agent(ws, "Bob")
    carol = add_agent(ws, "Carol")
    app_services().agents.set_status(bob.id, "offline")

    await user.open("/")
    await eventually(lambda: cards(user) == 3)

    choose(user, "status-filter", "offline")
    await eventually(lambda: cards(user) == 1)
    await user.should_see(marker=f"agent-{bob.id}")

    choose(user, "status-filter", "")
    choose(user, "project-filter", str(project.id))
    await eventually(lambda: cards(user) == 1)
    await user.should_see(marker=f"agent-{alice.id}")
    await user.should_see("Website")

    choose(user, "project-filter", "")
    user.find(marker="name-filter").type("car")
    await eventually(lambda: cards(user) == 1)
    await user.should_see(marker=f"agent-{carol.id}")

    user.find(marker="name-filter").type("zzz")
    await user.should_see("No agent matches these filters")


async def test_load_more_pages_through_a_big_workspace_a_page_at_a_time(user: User) -> None:
    ws = workspace()
    total = PAGE_SIZE * 2 + 7
    for n in range(total):
        add_agent(ws, f"agent-{n:03}")

    await user.open("/")
    await eventually(lambda: cards(user) == PAGE_SIZE)
    await user.should_see(f"{total} agents")
    await user.should_not_see(f"agent-{PAGE_SIZE:03}")

    user.find(marker="load-more").click()
    await eventually(lambda: cards(user) == 2 * PAGE_SIZE)
    user.find(marker="load-more").click()
    await eventually(lambda: cards(user) == total)
    await user.should_see(f"agent-{total - 1:03}")
    await user.should_not_see(marker="load-more")


async def test_the_create_dialog_creates_an_agent_with_the_definition_defaults(user: User) -> None:
    ws = workspace()
    await user.open("/")
    user.find(marker="new-agent").click()
    choose(user, "new-agent-definition", "assistant")
    await user.should_see("A generic assistant whose behaviour is its system prompt.")
    config = only(user, "new-agent-config")
    assert json.loads(config.value) == {"system_prompt": "You are a helpful assistant."}  # type: ignore[attr-defined]

    user.find(marker="new-agent-name").type("Scribe")
    user.find(marker="new-agent-create").click()

    await user.should_see("Agent Scribe created")
    page = app_services().agents.list(ws.id)
    assert [a.name for a in page.items] == ["Scribe"]
    assert page.items[0].config["system_prompt"] == "You are a helpful assistant."
    await user.should_see(marker=f"agent-{page.items[0].id}")


async def test_invalid_json_in_the_config_is_explained_and_creates_nothing(user: User) -> None:
    ws = workspace()
    await user.open("/")
    user.find(marker="new-agent").click()
    user.find(marker="new-agent-name").type("Broken")
    with user.client:  # type: ignore[union-attr]
        only(user, "new-agent-config").value = '{"system_prompt": '  # type: ignore[attr-defined]
    user.find(marker="new-agent-create").click()

    error = only(user, "new-agent-config-error")
    await eventually(lambda: "Invalid JSON" in error.text)  # type: ignore[attr-defined]
    assert app_services().agents.list(ws.id).items == []


async def test_a_config_that_is_not_an_object_is_explained_on_the_config_and_creates_nothing(user: User) -> None:
    ws = workspace()
    await user.open("/")
    user.find(marker="new-agent").click()
    user.find(marker="new-agent-name").type("Listy")
    with user.client:  # type: ignore[union-attr]
        only(user, "new-agent-config").value = "[1, 2]"  # type: ignore[attr-defined]
    user.find(marker="new-agent-create").click()

    error = only(user, "new-agent-config-error")
    await eventually(lambda: "config must be a JSON object" in error.text)  # type: ignore[attr-defined]
    assert only(user, "new-agent-name").error is None  # type: ignore[attr-defined]  # the field core named
    assert app_services().agents.list(ws.id).items == []


async def test_a_config_the_schema_refuses_is_explained_and_creates_nothing(user: User) -> None:
    ws = workspace()
    await user.open("/")
    user.find(marker="new-agent").click()
    choose(user, "new-agent-definition", "assistant")
    user.find(marker="new-agent-name").type("Hot")
    with user.client:  # type: ignore[union-attr]
        only(user, "new-agent-config").value = json.dumps({"system_prompt": "hi", "temperature": 7})  # type: ignore[attr-defined]
    user.find(marker="new-agent-create").click()

    error = only(user, "new-agent-config-error")
    await eventually(lambda: "temperature" in error.text)  # type: ignore[attr-defined]
    assert "7 is greater than the maximum of 2" in error.text  # type: ignore[attr-defined]
    assert app_services().agents.list(ws.id).items == []


async def test_a_taken_name_is_refused_on_the_field(user: User) -> None:
    ws = workspace()
    add_agent(ws, "Twin")
    await user.open("/")
    user.find(marker="new-agent").click()
    name = only(user, "new-agent-name")
    user.find(marker="new-agent-name").type("Twin")
    user.find(marker="new-agent-create").click()
    await eventually(lambda: name.error is not None)  # type: ignore[attr-defined]
    assert "already exists" in name.error  # type: ignore[attr-defined]
    assert len(app_services().agents.list(ws.id).items) == 1


async def test_the_status_menu_offers_only_allowed_transitions_and_updates_the_badge(user: User) -> None:
    ws = workspace()
    agent = add_agent(ws, "Mover")
    await user.open("/")
    assert transitions(user, agent.id) == set(agent.allowed_transitions)

    user.find(marker=f"transition-{agent.id}-active").click()
    await eventually(lambda: status(user, agent.id) == "active")
    assert f"bg-{STATUS_COLORS['active']}" in body(user, agent.id)
    assert app_services().agents.get(agent.id).status == "active"
    assert transitions(user, agent.id) == {"busy", "idle", "error", "offline"}


async def test_activate_and_deactivate(user: User) -> None:
    ws = workspace()
    agent = add_agent(ws, "Switch")
    await user.open("/")
    toggle = only(user, f"toggle-{agent.id}")
    assert toggle.text == "Activate"  # type: ignore[attr-defined]

    user.find(marker=f"toggle-{agent.id}").click()
    await eventually(lambda: status(user, agent.id) == "active")
    assert toggle.text == "Deactivate"  # type: ignore[attr-defined]

    user.find(marker=f"toggle-{agent.id}").click()
    await eventually(lambda: status(user, agent.id) == "offline")
    assert app_services().agents.get(agent.id).status == "offline"
    await user.should_see("deactivated")


async def test_a_transition_refused_after_a_race_says_why_and_shows_the_real_status(user: User) -> None:
    ws = workspace()
    agent = add_agent(ws, "Racer")
    await user.open("/")
    assert "initializing" in transitions(user, agent.id)

    app_services().agents.set_status(agent.id, "active")  # someone else wins the race
    user.find(marker=f"transition-{agent.id}-initializing").click()

    await user.should_see("cannot go from 'active' to 'initializing'")
    await eventually(lambda: status(user, agent.id) == "active")
    assert app_services().agents.get(agent.id).status == "active"


async def test_a_status_change_made_elsewhere_appears_without_reload(user: User) -> None:
    ws = workspace()
    agent = add_agent(ws, "Watched")
    await user.open("/")
    assert status(user, agent.id) == "idle"
    assert transitions(user, agent.id) == {"initializing", "active", "offline", "error"}  # menu left open

    app_services().agents.set_status(agent.id, "error", reason="LLM timed out")  # as the API would

    await eventually(lambda: status(user, agent.id) == "error")
    await user.should_see("LLM timed out", retries=20)
    assert transitions(user, agent.id, open_it=False) == {"idle", "active", "offline"}  # the open menu too


async def test_agents_created_renamed_and_deleted_elsewhere_appear_live(user: User) -> None:
    ws = workspace()
    first = add_agent(ws, "First")
    await user.open("/")
    await eventually(lambda: cards(user) == 1)

    second = add_agent(ws, "Second")
    await eventually(lambda: cards(user) == 2)
    await user.should_see("2 agents")

    app_services().agents.update(second.id, AgentUpdate(name="Renamed"))
    await user.should_see("Renamed", retries=20)

    app_services().agents.delete(first.id)
    await eventually(lambda: cards(user) == 1)
    await user.should_not_see(marker=f"agent-{first.id}")


async def test_live_changes_respect_the_filters(user: User) -> None:
    ws = workspace()
    agent = add_agent(ws, "Filtered")
    await user.open("/")
    choose(user, "status-filter", "active")
    await user.should_see("No agent matches these filters")

    add_agent(ws, "Newcomer")  # idle: not shown under "active"
    app_services().agents.activate(agent.id)  # enters the filter
    await eventually(lambda: cards(user) == 1)
    await user.should_see(marker=f"agent-{agent.id}")

    app_services().agents.set_status(agent.id, "offline")  # leaves it
    await eventually(lambda: cards(user) == 0)


async def test_events_of_another_workspace_do_not_reach_the_board(user: User) -> None:
    own = workspace("alpha")
    other = workspace("beta")
    await user.open("/")
    add_agent(other, "Stranger")
    # The bus delivers in commit order: once the later agent of our own workspace is on the board,
    # the stranger's earlier event has been through the board's filter too.
    add_agent(own, "Neighbour")
    await user.should_see("Neighbour")
    assert cards(user) == 1
    await user.should_not_see("Stranger")


async def test_the_catalog_link_preselects_a_definition_in_the_create_dialog(user: User) -> None:
    workspace()
    await user.open("/?new=engineer")
    assert only(user, "new-agent-definition").value == "engineer"  # type: ignore[attr-defined]
    await user.should_see("writes the code file by file")


async def test_a_burst_of_agents_created_elsewhere_fills_one_page_and_waits_for_load_more(user: User) -> None:
    ws = workspace()
    await user.open("/")
    await user.should_see("No agents yet")

    total = PAGE_SIZE + 10
    for n in range(total):
        add_agent(ws, f"burst-{n:03}")

    await user.should_see(f"{total} agents", retries=40)
    assert cards(user) == PAGE_SIZE  # never more cards than the pages loaded
    user.find(marker="load-more").click()
    await eventually(lambda: cards(user) == total)
    await user.should_not_see(marker="load-more")
