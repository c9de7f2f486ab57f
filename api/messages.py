"""Agent message threads (SPEC §6): read a thread both ways, send a message, search a workspace.

Posting stores the message and answers 201 at once; an `active` agent then answers in the
background (its reply arrives as an `agent_message` event, and in the thread).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.common import AUTH_ERRORS, Cursor, Limit, errors, json_response, linked, next_page
from api.deps import CurrentPrincipal, ServicesDep
from core.messages import MAX_QUERY_CHARS, MessageCreate, MessagePublic
from core.pagination import DEFAULT_LIMIT
from core.schemas import Page

router = APIRouter(prefix="/api", tags=["messages"], responses=AUTH_ERRORS)

ThreadCursor = Annotated[str | None, Query(max_length=1000)]


@router.get(
    "/agents/{agent_id}/messages",
    response_model=Page[MessagePublic],
    responses={
        **errors(404),
        **linked(
            200,
            OlderMessages=next_page(
                "GET /api/agents/{agent_id}/messages",
                "before",
                description="older messages, after a page without `after`",
            ),
            NewerMessages=next_page(
                "GET /api/agents/{agent_id}/messages",
                "after",
                description="newer messages, after a page read with `after`",
            ),
        ),
    },
)
def list_messages(
    agent_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    before: Annotated[ThreadCursor, Query(description="newest first, older than this cursor")] = None,
    after: Annotated[ThreadCursor, Query(description="oldest first, newer than this cursor")] = None,
) -> Response:
    """Newest first; pass `next_cursor` back as `before` for older messages. With `after`, oldest
    first from that point; pass `next_cursor` back as `after`. `next_cursor` is null at the end."""
    return json_response(
        services.messages.list_json(agent_id, scope=principal.workspace(), limit=limit, before=before, after=after)
    )


@router.post(
    "/agents/{agent_id}/messages",
    response_model=MessagePublic,
    status_code=status.HTTP_201_CREATED,
    responses=errors(404),
)
def send_message(
    agent_id: uuid.UUID, data: MessageCreate, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Store a message from the caller; an active agent answers it in the background."""
    message: MessagePublic = services.runtime.send_message(
        agent_id, data.content, metadata=data.metadata, actor=principal.actor, scope=principal.workspace()
    )
    # Encoded once here: the service built it from checked fields (see MessageService._check).
    return json_response(message.model_dump_json().encode(), status.HTTP_201_CREATED)


@router.get(
    "/messages/search",
    response_model=Page[MessagePublic],
    responses={
        **errors(404),
        **linked(200, NextPage=next_page("GET /api/messages/search", keep=("q", "workspace_id"))),
    },
)
def search_messages(
    principal: CurrentPrincipal,
    services: ServicesDep,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description="words that must all appear")],
    workspace_id: Annotated[uuid.UUID | None, Query(description="default: the token's workspace")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[MessagePublic]:
    """Messages of the workspace that contain every word of `q`, newest first."""
    workspace = principal.workspace(workspace_id)
    return services.messages.search(workspace, q, limit=limit, cursor=cursor, scope=workspace)
