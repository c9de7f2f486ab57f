"""Recorded LLM calls (issue 14): an agent's and a run's calls in keyset pages, newest first, and
one whole call (the messages as sent and the response). Workspace-scoped like everything else:
another workspace's agent, run or call is 404."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.common import AUTH_ERRORS, Cursor, Limit, errors, link, linked, next_page
from api.deps import CurrentPrincipal, ServicesDep
from core.llm_calls import LlmCallPublic, LlmCallSummary
from core.pagination import DEFAULT_LIMIT
from core.schemas import Page

router = APIRouter(prefix="/api", tags=["llm calls"], responses=AUTH_ERRORS)

GET_CALL = link("GET /api/llm-calls/{call_id}", "the page's newest call, whole", call_id="$response.body#/items/0/id")


@router.get(
    "/agents/{agent_id}/llm-calls",
    response_model=Page[LlmCallSummary],
    responses={
        **errors(404),
        **linked(200, NextPage=next_page("GET /api/agents/{agent_id}/llm-calls"), GetCall=GET_CALL),
    },
)
def agent_llm_calls(
    agent_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[LlmCallSummary]:
    """The agent's LLM calls (chat answers and team runs), newest first; no bodies."""
    return services.llm_calls.list_agent(agent_id, scope=principal.workspace(), limit=limit, cursor=cursor)


@router.get(
    "/runs/{run_id}/llm-calls",
    response_model=Page[LlmCallSummary],
    responses={
        **errors(404),
        **linked(200, NextPage=next_page("GET /api/runs/{run_id}/llm-calls"), GetCall=GET_CALL),
    },
)
def run_llm_calls(
    run_id: uuid.UUID,
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[LlmCallSummary]:
    """The run's LLM calls with their round and action, newest first; no bodies."""
    return services.llm_calls.list_run(run_id, scope=principal.workspace(), limit=limit, cursor=cursor)


@router.get("/llm-calls/{call_id}", response_model=LlmCallPublic, responses=errors(404))
def get_llm_call(call_id: uuid.UUID, principal: CurrentPrincipal, services: ServicesDep) -> LlmCallPublic:
    """The whole call: the request messages as sent, the response, tokens, cost, latency, outcome."""
    return services.llm_calls.get(call_id, scope=principal.workspace())
