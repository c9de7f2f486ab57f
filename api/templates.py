"""Team templates (issue 17): list, save (a definition, a hand-picked set of agents, a run's
team) and instantiate into a workspace in one call.

Templates a token sees are the built-ins and its own workspace's; instantiating creates the agents
through the same service as `POST /api/agents` (names de-duplicated: "Alice (PM) 2").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from api.agents import agent_links
from api.common import AUTH_ERRORS, errors, link, linked
from api.deps import CurrentPrincipal, ServicesDep
from core.schemas import AgentPublic
from core.templates import InstantiateRequest, TemplateCreate, TemplateFromAgents, TemplateFromRun, TemplatePublic

router = APIRouter(prefix="/api/templates", tags=["templates"], responses=AUTH_ERRORS)


def template_links(slug: str, *, writes: bool = True) -> dict[str, dict[str, Any]]:
    """Links from an answer naming a template (`slug`: the expression of its slug) to its routes."""
    found = {
        "GetTemplate": link("GET /api/templates/{slug}", slug=slug),
        "Instantiate": link("POST /api/templates/{slug}/instantiate", slug=slug),
    }
    if writes:
        found["DeleteTemplate"] = link("DELETE /api/templates/{slug}", slug=slug)
    return found


SAVED = linked(201, **template_links("$response.body#/slug"))


@router.get(
    "",
    response_model=list[TemplatePublic],
    responses=linked(200, **template_links("$response.body#/0/slug", writes=False)),
)
def list_templates(principal: CurrentPrincipal, services: ServicesDep) -> list[TemplatePublic]:
    """The built-in templates, then the workspace's own."""
    return services.templates.list(principal.workspace())


@router.post("", response_model=TemplatePublic, status_code=status.HTTP_201_CREATED, responses={**errors(409), **SAVED})
def create_template(data: TemplateCreate, principal: CurrentPrincipal, services: ServicesDep) -> TemplatePublic:
    """Save a template given member by member (definition slug, name, config, context)."""
    return services.templates.create(principal.workspace(), data)


@router.post(
    "/from-agents",
    response_model=TemplatePublic,
    status_code=status.HTTP_201_CREATED,
    responses={**errors(404, 409), **SAVED},
)
def create_from_agents(data: TemplateFromAgents, principal: CurrentPrincipal, services: ServicesDep) -> TemplatePublic:
    """Save a hand-picked set of the workspace's agents (their config and current context)."""
    return services.templates.create_from_agents(principal.workspace(), data)


@router.post(
    "/from-run",
    response_model=TemplatePublic,
    status_code=status.HTTP_201_CREATED,
    responses={**errors(404, 409), **SAVED},
)
def create_from_run(data: TemplateFromRun, principal: CurrentPrincipal, services: ServicesDep) -> TemplatePublic:
    """Save a run's team, with the run's rounds, budget and idea as the template's defaults; a
    run none of whose agents exists any more is 409."""
    return services.templates.create_from_run(principal.workspace(), data)


@router.get("/{slug}", response_model=TemplatePublic, responses=errors(404))
def get_template(slug: str, principal: CurrentPrincipal, services: ServicesDep) -> TemplatePublic:
    return services.templates.get(slug, principal.workspace())


@router.delete("/{slug}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409))
def delete_template(slug: str, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    """Delete one of the workspace's templates (built-ins are 409)."""
    services.templates.delete(principal.workspace(), slug)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{slug}/instantiate",
    response_model=list[AgentPublic],
    status_code=status.HTTP_201_CREATED,
    responses={**errors(404, 422), **linked(201, **agent_links("$response.body#/0/id"))},
)
def instantiate(
    slug: str, data: InstantiateRequest, principal: CurrentPrincipal, services: ServicesDep
) -> list[AgentPublic]:
    """Create the template's agents in the workspace; the created agents, in template order."""
    scope = principal.workspace(data.workspace_id)
    return services.templates.instantiate(slug, scope, data.project_id, actor=principal.actor)
