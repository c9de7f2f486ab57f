"""The persisted event log over REST (SPEC §5, §6): catch up after `since`, then poll or go live.

Events come oldest first in `seq` order, without gaps or duplicates for a given filter; pass the
answer's `next_since` back as `since` for the next page. `llm_token` events are never stored, so
they only reach WebSocket subscribers.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.common import AUTH_ERRORS, MAX_INT, errors, link, linked
from api.deps import CurrentPrincipal, ServicesDep
from core.events import EventFilter, EventOut
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/api/events", tags=["events"], responses=AUTH_ERRORS)


class EventPage(BaseModel):
    items: list[EventOut]
    next_since: int = Field(description="pass back as `since` to continue; equals `since` when nothing is new")


@router.get(
    "",
    response_model=EventPage,
    responses={
        **errors(404),
        **linked(
            200,
            NextPage=link(
                "GET /api/events",
                "the events after this page, with the same filters",
                since="$response.body#/next_since",
                limit="$request.query.limit",
                workspace_id="$request.query.workspace_id",
                agent_id="$request.query.agent_id",
                run_id="$request.query.run_id",
            ),
        ),
    },
)
def list_events(
    principal: CurrentPrincipal,
    services: ServicesDep,
    workspace_id: Annotated[uuid.UUID | None, Query(description="default: the token's workspace")] = None,
    since: Annotated[int, Query(ge=0, le=MAX_INT, description="events with a larger seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    agent_id: Annotated[uuid.UUID | None, Query(description="only this agent's events")] = None,
    run_id: Annotated[uuid.UUID | None, Query(description="only this run's events")] = None,
) -> EventPage:
    """Persisted events of the workspace after `since`, oldest first."""
    flt = EventFilter(workspace_id=principal.workspace(workspace_id), agent_id=agent_id, run_id=run_id)
    items = services.bus.read(flt, since, limit)
    next_since = items[-1].seq if items and items[-1].seq is not None else since
    return EventPage(items=items, next_since=next_since)
