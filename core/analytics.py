"""Analytics: where time, tokens and money go — aggregated in the database, never in Python.

Every figure is one SQL aggregate over an indexed range (workspace, time), on SQLite and
PostgreSQL alike; Python only shapes the (small) grouped result. Time-in-status comes from the
audit trail: each status lasts from its change to the agent's next change (or the end of the
range); the status an agent was in when the range starts is found with one index seek per agent.

Rules:
- `since`/`until` bound every query (default: the last 7 days); buckets are hours for ranges up
  to two days and days beyond.
- An error is a transition into `error` or a run that ended `failed`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from core.db import Database
from core.errors import InvalidInput
from storage.models import AgentInstance, AgentMessage, AgentStatusChange, Run, RunMember
from storage.types import utcnow

Bucket = Literal["hour", "day"]
DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=366)
MAX_RUNS_LISTED = 500


class AnalyticsQuery(BaseModel):
    workspace_id: uuid.UUID
    since: datetime | None = None
    until: datetime | None = None
    agent_ids: list[uuid.UUID] | None = None
    project_id: uuid.UUID | None = None


class AgentFigures(BaseModel):
    agent_id: uuid.UUID
    name: str
    status: str
    messages: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds_in_status: dict[str, float] = Field(default_factory=dict)
    errors: int = 0


class SeriesPoint(BaseModel):
    bucket: str
    key: str
    value: float


class RunFigures(BaseModel):
    run_id: uuid.UUID
    idea: str
    status: str
    stop_reason: str
    cost: float
    tokens: int
    seconds: float | None
    started_at: datetime | None


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


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def resolve_range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime, Bucket]:
    end = _aware(until) if until else utcnow()
    start = _aware(since) if since else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidInput("'since' must be before 'until'")
    if end - start > MAX_RANGE:
        raise InvalidInput(f"the range may span at most {MAX_RANGE.days} days")
    return start, end, "hour" if end - start <= timedelta(days=2) else "day"


def _bucket_expr(dialect: str, column: Any, bucket: Bucket) -> ColumnElement[str]:
    if dialect == "postgresql":
        fmt = 'YYYY-MM-DD"T"HH24:00:00' if bucket == "hour" else "YYYY-MM-DD"
        return sa.func.to_char(sa.func.date_trunc(bucket, sa.func.timezone("UTC", column)), fmt)
    return sa.func.strftime("%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%d", column)


def _seconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[float]:
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


class AnalyticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- summary ---------------------------------------------------------------------------
    def summary(self, query: AnalyticsQuery) -> Summary:
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            agents = self._agents(session, query)
            figures = {a.id: AgentFigures(agent_id=a.id, name=a.name, status=a.status) for a in agents}
            ids = list(figures)
            if ids:
                for agent_id, count, prompt, completion, cost in self._message_totals(
                    session, query, ids, since, until
                ):
                    figure = figures[agent_id]
                    figure.messages, figure.prompt_tokens, figure.completion_tokens = (
                        count,
                        prompt or 0,
                        completion or 0,
                    )
                    figure.cost = float(cost or 0.0)
                for agent_id, status, seconds in self._status_seconds(session, query, ids, since, until):
                    figures[agent_id].seconds_in_status[status] = round(float(seconds), 3)
                for agent_id, errors in self._error_counts(session, query, ids, since, until):
                    figures[agent_id].errors = errors
            outcomes = dict(
                session.execute(
                    sa.select(Run.status, sa.func.count())
                    .where(*self._run_range(query, since, until))
                    .group_by(Run.status)
                ).all()
            )
        ordered = sorted(figures.values(), key=lambda f: (-f.cost, -f.messages, f.name))
        totals = {
            "messages": float(sum(f.messages for f in ordered)),
            "tokens": float(sum(f.prompt_tokens + f.completion_tokens for f in ordered)),
            "cost": float(sum(f.cost for f in ordered)),
            "errors": float(sum(f.errors for f in ordered) + outcomes.get("failed", 0)),
            "runs": float(sum(outcomes.values())),
        }
        return Summary(since=since, until=until, bucket=bucket, agents=ordered, runs_by_outcome=outcomes, totals=totals)

    # -- time series -----------------------------------------------------------------------
    def messages_over_time(self, query: AnalyticsQuery) -> TimeSeries:
        """Messages per bucket per agent (key = agent name)."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            b = _bucket_expr(self.db.dialect, AgentMessage.created_at, bucket).label("bucket")
            stmt = (
                sa.select(b, AgentInstance.name, sa.func.count())
                .select_from(AgentMessage)
                .join(AgentInstance, col(AgentInstance.id) == col(AgentMessage.agent_id))
                .where(*self._message_range(query, since, until))
                .group_by(b, AgentInstance.name)
                .order_by(b)
            )
            points = [SeriesPoint(bucket=k, key=name, value=n) for k, name, n in session.execute(stmt)]
        return TimeSeries(since=since, until=until, bucket=bucket, points=points)

    def cost_over_time(self, query: AnalyticsQuery) -> TimeSeries:
        """Cumulative cost per bucket (key "cost"), running sum computed by the database."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            b = _bucket_expr(self.db.dialect, AgentMessage.created_at, bucket).label("bucket")
            per_bucket = (
                sa.select(b, sa.func.sum(AgentMessage.cost).label("cost"))
                .where(*self._message_range(query, since, until))
                .group_by(b)
                .subquery()
            )
            cumulative = sa.func.sum(per_bucket.c.cost).over(order_by=per_bucket.c.bucket)
            stmt = sa.select(per_bucket.c.bucket, cumulative).order_by(per_bucket.c.bucket)
            points = [SeriesPoint(bucket=k, key="cost", value=float(v or 0)) for k, v in session.execute(stmt)]
        return TimeSeries(since=since, until=until, bucket=bucket, points=points)

    def errors_over_time(self, query: AnalyticsQuery) -> TimeSeries:
        """Transitions into `error` (key "agent_errors") and failed runs (key "failed_runs")."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            b = _bucket_expr(self.db.dialect, AgentStatusChange.at, bucket).label("bucket")
            agent_errors = (
                sa.select(b, sa.func.count())
                .where(
                    AgentStatusChange.workspace_id == query.workspace_id,
                    col(AgentStatusChange.at) >= since,
                    col(AgentStatusChange.at) < until,
                    AgentStatusChange.to_status == "error",
                    *self._agent_filter(col(AgentStatusChange.agent_id), query),
                )
                .group_by(b)
                .order_by(b)
            )
            points = [SeriesPoint(bucket=k, key="agent_errors", value=n) for k, n in session.execute(agent_errors)]
            rb = _bucket_expr(self.db.dialect, Run.created_at, bucket).label("bucket")
            failed = (
                sa.select(rb, sa.func.count())
                .where(*self._run_range(query, since, until), Run.status == "failed")
                .group_by(rb)
                .order_by(rb)
            )
            points += [SeriesPoint(bucket=k, key="failed_runs", value=n) for k, n in session.execute(failed)]
        points.sort(key=lambda p: (p.bucket, p.key))
        return TimeSeries(since=since, until=until, bucket=bucket, points=points)

    def runs(self, query: AnalyticsQuery) -> list[RunFigures]:
        """Runs created in the range with their duration and outcome, newest first (≤ 500)."""
        since, until, _ = resolve_range(query.since, query.until)
        with self.db.read() as session:
            seconds = _seconds_between(self.db.dialect, Run.started_at, Run.finished_at).label("seconds")
            stmt = (
                sa.select(Run.id, Run.idea, Run.status, Run.stop_reason, Run.cost, Run.tokens, seconds, Run.started_at)
                .where(*self._run_range(query, since, until))
                .order_by(col(Run.created_at).desc())
                .limit(MAX_RUNS_LISTED)
            )
            return [
                RunFigures(
                    run_id=r[0],
                    idea=r[1][:200],
                    status=r[2],
                    stop_reason=r[3],
                    cost=r[4],
                    tokens=r[5],
                    seconds=None if r[6] is None else round(float(r[6]), 3),
                    started_at=r[7],
                )
                for r in session.execute(stmt)
            ]

    # -- building blocks -------------------------------------------------------------------
    def _agent_filter(self, column: Any, query: AnalyticsQuery) -> list[Any]:
        return [column.in_(query.agent_ids)] if query.agent_ids else []

    def _agents(self, session: Session, query: AnalyticsQuery) -> list[Any]:
        stmt = sa.select(AgentInstance.id, AgentInstance.name, AgentInstance.status).where(
            AgentInstance.workspace_id == query.workspace_id, *self._agent_filter(col(AgentInstance.id), query)
        )
        if query.project_id is not None:
            stmt = stmt.where(AgentInstance.project_id == query.project_id)
        return list(session.execute(stmt.order_by(AgentInstance.name).limit(5000)))

    def _message_range(self, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        clauses: list[Any] = [
            AgentMessage.workspace_id == query.workspace_id,
            col(AgentMessage.created_at) >= since,
            col(AgentMessage.created_at) < until,
            *self._agent_filter(col(AgentMessage.agent_id), query),
        ]
        if query.project_id is not None:
            project_agents = sa.select(AgentInstance.id).where(AgentInstance.project_id == query.project_id)
            clauses.append(col(AgentMessage.agent_id).in_(project_agents))
        return clauses

    def _run_range(self, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        clauses: list[Any] = [
            Run.workspace_id == query.workspace_id,
            col(Run.created_at) >= since,
            col(Run.created_at) < until,
        ]
        if query.project_id is not None:
            clauses.append(Run.project_id == query.project_id)
        if query.agent_ids:
            members = sa.select(RunMember.run_id).where(col(RunMember.agent_id).in_(query.agent_ids))
            clauses.append(col(Run.id).in_(members))
        return clauses

    def _message_totals(
        self, session: Session, query: AnalyticsQuery, ids: list[uuid.UUID], since: datetime, until: datetime
    ) -> list[Any]:
        stmt = (
            sa.select(
                AgentMessage.agent_id,
                sa.func.count(),
                sa.func.sum(AgentMessage.prompt_tokens),
                sa.func.sum(AgentMessage.completion_tokens),
                sa.func.sum(AgentMessage.cost),
            )
            .where(*self._message_range(query, since, until), col(AgentMessage.agent_id).in_(ids))
            .group_by(AgentMessage.agent_id)
        )
        return list(session.execute(stmt))

    def _error_counts(
        self, session: Session, query: AnalyticsQuery, ids: list[uuid.UUID], since: datetime, until: datetime
    ) -> list[Any]:
        stmt = (
            sa.select(AgentStatusChange.agent_id, sa.func.count())
            .where(
                AgentStatusChange.workspace_id == query.workspace_id,
                col(AgentStatusChange.at) >= since,
                col(AgentStatusChange.at) < until,
                AgentStatusChange.to_status == "error",
                col(AgentStatusChange.agent_id).in_(ids),
            )
            .group_by(AgentStatusChange.agent_id)
        )
        return list(session.execute(stmt))

    def _status_seconds(
        self, session: Session, query: AnalyticsQuery, ids: list[uuid.UUID], since: datetime, until: datetime
    ) -> list[Any]:
        """(agent_id, status, seconds) for the range, computed with LEAD() over the trail."""
        changes = AgentStatusChange.__table__  # type: ignore[attr-defined]
        # Changes inside the range ...
        inside = sa.select(changes.c.agent_id, changes.c.to_status, changes.c.at).where(
            changes.c.workspace_id == query.workspace_id,
            changes.c.at >= since,
            changes.c.at < until,
            changes.c.agent_id.in_(ids),
        )
        # ... plus, per agent, the status it was in when the range started (one index seek each).
        prior = changes.alias("prior")
        latest_before = (
            sa.select(prior.c.id)
            .where(prior.c.agent_id == AgentInstance.id, prior.c.at < since)
            .order_by(prior.c.at.desc(), prior.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        starting = (
            sa.select(changes.c.agent_id, changes.c.to_status, sa.literal(since, type_=changes.c.at.type).label("at"))
            .select_from(AgentInstance.__table__)  # type: ignore[attr-defined]
            .join(changes, changes.c.id == latest_before)
            .where(AgentInstance.id.in_(ids))  # type: ignore[attr-defined]
        )
        trail = sa.union_all(inside, starting).subquery("trail")
        next_at = sa.func.lead(trail.c.at).over(partition_by=trail.c.agent_id, order_by=trail.c.at)
        spans = sa.select(
            trail.c.agent_id,
            trail.c.to_status,
            trail.c.at.label("start"),
            sa.func.coalesce(next_at, sa.literal(until, type_=changes.c.at.type)).label("stop"),
        ).subquery("spans")
        seconds = sa.func.sum(_seconds_between(self.db.dialect, spans.c.start, spans.c.stop))
        stmt = sa.select(spans.c.agent_id, spans.c.to_status, seconds).group_by(spans.c.agent_id, spans.c.to_status)
        return list(session.execute(stmt))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError as exc:
        raise InvalidInput(f"not an ISO 8601 time: {value!r}") from exc
