"""Workspaces and their projects (SPEC §6).

A token belongs to one workspace, so `GET /api/workspaces` lists that one workspace only, and
every `/api/workspaces/{id}/...` of another workspace is 404 like an unknown id.

`POST /api/workspaces` needs an admin token (`main.py token create --admin`; a workspace token
gets 403) and answers 201 with the new workspace, but it grants nothing: the calling token still
sees only its own workspace, and tokens for the new one are made by someone with access to the
server (`main.py token create`) or from the dashboard. A taken slug is 409.

`PATCH /api/workspaces/{id}` renames the token's own workspace; `code_execution` (whether team
runs execute generated code, in the sandbox) is an operator's switch: admin tokens only.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.common import link, linked
from api.deps import CurrentPrincipal, ServicesDep
from core.errors import Forbidden
from core.schemas import ProjectCreate, ProjectPublic, WorkspaceCreate, WorkspacePublic, WorkspaceUpdate
from core.validation import SafeStr

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])


def workspace_links(workspace_id: str) -> dict[str, dict[str, Any]]:
    """Links from an answer naming a workspace (`workspace_id`: the expression of its id) to its
    routes and to the lists it filters."""
    return {
        "GetWorkspace": link("GET /api/workspaces/{workspace_id}", workspace_id=workspace_id),
        "RenameWorkspace": link("PATCH /api/workspaces/{workspace_id}", workspace_id=workspace_id),
        "Projects": link("GET /api/workspaces/{workspace_id}/projects", workspace_id=workspace_id),
        "CreateProject": link("POST /api/workspaces/{workspace_id}/projects", workspace_id=workspace_id),
        "LlmProfiles": link("GET /api/workspaces/{workspace_id}/llm-profiles", workspace_id=workspace_id),
        "CreateLlmProfile": link("POST /api/workspaces/{workspace_id}/llm-profiles", workspace_id=workspace_id),
        "Agents": link("GET /api/agents", workspace_id=workspace_id),
        "CreateAgent": link("POST /api/agents", request_body={"workspace_id": workspace_id}),
        "Runs": link("GET /api/runs", workspace_id=workspace_id),
        "Events": link("GET /api/events", workspace_id=workspace_id),
        "Export": link("GET /api/workspaces/{workspace_id}/export", workspace_id=workspace_id),
    }


@router.get("", response_model=list[WorkspacePublic], responses=linked(200, **workspace_links("$response.body#/0/id")))
def list_workspaces(principal: CurrentPrincipal, services: ServicesDep) -> list[WorkspacePublic]:
    return [services.workspaces.get(principal.workspace_id)]


@router.post("", response_model=WorkspacePublic, status_code=status.HTTP_201_CREATED)
def create_workspace(data: WorkspaceCreate, principal: CurrentPrincipal, services: ServicesDep) -> WorkspacePublic:
    if not principal.admin:
        raise Forbidden("creating workspaces needs an admin token (`main.py token create --admin`)")
    return services.workspaces.create(data)


class WorkspacePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SafeStr | None = Field(default=None, min_length=1, max_length=200)
    code_execution: bool | None = None


@router.patch("/{workspace_id}", response_model=WorkspacePublic)
def patch_workspace(
    workspace_id: uuid.UUID, data: WorkspacePatch, principal: CurrentPrincipal, services: ServicesDep
) -> WorkspacePublic:
    # An admin may switch any workspace (it is the operator's tool); others only their own.
    target = workspace_id if principal.admin else principal.workspace(workspace_id)
    workspace = services.workspaces.get(target)
    if data.code_execution is not None:
        if not principal.admin:
            raise Forbidden("switching code execution needs an admin token")
        workspace = services.workspaces.set_code_execution(target, data.code_execution)
    if data.name is not None:
        workspace = services.workspaces.update(target, WorkspaceUpdate(name=data.name))
    return workspace


@router.get("/{workspace_id}", response_model=WorkspacePublic)
def get_workspace(workspace_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> WorkspacePublic:
    return services.workspaces.get(principal.workspace(workspace_id))


@router.get("/{workspace_id}/projects", response_model=list[ProjectPublic])
def list_projects(workspace_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> list[ProjectPublic]:
    return services.workspaces.list_projects(principal.workspace(workspace_id))


@router.post(
    "/{workspace_id}/projects",
    response_model=ProjectPublic,
    status_code=status.HTTP_201_CREATED,
    responses=linked(
        201,
        Agents=link("GET /api/agents", "the project's agents", project_id="$response.body#/id"),
        CreateAgent=link(
            "POST /api/agents",
            "an agent in the project",
            request_body={"workspace_id": "$request.path.workspace_id", "project_id": "$response.body#/id"},
        ),
        Analytics=link("GET /api/analytics/summary", "the project's figures", project_id="$response.body#/id"),
    ),
)
def create_project(
    workspace_id: uuid.UUID, data: ProjectCreate, principal: CurrentPrincipal, services: ServicesDep
) -> ProjectPublic:
    return services.workspaces.create_project(principal.workspace(workspace_id), data)
