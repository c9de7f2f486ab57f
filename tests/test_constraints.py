"""The database itself refuses duplicates and orphans; deleting a workspace takes what is in it."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.services import Services
from storage.models import (
    AgentContext,
    AgentDefinition,
    AgentInstance,
    AgentMessage,
    Event,
    Project,
    Workspace,
)


def _engine(services: Services) -> sa.Engine:
    return services.db.engine


def _seed(session: Session) -> tuple[Workspace, AgentDefinition, AgentInstance]:
    ws = Workspace(slug=f"ws-{uuid.uuid4().hex[:6]}", name="WS")
    definition = AgentDefinition(slug=f"def-{uuid.uuid4().hex[:6]}", name="D", role_kind="assistant")
    session.add_all([ws, definition])
    session.flush()
    agent = AgentInstance(workspace_id=ws.id, definition_id=definition.id, name="alice")
    session.add(agent)
    session.flush()
    return ws, definition, agent


def test_duplicate_workspace_slug_is_refused_by_the_database(services: Services) -> None:
    with Session(_engine(services)) as session:
        session.add(Workspace(slug="same", name="A"))
        session.commit()
        session.add(Workspace(slug="same", name="B"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_duplicate_agent_name_in_one_workspace_is_refused(services: Services) -> None:
    with Session(_engine(services)) as session:
        ws, definition, _ = _seed(session)
        session.commit()
        session.add(AgentInstance(workspace_id=ws.id, definition_id=definition.id, name="alice"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_same_agent_name_in_two_workspaces_is_fine(services: Services) -> None:
    with Session(_engine(services)) as session:
        _ws, definition, _ = _seed(session)
        other = Workspace(slug="other", name="Other")
        session.add(other)
        session.flush()
        session.add(AgentInstance(workspace_id=other.id, definition_id=definition.id, name="alice"))
        session.commit()


def test_duplicate_project_slug_per_workspace_is_refused(services: Services) -> None:
    with Session(_engine(services)) as session:
        ws, _, _ = _seed(session)
        session.add(Project(workspace_id=ws.id, slug="p", name="P"))
        session.commit()
        session.add(Project(workspace_id=ws.id, slug="p", name="P2"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_unknown_status_is_refused_by_the_database(services: Services) -> None:
    with Session(_engine(services)) as session:
        _, _, agent = _seed(session)
        session.commit()
        agent.status = "sleeping"
        session.add(agent)
        with pytest.raises(IntegrityError):
            session.commit()


def test_agent_of_an_unknown_workspace_is_refused(services: Services) -> None:
    with Session(_engine(services)) as session:
        _, definition, _ = _seed(session)
        session.add(AgentInstance(workspace_id=uuid.uuid4(), definition_id=definition.id, name="ghost"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_definition_in_use_cannot_be_deleted(services: Services) -> None:
    with Session(_engine(services)) as session:
        _, definition, _ = _seed(session)
        session.commit()
        with pytest.raises(IntegrityError):
            session.execute(sa.delete(AgentDefinition).where(AgentDefinition.id == definition.id))
            session.commit()


def test_deleting_a_workspace_removes_everything_in_it(services: Services) -> None:
    with Session(_engine(services)) as session:
        ws, _, agent = _seed(session)
        keep, _, kept_agent = _seed(session)
        session.add(AgentContext(agent_id=agent.id))
        session.add(AgentMessage(workspace_id=ws.id, agent_id=agent.id, seq=1, sender="u", role="user", content="hi"))
        session.add(Event(seq=1, workspace_id=ws.id, agent_id=agent.id, type="agent_created"))
        session.add(Event(seq=2, workspace_id=keep.id, agent_id=kept_agent.id, type="agent_created"))
        session.commit()
        ws_id, keep_id = ws.id, keep.id

    services.workspaces.delete(ws_id)

    with Session(_engine(services)) as session:
        assert session.get(Workspace, ws_id) is None
        assert session.exec(select(AgentInstance).where(AgentInstance.workspace_id == ws_id)).all() == []
        assert session.exec(select(AgentMessage).where(AgentMessage.workspace_id == ws_id)).all() == []
        assert session.exec(select(AgentContext)).all() == []
        assert [e.seq for e in session.exec(select(Event))] == [2]
        assert session.get(Workspace, keep_id) is not None
        assert len(session.exec(select(AgentInstance)).all()) == 1
