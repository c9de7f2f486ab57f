"""LLM analytics (issue 14): latency p50/p95 per model over time, error rate per LLM profile.

Computed by the database like the rest of core/analytics.py, on SQLite and PostgreSQL alike:
percentiles are nearest-rank, from window functions (ROW_NUMBER and COUNT over each
(bucket, model)), so no latency ever reaches Python; the range is read through the covering
index ix_llm_calls_analytics (workspace_id, created_at, model, profile, outcome, latency_ms).
Calls still running are left out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session, col

from storage.models import LlmCall

MAX_ROWS = 5000


class LatencyPoint(BaseModel):
    bucket: str
    model: str
    calls: int
    p50_ms: float
    p95_ms: float


class ProfileErrors(BaseModel):
    profile: str
    calls: int
    errors: int
    error_rate: float


class LlmFigures(BaseModel):
    since: datetime
    until: datetime
    bucket: str
    latency: list[LatencyPoint]
    profiles: list[ProfileErrors]


def llm_figures(
    session: Session,
    where: list[Any],
    bucket_expr: Any,
    bucket_label: Any,
    since: datetime,
    until: datetime,
    bucket: str,
) -> LlmFigures:
    """`where` bounds the calls (workspace, range, agent filter); `bucket_expr(column)` is the time
    bucket of a row and `bucket_label(value)` its ISO name (core/analytics.py's helpers)."""
    finished = [*where, col(LlmCall.outcome) != "running", col(LlmCall.latency_ms).is_not(None)]
    b = bucket_expr(col(LlmCall.created_at)).label("b")
    ranked = (
        sa.select(
            b,
            col(LlmCall.model).label("model"),
            col(LlmCall.latency_ms).label("ms"),
            sa.func.row_number()
            .over(partition_by=(b, col(LlmCall.model)), order_by=col(LlmCall.latency_ms))
            .label("rn"),
            sa.func.count().over(partition_by=(b, col(LlmCall.model))).label("n"),
        )
        .where(*finished)
        .subquery()
    )
    percentile = (
        sa.select(
            ranked.c.b,
            ranked.c.model,
            ranked.c.n,
            sa.func.min(sa.case((ranked.c.rn >= ranked.c.n * 0.5, ranked.c.ms))),
            sa.func.min(sa.case((ranked.c.rn >= ranked.c.n * 0.95, ranked.c.ms))),
        )
        .group_by(ranked.c.b, ranked.c.model, ranked.c.n)
        .order_by(ranked.c.b, ranked.c.model)
        .limit(MAX_ROWS)
    )
    latency = [
        LatencyPoint(bucket=bucket_label(value), model=model, calls=int(n), p50_ms=float(p50), p95_ms=float(p95))
        for value, model, n, p50, p95 in session.execute(percentile)
    ]
    errors = sa.func.sum(sa.case((col(LlmCall.outcome) == "error", 1), else_=0))
    by_profile = (
        sa.select(col(LlmCall.profile), sa.func.count(), errors)
        .where(*where, col(LlmCall.outcome) != "running")
        .group_by(col(LlmCall.profile))
        .order_by(col(LlmCall.profile))
        .limit(MAX_ROWS)
    )
    profiles = [
        ProfileErrors(
            profile=profile, calls=int(n), errors=int(e or 0), error_rate=(int(e or 0) / int(n)) if n else 0.0
        )
        for profile, n, e in session.execute(by_profile)
    ]
    return LlmFigures(since=since, until=until, bucket=bucket, latency=latency, profiles=profiles)
