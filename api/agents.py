"""Agents (SPEC §3, §6): the catalog of definitions, agent instances and their status machine.

Every route acts in the token's workspace: an agent of another workspace is 404 like an unknown
id. A refused status change is 409 with `current`, `target` and `allowed` (api/errors.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from api.common import AUTH_ERRORS, Cursor, Limit, errors, link, linked, next_page
from api.deps import CurrentPrincipal, ServicesDep
from core.pagination import DEFAULT_LIMIT
from core.schemas import (
    AgentCreate,
    AgentPublic,
    AgentUpdate,
    DefinitionPublic,
    Page,
    StatusChangePublic,
    StatusChangeRequest,
)
from core.status import AgentStatus

router = APIRouter(prefix="/api/agents", tags=["agents"], responses=AUTH_ERRORS)


def agent_links(agent_id: str, *, writes: bool = True) -> dict[str, dict[str, Any]]:
    """Links from an answer naming an agent (`agent_id`: the expression of its id) to the agent's
    routes; `writes=False` (an agent picked from a list): only the ones that read."""
    reads = {
        "GetAgent": link("GET /api/agents/{agent_id}", agent_id=agent_id),
        "StatusHistory": link("GET /api/agents/{agent_id}/status/history", agent_id=agent_id),
        "GetContext": link("GET /api/agents/{agent_id}/context", agent_id=agent_id),
        "ContextVersions": link("GET /api/agents/{agent_id}/context/versions", agent_id=agent_id),
        "Messages": link("GET /api/agents/{agent_id}/messages", agent_id=agent_id),
        "LlmCalls": link("GET /api/agents/{agent_id}/llm-calls", agent_id=agent_id),
    }
    if not writes:
        return reads
    return reads | {
        "UpdateAgent": link("PATCH /api/agents/{agent_id}", agent_id=agent_id),
        "DeleteAgent": link("DELETE /api/agents/{agent_id}", agent_id=agent_id),
        "ActivateAgent": link("POST /api/agents/{agent_id}/activate", agent_id=agent_id),
        "ChangeStatus": link("POST /api/agents/{agent_id}/status", agent_id=agent_id),
        "UpdateContext": link("POST /api/agents/{agent_id}/context", agent_id=agent_id),
        "SendMessage": link("POST /api/agents/{agent_id}/messages", agent_id=agent_id),
    }


# Registered before /{agent_id}, which would otherwise take "definitions" for an id.
@router.get(
    "/definitions",
    response_model=list[DefinitionPublic],
    responses=linked(
        200,
        CreateAgent=link(
            "POST /api/agents",
            "an agent of the first definition",
            request_body={"definition": "$response.body#/0/slug"},
        ),
    ),
)
def list_definitions(principal: CurrentPrincipal, services: ServicesDep) -> list[DefinitionPublic]:
    """The catalog: built-in MetaGPT roles, the generic assistant and plugins' definitions."""
    return services.agents.definitions()


@router.get(
    "",
    response_model=Page[AgentPublic],
    responses={
        **errors(404),
        **linked(
            200,
            NextPage=next_page("GET /api/agents", keep=("workspace_id", "status", "project_id", "name")),
            **agent_links("$response.body#/items/0/id", writes=False),
        ),
    },
)
def list_agents(
    principal: CurrentPrincipal,
    services: ServicesDep,
    workspace_id: Annotated[uuid.UUID | None, Query(description="default: the token's workspace")] = None,
    status: AgentStatus | None = None,
    project_id: uuid.UUID | None = None,
    name: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="part of the name, any case")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AgentPublic]:
    """Agents of the workspace, oldest first."""
    return services.agents.list(
        principal.workspace(workspace_id),
        status=status,
        project_id=project_id,
        name=name,
        limit=limit,
        cursor=cursor,
    )


@router.post(
    "",
    response_model=AgentPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**errors(404, 409), **linked(201, **agent_links("$response.body#/id"))},
)
def create_agent(data: AgentCreate, principal: CurrentPrincipal, services: ServicesDep) -> AgentPublic:
    """A new agent (status idle) with context version 1. `definition` is a catalog slug."""
    return services.agents.create(data, actor=principal.actor, scope=principal.workspace())


@router.get("/{agent_id}", response_model=AgentPublic, responses=errors(404))
def get_agent(agent_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> AgentPublic:
    return services.agents.get(agent_id, scope=principal.workspace())


@router.patch("/{agent_id}", response_model=AgentPublic, responses=errors(404, 409))
def update_agent(
    agent_id: uuid.UUID, data: AgentUpdate, principal: CurrentPrincipal, services: ServicesDep
) -> AgentPublic:
    """Rename, replace the config, move to a project. A taken name is 409."""
    return services.agents.update(agent_id, data, actor=principal.actor, scope=principal.workspace())


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=errors(404))
def delete_agent(agent_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """Delete the agent with its thread, context and status history."""
    services.agents.delete(agent_id, actor=principal.actor, scope=principal.workspace())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{agent_id}/activate", response_model=AgentPublic, responses=errors(404, 409))
def activate_agent(agent_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> AgentPublic:
    """Make the agent `active` (it then answers messages), or 409 if its status does not allow it."""
    return services.agents.activate(agent_id, actor=principal.actor, scope=principal.workspace())


@router.post("/{agent_id}/status", response_model=AgentPublic, responses=errors(404, 409))
def change_status(
    agent_id: uuid.UUID, data: StatusChangeRequest, principal: CurrentPrincipal, services: ServicesDep
) -> AgentPublic:
    """Move the agent to `status`; 409 with the allowed targets if the status machine refuses."""
    return services.agents.set_status(
        agent_id,
        data.status,
        reason=data.reason,
        actor=principal.actor,
        scope=principal.workspace(),
        expected_lock_version=data.expected_lock_version,
    )


@router.get(
    "/{agent_id}/status/history",
    response_model=Page[StatusChangePublic],
    responses={**errors(404), **linked(200, NextPage=next_page("GET /api/agents/{agent_id}/status/history"))},
)
def status_history(
    agent_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[StatusChangePublic]:
    """The audit trail of the agent's statuses, newest first."""
    return services.agents.status_history(agent_id, scope=principal.workspace(), limit=limit, cursor=cursor)
