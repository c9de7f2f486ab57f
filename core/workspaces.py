"""Workspaces, projects and repository links: the tenancy every other aggregate hangs off.

Rules: slugs are unique (workspace globally, project within its workspace); deleting a workspace
deletes everything that belongs to it (agents, threads, contexts, runs, events, tokens, profiles)
in one transaction, by the database's ON DELETE CASCADE.
"""

from __future__ import annotations

import builtins
import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from core.db import Database
from core.errors import Conflict, NotFound
from core.schemas import (
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
    RepositoryLinkCreate,
    RepositoryLinkPublic,
    WorkspaceCreate,
    WorkspacePublic,
    WorkspaceUpdate,
)
from storage.models import AgentInstance, Project, RepositoryLink, Workspace

MAX_WORKSPACES_LISTED = 1000
DEMO_SLUG = "demo"
# The workspace setting that lets team runs execute generated code (in the run's own venv).
CODE_EXECUTION = "code_execution"


def code_execution_enabled(settings: dict[str, object]) -> bool:
    """Off unless an operator turned it on (issue 12: generated code is hostile by default)."""
    return bool(settings.get(CODE_EXECUTION, False))


class WorkspaceService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- workspaces ------------------------------------------------------------------------
    def create(self, data: WorkspaceCreate) -> WorkspacePublic:
        with self.db.read() as session:
            if session.exec(select(Workspace.id).where(Workspace.slug == data.slug)).first():
                raise Conflict(f"a workspace with slug {data.slug!r} already exists", slug=data.slug)
        try:
            with self.db.write() as session:
                ws = Workspace(slug=data.slug, name=data.name or data.slug)
                session.add(ws)
                session.flush()
                return WorkspacePublic.model_validate(ws)
        except IntegrityError as exc:
            raise Conflict(f"a workspace with slug {data.slug!r} already exists", slug=data.slug) from exc

    def ensure_demo(self) -> WorkspacePublic:
        """The `demo` workspace of `--demo`, created once; later starts leave it as it is."""
        try:
            return self.get_by_slug(DEMO_SLUG)
        except NotFound:
            return self.create(WorkspaceCreate(slug=DEMO_SLUG, name="Demo"))

    def list(self) -> list[WorkspacePublic]:
        with self.db.read() as session:
            rows = session.exec(select(Workspace).order_by(col(Workspace.slug)).limit(MAX_WORKSPACES_LISTED))
            return [WorkspacePublic.model_validate(ws) for ws in rows]

    def get(self, workspace_id: uuid.UUID) -> WorkspacePublic:
        with self.db.read() as session:
            return WorkspacePublic.model_validate(_workspace(session, workspace_id))

    def get_by_slug(self, slug: str) -> WorkspacePublic:
        with self.db.read() as session:
            ws = session.exec(select(Workspace).where(Workspace.slug == slug)).first()
            if ws is None:
                raise NotFound("workspace", slug)
            return WorkspacePublic.model_validate(ws)

    def update(self, workspace_id: uuid.UUID, data: WorkspaceUpdate) -> WorkspacePublic:
        with self.db.write() as session:
            ws = _workspace(session, workspace_id)
            if data.name is not None:
                ws.name = data.name
            if data.settings is not None:
                ws.settings = {**ws.settings, **data.settings}
            session.add(ws)
            session.flush()
            return WorkspacePublic.model_validate(ws)

    def set_code_execution(self, workspace_id: uuid.UUID, enabled: bool) -> WorkspacePublic:
        """The operator's switch (CLI, Settings, an admin token's PATCH)."""
        return self.update(workspace_id, WorkspaceUpdate(settings={CODE_EXECUTION: enabled}))

    def delete(self, workspace_id: uuid.UUID) -> None:
        with self.db.write() as session:
            ws = _workspace(session, workspace_id)
            session.delete(ws)

    def counts(self, workspace_id: uuid.UUID | None = None) -> dict[str, int]:
        """Small dashboard figures; each is one COUNT over an indexed column."""
        with self.db.read() as session:
            agents = select(func.count()).select_from(AgentInstance)
            if workspace_id is not None:
                agents = agents.where(AgentInstance.workspace_id == workspace_id)
            return {
                "workspaces": session.exec(select(func.count()).select_from(Workspace)).one(),
                "agents": session.exec(agents).one(),
            }

    # -- projects --------------------------------------------------------------------------
    def create_project(self, workspace_id: uuid.UUID, data: ProjectCreate) -> ProjectPublic:
        try:
            with self.db.write() as session:
                _workspace(session, workspace_id)
                project = Project(workspace_id=workspace_id, **data.model_dump())
                session.add(project)
                session.flush()
                return ProjectPublic.model_validate(project)
        except IntegrityError as exc:
            raise Conflict(f"a project with slug {data.slug!r} already exists here", slug=data.slug) from exc

    def list_projects(self, workspace_id: uuid.UUID) -> builtins.list[ProjectPublic]:
        with self.db.read() as session:
            _workspace(session, workspace_id)
            rows = session.exec(select(Project).where(Project.workspace_id == workspace_id).order_by(col(Project.slug)))
            return [ProjectPublic.model_validate(p) for p in rows]

    def get_project(self, workspace_id: uuid.UUID, project_id: uuid.UUID) -> ProjectPublic:
        with self.db.read() as session:
            return ProjectPublic.model_validate(_project(session, workspace_id, project_id))

    def update_project(self, workspace_id: uuid.UUID, project_id: uuid.UUID, data: ProjectUpdate) -> ProjectPublic:
        with self.db.write() as session:
            project = _project(session, workspace_id, project_id)
            for key, value in data.model_dump(exclude_none=True).items():
                setattr(project, key, value)
            session.add(project)
            session.flush()
            return ProjectPublic.model_validate(project)

    def delete_project(self, workspace_id: uuid.UUID, project_id: uuid.UUID) -> None:
        with self.db.write() as session:
            session.delete(_project(session, workspace_id, project_id))

    # -- repository links ------------------------------------------------------------------
    def add_repository(
        self, workspace_id: uuid.UUID, project_id: uuid.UUID, data: RepositoryLinkCreate
    ) -> RepositoryLinkPublic:
        with self.db.write() as session:
            _project(session, workspace_id, project_id)
            link = RepositoryLink(project_id=project_id, **data.model_dump())
            session.add(link)
            session.flush()
            return RepositoryLinkPublic.model_validate(link)

    def list_repositories(self, workspace_id: uuid.UUID, project_id: uuid.UUID) -> builtins.list[RepositoryLinkPublic]:
        with self.db.read() as session:
            _project(session, workspace_id, project_id)
            rows = session.exec(
                select(RepositoryLink)
                .where(RepositoryLink.project_id == project_id)
                .order_by(col(RepositoryLink.created_at))
            )
            return [RepositoryLinkPublic.model_validate(r) for r in rows]

    def remove_repository(self, workspace_id: uuid.UUID, project_id: uuid.UUID, link_id: uuid.UUID) -> None:
        with self.db.write() as session:
            _project(session, workspace_id, project_id)
            link = session.get(RepositoryLink, link_id)
            if link is None or link.project_id != project_id:
                raise NotFound("repository link", link_id)
            session.delete(link)


def _workspace(session: Session, workspace_id: uuid.UUID) -> Workspace:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound("workspace", workspace_id)
    return ws


def _project(session: Session, workspace_id: uuid.UUID, project_id: uuid.UUID) -> Project:
    project = session.get(Project, project_id)
    if project is None or project.workspace_id != workspace_id:
        raise NotFound("project", project_id)
    return project
