"""An agent's context (SPEC §4): read, update (replace or merge patch), versions, rollback, diff.

Each accepted write is a new version; nothing is rewritten. A stale `expected_version` is 409 with
the `current` version, and changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import Field

from api.common import AUTH_ERRORS, Cursor, Limit, errors, link, linked, next_page
from api.deps import CurrentPrincipal, ServicesDep
from core.context import (
    ContextDiff,
    ContextPublic,
    ContextRollback,
    ContextUpdate,
    ContextVersionPublic,
    ContextVersionSummary,
)
from core.pagination import DEFAULT_LIMIT
from core.schemas import Page
from core.validation import MAX_INT32

router = APIRouter(prefix="/api/agents/{agent_id}/context", tags=["context"], responses=AUTH_ERRORS)


class RollbackRequest(ContextRollback):
    # Bounded here until core's ContextRollback is: a larger number overflows SQLite's driver (500).
    version: int = Field(ge=1, le=MAX_INT32)


Version = Annotated[int, Path(ge=1, le=MAX_INT32, description="a version number of this agent's context")]


@router.get("", response_model=ContextPublic, responses=errors(404))
def get_context(agent_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> ContextPublic:
    """The current version and its data."""
    return services.contexts.get(agent_id, scope=principal.workspace())


@router.post(
    "",
    response_model=ContextPublic,
    responses={
        **errors(404, 409),
        **linked(
            200,
            GetVersion=link(
                "GET /api/agents/{agent_id}/context/versions/{version}",
                "the version just written",
                agent_id="$request.path.agent_id",
                version="$response.body#/version",
            ),
        ),
    },
)
def update_context(
    agent_id: uuid.UUID, change: ContextUpdate, principal: CurrentPrincipal, services: ServicesDep
) -> ContextPublic:
    """Write version n+1: `data` replaces the context, `patch` merges into it (RFC 7396)."""
    return services.contexts.update(agent_id, change, actor=principal.actor, scope=principal.workspace())


@router.get(
    "/versions",
    response_model=Page[ContextVersionSummary],
    responses={
        **errors(404),
        **linked(
            200,
            NextPage=next_page("GET /api/agents/{agent_id}/context/versions"),
            GetVersion=link(
                "GET /api/agents/{agent_id}/context/versions/{version}",
                "the newest version of the page",
                agent_id="$request.path.agent_id",
                version="$response.body#/items/0/version",
            ),
        ),
    },
)
def list_versions(
    agent_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ContextVersionSummary]:
    """Every version (author, reason, time), newest first."""
    return services.contexts.versions(agent_id, scope=principal.workspace(), limit=limit, cursor=cursor)


@router.get("/versions/{version}", response_model=ContextVersionPublic, responses=errors(404))
def get_version(
    agent_id: uuid.UUID, version: Version, principal: CurrentPrincipal, services: ServicesDep
) -> ContextVersionPublic:
    return services.contexts.version(agent_id, version, scope=principal.workspace())


@router.post("/rollback", response_model=ContextPublic, responses=errors(404, 409))
def rollback_context(
    agent_id: uuid.UUID, request: RollbackRequest, principal: CurrentPrincipal, services: ServicesDep
) -> ContextPublic:
    """Write version n+1 with the data of version `version`."""
    return services.contexts.rollback(agent_id, request, actor=principal.actor, scope=principal.workspace())


@router.get("/diff", response_model=ContextDiff, responses=errors(404))
def diff_versions(
    agent_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_INT32)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_INT32)],
) -> ContextDiff:
    """The RFC 6902 operations that turn version `from` into version `to`, with both snapshots."""
    return services.contexts.diff(agent_id, from_version, to_version, scope=principal.workspace())
