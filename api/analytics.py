"""Analytics (SPEC §6, §11): the aggregates behind the analytics page, for programs.

Every route takes the same filters: `workspace_id` (default: the token's; another one is 404),
`since`/`until` (ISO 8601; naive times are UTC; default the last 7 days, at most 366 days; a bad
or reversed time is 422), `agent_id` (repeatable) and `project_id` (ids of another workspace are
404). Buckets are UTC hours for ranges up to two days, UTC days beyond. Everything is computed
by the database (see core/analytics.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.common import AUTH_ERRORS, errors
from api.deps import CurrentPrincipal, ServicesDep
from core.analytics import FAILURES_LISTED
from core.analytics_headlines import AnalyticsHeadlines
from core.analytics_schemas import MAX_AGENT_FILTER, AnalyticsQuery, Failure, RunFigures, Summary, TimeSeries
from core.llm_analytics import LlmFigures

router = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=AUTH_ERRORS)


def analytics_query(
    principal: CurrentPrincipal,
    workspace_id: uuid.UUID | None = None,
    since: Annotated[datetime | None, Query(description="start of the range (ISO 8601, inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="end of the range (ISO 8601, exclusive; default now)")] = None,
    agent_id: Annotated[
        list[uuid.UUID] | None,
        Query(max_length=MAX_AGENT_FILTER, description="only these agents (repeat the parameter for several)"),
    ] = None,
    project_id: Annotated[uuid.UUID | None, Query(description="only this project's agents and runs")] = None,
) -> AnalyticsQuery:
    return AnalyticsQuery(
        workspace_id=principal.workspace(workspace_id),
        since=since,
        until=until,
        agent_ids=agent_id or None,
        project_id=project_id,
    )


Filters = Annotated[AnalyticsQuery, Depends(analytics_query)]


@router.get("/summary", response_model=Summary, responses=errors(404))
def summary(query: Filters, services: ServicesDep) -> Summary:
    """Per agent: messages, prompt/completion tokens, cost, seconds in each status (from the
    status audit trail), transitions into `error`; runs by outcome; totals. Agents are ordered
    by cost, most expensive first."""
    return services.analytics.summary(query)


@router.get("/messages-over-time", response_model=TimeSeries, responses=errors(404))
def messages_over_time(query: Filters, services: ServicesDep) -> TimeSeries:
    """Messages per bucket per agent (`key` is the agent's name, `agent_id` its id)."""
    return services.analytics.messages_over_time(query)


@router.get("/cost-over-time", response_model=TimeSeries, responses=errors(404))
def cost_over_time(query: Filters, services: ServicesDep) -> TimeSeries:
    """Cost per bucket (`key` "cost") and the running total since the start of the range
    (`key` "cumulative")."""
    return services.analytics.cost_over_time(query)


@router.get("/errors-over-time", response_model=TimeSeries, responses=errors(404))
def errors_over_time(query: Filters, services: ServicesDep) -> TimeSeries:
    """Transitions into `error` (`key` "agent_errors") and failed runs (`key` "failed_runs") per
    bucket."""
    return services.analytics.errors_over_time(query)


@router.get("/runs", response_model=list[RunFigures], responses=errors(404))
def runs(query: Filters, services: ServicesDep) -> list[RunFigures]:
    """Runs created in the range (newest first, at most 500): outcome, duration in seconds (so far,
    for a run still going), tokens and cost."""
    return services.analytics.runs(query)


@router.get("/failures", response_model=list[Failure], responses=errors(404))
def failures(
    query: Filters,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100, description=f"default {FAILURES_LISTED}")] = FAILURES_LISTED,
) -> list[Failure]:
    """What failed and when: the latest transitions into `error` (with the reason) and failed runs
    (with the error), newest first."""
    return services.analytics.failures(query, limit=limit)


@router.get("/headlines", response_model=AnalyticsHeadlines, responses=errors(404))
def headlines(query: Filters, services: ServicesDep) -> AnalyticsHeadlines:
    """The analytics page's headlines, judged once in core: the top spender (cost and share of
    the range's total cost; by tokens when no cost was recorded), the agents stuck now (in
    `error`, or `busy` for longer than 10 minutes; in error first, longest first), else the
    agent with the most time in busy/error within the range, and the failures (count, latest)."""
    return services.analytics.headlines(query)


@router.get("/llm", response_model=LlmFigures, responses=errors(404))
def llm(query: Filters, services: ServicesDep) -> LlmFigures:
    """LLM calls: latency p50/p95 (nearest rank, milliseconds) per model per bucket, and per LLM
    profile the finished calls, the failed ones and the error rate."""
    return services.analytics.llm(query)
