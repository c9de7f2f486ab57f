"""Workspaces and their projects (SPEC §6).

A token belongs to one workspace, so `GET /api/workspaces` lists that one workspace only, and
every `/api/workspaces/{id}/...` of another workspace is 404 like an unknown id.

`POST /api/workspaces` is allowed to any valid token (SPEC §6 lists it) and answers 201 with the
new workspace, but it grants nothing: the calling token still sees only its own workspace, and
tokens for the new one are made by someone with access to the server (`main.py token create`)
or from the dashboard. A taken slug is 409 — slugs are chosen names, not secrets.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.deps import CurrentPrincipal, ServicesDep
from core.schemas import ProjectCreate, ProjectPublic, WorkspaceCreate, WorkspacePublic

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])


@router.get("", response_model=list[WorkspacePublic])
def list_workspaces(principal: CurrentPrincipal, services: ServicesDep) -> list[WorkspacePublic]:
    return [services.workspaces.get(principal.workspace_id)]


@router.post("", response_model=WorkspacePublic, status_code=status.HTTP_201_CREATED)
def create_workspace(data: WorkspaceCreate, principal: CurrentPrincipal, services: ServicesDep) -> WorkspacePublic:
    return services.workspaces.create(data)


@router.get("/{workspace_id}", response_model=WorkspacePublic)
def get_workspace(workspace_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> WorkspacePublic:
    return services.workspaces.get(principal.workspace(workspace_id))


@router.get("/{workspace_id}/projects", response_model=list[ProjectPublic])
def list_projects(workspace_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> list[ProjectPublic]:
    return services.workspaces.list_projects(principal.workspace(workspace_id))


@router.post("/{workspace_id}/projects", response_model=ProjectPublic, status_code=status.HTTP_201_CREATED)
def create_project(
    workspace_id: uuid.UUID, data: ProjectCreate, principal: CurrentPrincipal, services: ServicesDep
) -> ProjectPublic:
    return services.workspaces.create_project(principal.workspace(workspace_id), data)
