"""The analytics headlines (SPEC §11): which agent costs most, which is stuck, what failed — the
judgements behind the analytics page's headline cards and `GET /api/analytics/headlines`, made
once here from a range's `Summary` and its failures; the page and the API only present them.

Rules:
- The top spender is the agent with the highest cost in the range (the summary's first agent),
  with its share of the range's total cost. With tokens but no cost recorded (e.g. a free model),
  it is the agent with the most tokens, `by="tokens"`. With no tokens, there is none.
- An agent is stuck when it is in `error` now, or `busy` now for longer than `STUCK_BUSY` (since
  its latest status change). Agents in error come first, then the busy ones; the longest-stuck
  first within each.
- When nobody is stuck, `longest_in_busy_or_error` is the agent with the most time in `busy` plus
  `error` within the range (`stuck_score`), if any agent spent time there.
- Failures count transitions into `error` and failed runs in the range; `latest` is the newest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from core.analytics_schemas import AgentFigures, Failure, Summary

STUCK_BUSY = timedelta(minutes=10)  # busy for longer than this looks stuck


class TopSpender(BaseModel):
    agent_id: uuid.UUID
    name: str
    by: Literal["cost", "tokens"]  # "tokens": tokens were used but no cost was recorded
    cost: float
    share: float  # of the range's total cost, 0..1 (0 when the total is 0)
    total_cost: float
    tokens: int


class StuckAgent(BaseModel):
    agent_id: uuid.UUID
    name: str
    status: Literal["error", "busy"]
    since: datetime | None  # when it entered that status (None: no status change recorded)
    seconds: float | None  # how long it has been in it, at `now`
    reason: str


class TimeInBusyOrError(BaseModel):
    agent_id: uuid.UUID
    name: str
    seconds: float  # in `busy` plus `error`, within the range


class FailureCount(BaseModel):
    count: int  # transitions into `error` plus failed runs in the range
    latest: Failure | None


class AnalyticsHeadlines(BaseModel):
    at: datetime  # the `now` that "stuck" was judged at
    top_spender: TopSpender | None
    stuck: list[StuckAgent]
    longest_in_busy_or_error: TimeInBusyOrError | None  # only when nobody is stuck
    failures: FailureCount


def stuck_score(agent: AgentFigures) -> float:
    """Seconds the agent spent in `busy` or `error` within the range."""
    return agent.seconds_in_status.get("error", 0) + agent.seconds_in_status.get("busy", 0)


def judge_headlines(summary: Summary, failures: Sequence[Failure], now: datetime) -> AnalyticsHeadlines:
    """The headlines of a range; `failures` newest first (`AnalyticsService.failures`)."""
    stuck = stuck_agents(summary.agents, now)
    worst = None if stuck else max(summary.agents, key=stuck_score, default=None)
    return AnalyticsHeadlines(
        at=now,
        top_spender=top_spender(summary),
        stuck=stuck,
        longest_in_busy_or_error=(
            TimeInBusyOrError(agent_id=worst.agent_id, name=worst.name, seconds=stuck_score(worst))
            if worst is not None and stuck_score(worst) > 0
            else None
        ),
        failures=FailureCount(count=int(summary.totals["errors"]), latest=failures[0] if failures else None),
    )


def top_spender(summary: Summary) -> TopSpender | None:
    agents, total_cost = summary.agents, summary.totals["cost"]
    by: Literal["cost", "tokens"] = "cost"
    if agents and agents[0].cost > 0:  # agents are ordered by cost, most expensive first
        spender = agents[0]
    elif summary.totals["tokens"] > 0:
        spender, by = max(agents, key=lambda a: a.tokens), "tokens"
    else:
        return None
    return TopSpender(
        agent_id=spender.agent_id,
        name=spender.name,
        by=by,
        cost=spender.cost,
        share=spender.cost / total_cost if total_cost else 0,
        total_cost=total_cost,
        tokens=spender.tokens,
    )


def stuck_agents(agents: Sequence[AgentFigures], now: datetime) -> list[StuckAgent]:
    def since(agent: AgentFigures) -> datetime:
        return agent.status_since or now

    in_error = sorted((a for a in agents if a.status == "error"), key=since)
    busy_long = sorted(
        (a for a in agents if a.status == "busy" and a.status_since and now - a.status_since > STUCK_BUSY),
        key=since,
    )
    return [
        StuckAgent(
            agent_id=a.agent_id,
            name=a.name,
            status="error" if a.status == "error" else "busy",
            since=a.status_since,
            seconds=(now - a.status_since).total_seconds() if a.status_since else None,
            reason=a.status_reason,
        )
        for a in [*in_error, *busy_long]
    ]
