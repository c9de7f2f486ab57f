"""LLM profiles (SPEC §8, §9): which model a workspace's agents use. API keys are write-only:
stored encrypted, never returned — a profile shows only `has_api_key` and a masked hint."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from api.common import AUTH_ERRORS, errors, link, linked
from api.deps import CurrentPrincipal, ServicesDep
from core.llm_profiles import LlmProfileCreate, LlmProfilePublic, LlmProfileUpdate
from core.runtime.manager import ConnectionTest

router = APIRouter(prefix="/api", tags=["llm profiles"], responses=AUTH_ERRORS)


def profile_links(profile_id: str) -> dict[str, dict[str, Any]]:
    """Links from an answer naming a profile to its routes (`profile_id`: the expression of its id)."""
    return {
        "UpdateProfile": link("PATCH /api/llm-profiles/{profile_id}", profile_id=profile_id),
        "DeleteProfile": link("DELETE /api/llm-profiles/{profile_id}", profile_id=profile_id),
        "TestProfile": link("POST /api/llm-profiles/{profile_id}/test", profile_id=profile_id),
    }


@router.get(
    "/workspaces/{workspace_id}/llm-profiles",
    response_model=list[LlmProfilePublic],
    responses={**errors(404), **linked(200, **profile_links("$response.body#/0/id"))},
)
def list_profiles(
    workspace_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep
) -> list[LlmProfilePublic]:
    """The workspace's profiles by name. Without a default one, runs use the offline demo model."""
    return services.llm_profiles.list(principal.workspace(workspace_id))


@router.post(
    "/workspaces/{workspace_id}/llm-profiles",
    response_model=LlmProfilePublic,
    status_code=status.HTTP_201_CREATED,
    responses={**errors(404, 409), **linked(201, **profile_links("$response.body#/id"))},
)
def create_profile(
    workspace_id: uuid.UUID, data: LlmProfileCreate, principal: CurrentPrincipal, services: ServicesDep
) -> LlmProfilePublic:
    """A new profile; the workspace's first one becomes its default."""
    return services.llm_profiles.create(principal.workspace(workspace_id), data)


@router.patch("/llm-profiles/{profile_id}", response_model=LlmProfilePublic, responses=errors(404, 409))
def update_profile(
    profile_id: uuid.UUID, data: LlmProfileUpdate, principal: CurrentPrincipal, services: ServicesDep
) -> LlmProfilePublic:
    """Change the fields given; `api_key: ""` removes the key, `base_url: ""` the URL."""
    return services.llm_profiles.update(profile_id, data, scope=principal.workspace())


@router.delete(
    "/llm-profiles/{profile_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404),
)
def delete_profile(profile_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> Response:
    services.llm_profiles.delete(profile_id, scope=principal.workspace())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/llm-profiles/{profile_id}/test", response_model=ConnectionTest, responses=errors(404))
async def test_profile(profile_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> ConnectionTest:
    """Ask the profile's endpoint for a one-word answer with its key, and say what happened: a
    failure to connect or authenticate is `ok: false` with the reason, not an HTTP error."""
    # Awaited on the server's loop with a short timeout: no worker thread waits on the endpoint.
    from core.runtime.connection import test_connection

    return await test_connection(services.runtime, profile_id, principal.workspace())
