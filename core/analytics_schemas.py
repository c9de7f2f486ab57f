"""The analytics models (core/analytics.py computes them): the filters of a query, per-agent
figures, series, runs, failures and the page's whole `Dashboard`; and the headlines judged from
them (core/analytics_headlines.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.llm_analytics import LlmFigures

Bucket = Literal["hour", "day"]
MAX_AGENT_FILTER = 100


class AnalyticsQuery(BaseModel):
    workspace_id: uuid.UUID
    since: datetime | None = None
    until: datetime | None = None
    agent_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_AGENT_FILTER)
    project_id: uuid.UUID | None = None


class AgentRef(BaseModel):
    agent_id: uuid.UUID
    name: str
    project_id: uuid.UUID | None


class AgentFigures(BaseModel):
    agent_id: uuid.UUID
    name: str
    status: str
    status_reason: str = ""
    # When the agent entered its current status (its latest status change), whatever the range.
    status_since: datetime | None = None
    messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost: float = 0.0
    seconds_in_status: dict[str, float] = Field(default_factory=dict)
    errors: int = 0


class SeriesPoint(BaseModel):
    bucket: str
    key: str
    value: float
    agent_id: uuid.UUID | None = None


class RunFigures(BaseModel):
    run_id: uuid.UUID
    idea: str
    status: str
    stop_reason: str
    error: str
    cost: float
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    # finished_at - started_at; for a run still going, the time it has run so far.
    seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Failure(BaseModel):
    kind: Literal["agent_error", "run_failed"]
    at: datetime
    agent_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    subject: str
    reason: str


class Summary(BaseModel):
    since: datetime
    until: datetime
    bucket: Bucket
    agents: list[AgentFigures]
    runs_by_outcome: dict[str, int]
    totals: dict[str, float]


class TimeSeries(BaseModel):
    since: datetime
    until: datetime
    bucket: Bucket
    points: list[SeriesPoint]


class Dashboard(BaseModel):
    """Everything the analytics page shows, for one range, read in one session."""

    summary: Summary
    messages: TimeSeries
    cost: TimeSeries
    errors: TimeSeries
    runs: list[RunFigures]
    failures: list[Failure]
    llm: LlmFigures | None = None
