"""Workspaces, projects and repository links: the tenancy every other aggregate hangs off."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from core.errors import Conflict, NotFound
from core.events import EventType, append_event
from core.schemas import (
    AgentCreate,
    ProjectCreate,
    ProjectUpdate,
    RepositoryLinkCreate,
    WorkspaceCreate,
    WorkspaceUpdate,
)
from core.services import Services
from storage.models import Event
from storage.types import utcnow
from tests.waiting import eventually


def test_workspace_is_created_renamed_listed_and_its_slug_stays_unique(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="acme", name="Acme"))
    assert services.workspaces.get_by_slug("acme").id == ws.id
    renamed = services.workspaces.update(ws.id, WorkspaceUpdate(name="Acme Corp", settings={"code_execution": False}))
    assert (renamed.name, renamed.settings) == ("Acme Corp", {"code_execution": False})
    # Settings merge: a later update of one key keeps the others.
    assert services.workspaces.update(ws.id, WorkspaceUpdate(settings={"x": 1})).settings == {
        "code_execution": False,
        "x": 1,
    }
    with pytest.raises(Conflict):
        services.workspaces.create(WorkspaceCreate(slug="acme"))
    assert [w.slug for w in services.workspaces.list()] == ["acme"]


@pytest.mark.parametrize("slug", ["", "UPPER", "-dash", "dash-", "a b", "x" * 65, "ü"])
def test_bad_slugs_are_refused_before_anything_is_written(services: Services, slug: str) -> None:
    with pytest.raises(ValidationError):
        services.workspaces.create(WorkspaceCreate(slug=slug))
    assert services.workspaces.list() == []


def test_projects_and_repository_links_belong_to_one_workspace(services: Services) -> None:
    a = services.workspaces.create(WorkspaceCreate(slug="a"))
    b = services.workspaces.create(WorkspaceCreate(slug="b"))
    project = services.workspaces.create_project(a.id, ProjectCreate(slug="web", name="Web", description="site"))
    with pytest.raises(Conflict):
        services.workspaces.create_project(a.id, ProjectCreate(slug="web", name="Again"))
    # The same slug in another workspace is another project.
    services.workspaces.create_project(b.id, ProjectCreate(slug="web", name="B's web"))

    updated = services.workspaces.update_project(a.id, project.id, ProjectUpdate(name="Website"))
    assert (updated.name, updated.description) == ("Website", "site")
    link = services.workspaces.add_repository(
        a.id, project.id, RepositoryLinkCreate(url="https://example.org/web.git", default_branch="trunk")
    )
    assert [r.url for r in services.workspaces.list_repositories(a.id, project.id)] == ["https://example.org/web.git"]
    assert link.default_branch == "trunk"

    # Through another workspace, the project and its link do not exist.
    for call in (
        lambda: services.workspaces.get_project(b.id, project.id),
        lambda: services.workspaces.list_repositories(b.id, project.id),
        lambda: services.workspaces.remove_repository(b.id, project.id, link.id),
        lambda: services.workspaces.delete_project(b.id, project.id),
    ):
        with pytest.raises(NotFound):
            call()

    services.workspaces.remove_repository(a.id, project.id, link.id)
    assert services.workspaces.list_repositories(a.id, project.id) == []
    with pytest.raises(NotFound):
        services.workspaces.remove_repository(a.id, project.id, uuid.uuid4())


def test_deleting_a_project_keeps_its_agents_without_a_project(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="w"))
    project = services.workspaces.create_project(ws.id, ProjectCreate(slug="p", name="P"))
    link = services.workspaces.add_repository(ws.id, project.id, RepositoryLinkCreate(url="https://example.org/r.git"))
    agent = services.agents.create(
        AgentCreate(workspace_id=ws.id, definition="assistant", name="helper", project_id=project.id)
    )
    services.workspaces.delete_project(ws.id, project.id)
    assert services.agents.get(agent.id).project_id is None
    with pytest.raises(NotFound):
        services.workspaces.get_project(ws.id, project.id)
    with pytest.raises(NotFound):
        services.workspaces.remove_repository(ws.id, project.id, link.id)


def test_counts_are_per_workspace(services: Services) -> None:
    a = services.workspaces.create(WorkspaceCreate(slug="a"))
    b = services.workspaces.create(WorkspaceCreate(slug="b"))
    services.agents.create(AgentCreate(workspace_id=a.id, definition="assistant", name="one"))
    services.agents.create(AgentCreate(workspace_id=a.id, definition="assistant", name="two"))
    assert services.workspaces.counts(a.id) == {"workspaces": 2, "agents": 2}
    assert services.workspaces.counts(b.id) == {"workspaces": 2, "agents": 0}


async def test_running_services_apply_the_event_retention_setting(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug="r"))
    with services.db.write() as session:
        append_event(session, EventType.AGENT_ACTIVITY, ws.id, {"activity": "old", "agent_name": "tester"})
        append_event(session, EventType.AGENT_ACTIVITY, ws.id, {"activity": "new", "agent_name": "tester"})
    with services.db.write() as session:
        session.execute(sa.update(Event).where(Event.seq == 1).values(created_at=utcnow() - timedelta(days=40)))
    services.settings.event_retention_days = 30

    def kept() -> list[dict[str, object]]:
        with services.db.read() as session:
            return [e.payload for e in session.exec(sa.select(Event)).scalars()]

    await services.start()
    try:
        await eventually(lambda: kept() == [{"activity": "new", "agent_name": "tester"}])
    finally:
        await services.stop()
