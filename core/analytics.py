"""Analytics: where time, tokens and money go — aggregated in the database, never in Python.

Every figure is one SQL aggregate (GROUP BY, window function) over an indexed range
(workspace, time), on SQLite and PostgreSQL alike; Python only shapes the small grouped result.
The two big tables are read through covering indexes (migration 007), so a range of a million
messages is an index-only scan, never a table scan and never rows in Python:

- agent_messages:       (workspace_id, created_at, agent_id, prompt_tokens, completion_tokens, cost)
- agent_status_changes: (workspace_id, at, agent_id, to_status)

Rules:
- `since`/`until` bound every query (default: the last 7 days; at most 366 days); buckets are
  hours (UTC) for ranges up to two days and days (UTC) beyond.
- Time in status comes from the audit trail: a status lasts from its change to the agent's next
  change, or to the end of the range (never past now). The status an agent was already in when
  the range starts counts from `since` (found with one index seek per agent).
- An error is a transition into `error` or a run that ended `failed`.
- Messages, tokens and cost belong to the agent that wrote the message. Runs count in the range
  they were created in. The project filter keeps the agents of that project (and their messages
  and statuses) and the runs of that project; the agent filter keeps those agents and the runs
  they were members of. A filter id of another workspace is NotFound, like an unknown one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.operators import custom_op
from sqlmodel import Session, col

from core.analytics_headlines import AnalyticsHeadlines, judge_headlines
from core.analytics_schemas import (
    AgentFigures,
    AgentRef,
    AnalyticsQuery,
    Bucket,
    Dashboard,
    Failure,
    RunFigures,
    SeriesPoint,
    Summary,
    TimeSeries,
)
from core.db import Database
from core.errors import InvalidInput, NotFound
from core.llm_analytics import LlmFigures, llm_figures
from storage.models import AgentInstance, AgentMessage, AgentStatusChange, LlmCall, Project, Run, RunMember
from storage.types import UtcDateTime, utcnow

DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=366)
HOURLY_UP_TO = timedelta(days=2)
MAX_RUNS_LISTED = 500
MAX_AGENTS = 5000
FAILURES_LISTED = 20
TEXT_PREVIEW = 300
EARLIEST, LATEST = 1970, 9000


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def resolve_range(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime, Bucket]:
    """The (since, until, bucket) a query means; InvalidInput for a reversed, too long or absurd range."""
    try:
        end = _aware(until) if until else utcnow()
        start = _aware(since) if since else end - DEFAULT_RANGE
    except OverflowError as exc:
        raise InvalidInput("time out of range") from exc
    if start.year < EARLIEST or end.year > LATEST:
        raise InvalidInput(f"times must lie between the years {EARLIEST} and {LATEST}")
    if start >= end:
        raise InvalidInput("'since' must be before 'until'")
    if end - start > MAX_RANGE:
        raise InvalidInput(f"the range may span at most {MAX_RANGE.days} days")
    return start, end, "hour" if end - start <= HOURLY_UP_TO else "day"


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time (a naive one is UTC); None or "" is None; anything else InvalidInput."""
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"not an ISO 8601 time: {value[:100]!r}") from exc


def _bucket_expr(dialect: str, column: Any, bucket: Bucket) -> ColumnElement[Any]:
    """The UTC hour or day of `column`, cheap to compute per row; `_bucket_label` names it."""
    if dialect == "postgresql":
        return sa.func.date_trunc(bucket, sa.func.timezone("UTC", column))
    # SQLite keeps naive UTC text ('2025-01-31 14:05:09.123456'): the hour is its first 13
    # characters, the day its first 10 (much cheaper than strftime over a million rows).
    return sa.func.substr(column, 1, 13 if bucket == "hour" else 10)


def _bucket_label(value: Any, bucket: Bucket) -> str:
    """A bucket as ISO text: '2025-01-31T14:00:00' (hours) or '2025-01-31' (days), UTC."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%d")
    text = str(value)
    return f"{text[:10]}T{text[11:13]}:00:00" if bucket == "hour" else text[:10]


def _seconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def _at(value: datetime) -> Any:
    """A time as a bound parameter of the UTC column type (naive text on SQLite)."""
    return sa.literal(value, type_=UtcDateTime())


class MessageBucket(NamedTuple):
    """One row of the messages aggregate: one agent's messages in one bucket."""

    bucket: str
    agent_id: uuid.UUID
    messages: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


class AnalyticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- public API ------------------------------------------------------------------------
    def agents(self, workspace_id: uuid.UUID) -> list[AgentRef]:
        """The agents of a workspace by name (the choices of the agent filter)."""
        with self.db.read() as session:
            stmt = (
                sa.select(col(AgentInstance.id), col(AgentInstance.name), col(AgentInstance.project_id))
                .where(col(AgentInstance.workspace_id) == workspace_id)
                .order_by(AgentInstance.name)
                .limit(MAX_AGENTS)
            )
            return [AgentRef(agent_id=i, name=n, project_id=p) for i, n, p in session.execute(stmt)]

    def summary(self, query: AnalyticsQuery) -> Summary:
        """Per agent: messages, tokens, cost, seconds in each status, errors; runs by outcome."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            buckets = self._message_buckets(session, query, since, until, bucket)
            return self._summary(session, query, since, until, bucket, buckets)

    def messages_over_time(self, query: AnalyticsQuery) -> TimeSeries:
        """Messages per bucket per agent (key = agent name)."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            names = {a.agent_id: a.name for a in self._agent_rows(session, query)}
            points = _messages_series(self._message_buckets(session, query, since, until, bucket), names)
        return TimeSeries(since=since, until=until, bucket=bucket, points=points)

    def cost_over_time(self, query: AnalyticsQuery) -> TimeSeries:
        """Cost per bucket (key "cost") and the running total from the start of the range (key
        "cumulative")."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            points = _cost_series(self._message_buckets(session, query, since, until, bucket))
        return TimeSeries(since=since, until=until, bucket=bucket, points=points)

    def errors_over_time(self, query: AnalyticsQuery) -> TimeSeries:
        """Transitions into `error` (key "agent_errors") and failed runs (key "failed_runs")."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            points = self._errors_over_time(session, query, since, until, bucket)
        return TimeSeries(since=since, until=until, bucket=bucket, points=points)

    def runs(self, query: AnalyticsQuery) -> list[RunFigures]:
        """Runs created in the range with duration, outcome, tokens and cost, newest first (≤ 500)."""
        since, until, _ = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            return self._runs(session, query, since, until)

    def failures(self, query: AnalyticsQuery, limit: int = FAILURES_LISTED) -> list[Failure]:
        """What failed and when: the latest transitions into `error` and failed runs, newest first."""
        since, until, _ = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            return self._failures(session, query, since, until, max(1, min(limit, 100)))

    def dashboard(self, query: AnalyticsQuery) -> Dashboard:
        """All of the above for one resolved range, in one read session (the analytics page).

        The messages are aggregated once, per (bucket, agent): the per-agent totals, the
        messages series and the cost series are all sums of that one small grouped result."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            buckets = self._message_buckets(session, query, since, until, bucket)
            summary = self._summary(session, query, since, until, bucket, buckets)
            names = {a.agent_id: a.name for a in summary.agents}

            def series(points: list[SeriesPoint]) -> TimeSeries:
                return TimeSeries(since=since, until=until, bucket=bucket, points=points)

            return Dashboard(
                summary=summary,
                messages=series(_messages_series(buckets, names)),
                cost=series(_cost_series(buckets)),
                errors=series(self._errors_over_time(session, query, since, until, bucket)),
                runs=self._runs(session, query, since, until),
                failures=self._failures(session, query, since, until, FAILURES_LISTED),
                llm=self._llm(session, query, since, until, bucket),
            )

    def headlines(self, query: AnalyticsQuery, now: datetime | None = None) -> AnalyticsHeadlines:
        """Which agent costs most, which is stuck (judged at `now`, default the current time),
        what failed: core/analytics_headlines.py's rules over the summary and latest failure."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            buckets = self._message_buckets(session, query, since, until, bucket)
            summary = self._summary(session, query, since, until, bucket, buckets)
            failures = self._failures(session, query, since, until, 1)
        return judge_headlines(summary, failures, now or utcnow())

    def llm(self, query: AnalyticsQuery) -> LlmFigures:
        """LLM latency p50/p95 per model per bucket, and calls/errors/error rate per LLM profile."""
        since, until, bucket = resolve_range(query.since, query.until)
        with self.db.read() as session:
            self._check_filters(session, query)
            return self._llm(session, query, since, until, bucket)

    def _llm(
        self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime, bucket: Bucket
    ) -> LlmFigures:

        where = [
            LlmCall.workspace_id == query.workspace_id,
            col(LlmCall.created_at) >= since,
            col(LlmCall.created_at) < until,
            *self._agent_scope(col(LlmCall.agent_id), query),
        ]
        dialect = self.db.dialect
        return llm_figures(
            session,
            where,
            lambda c: _bucket_expr(dialect, c, bucket),
            lambda v: _bucket_label(v, bucket),
            since,
            until,
            bucket,
        )

    # -- the aggregates --------------------------------------------------------------------
    def _message_buckets(
        self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime, bucket: Bucket
    ) -> list[MessageBucket]:
        """Messages, tokens and cost per (bucket, agent): one GROUP BY over the covering index.
        Its size is buckets x agents (at most 48 hours or 366 days per agent), whatever the
        number of messages."""
        b = _bucket_expr(self.db.dialect, AgentMessage.created_at, bucket).label("bucket")
        stmt = (
            sa.select(
                b,
                col(AgentMessage.agent_id),
                sa.func.count(),
                sa.func.sum(AgentMessage.prompt_tokens),
                sa.func.sum(AgentMessage.completion_tokens),
                sa.func.sum(AgentMessage.cost),
            )
            .where(*self._message_range(query, since, until))
            .group_by(b, col(AgentMessage.agent_id))
        )
        return [
            MessageBucket(_bucket_label(k, bucket), agent_id, int(n), int(p or 0), int(c or 0), float(cost or 0.0))
            for k, agent_id, n, p, c, cost in session.execute(stmt)
        ]

    def _summary(
        self,
        session: Session,
        query: AnalyticsQuery,
        since: datetime,
        until: datetime,
        bucket: Bucket,
        buckets: list[MessageBucket],
    ) -> Summary:
        figures = {a.agent_id: a for a in self._agent_rows(session, query)}
        for row in buckets:
            figure = figures.get(row.agent_id)
            if figure is not None:
                figure.messages += row.messages
                figure.prompt_tokens += row.prompt_tokens
                figure.completion_tokens += row.completion_tokens
                figure.tokens += row.prompt_tokens + row.completion_tokens
                figure.cost += row.cost
        if figures:
            for agent_id, status, seconds in self._status_seconds(session, query, since, until):
                if agent_id in figures and seconds:
                    figures[agent_id].seconds_in_status[status] = round(float(seconds), 3)
            for agent_id, errors in self._error_counts(session, query, since, until):
                if agent_id in figures:
                    figures[agent_id].errors = int(errors)
        outcomes = {
            status: int(n)
            for status, n in session.execute(
                sa.select(col(Run.status), sa.func.count())
                .where(*self._run_range(query, since, until))
                .group_by(Run.status)
                .order_by(Run.status)
            )
        }
        for figure in figures.values():
            figure.cost = round(figure.cost, 9)
        ordered = sorted(figures.values(), key=lambda f: (-f.cost, -f.messages, f.name))
        agent_errors = sum(f.errors for f in ordered)
        totals = {
            "agents": float(len(ordered)),
            "messages": float(sum(f.messages for f in ordered)),
            "prompt_tokens": float(sum(f.prompt_tokens for f in ordered)),
            "completion_tokens": float(sum(f.completion_tokens for f in ordered)),
            "tokens": float(sum(f.tokens for f in ordered)),
            "cost": round(sum(f.cost for f in ordered), 9),
            "agent_errors": float(agent_errors),
            "failed_runs": float(outcomes.get("failed", 0)),
            "errors": float(agent_errors + outcomes.get("failed", 0)),
            "runs": float(sum(outcomes.values())),
        }
        return Summary(since=since, until=until, bucket=bucket, agents=ordered, runs_by_outcome=outcomes, totals=totals)

    def _errors_over_time(
        self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime, bucket: Bucket
    ) -> list[SeriesPoint]:
        b = _bucket_expr(self.db.dialect, AgentStatusChange.at, bucket).label("bucket")
        agent_errors = (
            sa.select(b, sa.func.count())
            .where(*self._status_range(query, since, until), col(AgentStatusChange.to_status) == "error")
            .group_by(b)
        )
        points = [
            SeriesPoint(bucket=_bucket_label(k, bucket), key="agent_errors", value=n)
            for k, n in session.execute(agent_errors)
        ]
        rb = _bucket_expr(self.db.dialect, Run.created_at, bucket).label("bucket")
        failed = (
            sa.select(rb, sa.func.count())
            .where(*self._run_range(query, since, until), col(Run.status) == "failed")
            .group_by(rb)
        )
        points += [
            SeriesPoint(bucket=_bucket_label(k, bucket), key="failed_runs", value=n) for k, n in session.execute(failed)
        ]
        points.sort(key=lambda p: (p.bucket, p.key))
        return points

    def _runs(self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime) -> list[RunFigures]:
        end = sa.func.coalesce(Run.finished_at, _at(utcnow()))
        seconds = _seconds_between(self.db.dialect, Run.started_at, end).label("seconds")
        stmt = (
            sa.select(
                col(Run.id),
                sa.func.substr(Run.idea, 1, TEXT_PREVIEW),
                col(Run.status),
                sa.func.substr(Run.stop_reason, 1, TEXT_PREVIEW),
                sa.func.substr(Run.error, 1, TEXT_PREVIEW),
                col(Run.cost),
                col(Run.prompt_tokens),
                col(Run.completion_tokens),
                col(Run.tokens),
                seconds,
                col(Run.created_at),
                col(Run.started_at),
                col(Run.finished_at),
            )
            .where(*self._run_range(query, since, until))
            .order_by(col(Run.created_at).desc(), col(Run.id).desc())
            .limit(MAX_RUNS_LISTED)
        )
        return [
            RunFigures(
                run_id=r[0],
                idea=r[1],
                status=r[2],
                stop_reason=r[3],
                error=r[4],
                cost=r[5],
                prompt_tokens=r[6],
                completion_tokens=r[7],
                tokens=r[8],
                seconds=None if r[9] is None else round(max(0.0, float(r[9])), 3),
                created_at=r[10],
                started_at=r[11],
                finished_at=r[12],
            )
            for r in session.execute(stmt)
        ]

    def _failures(
        self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime, limit: int
    ) -> list[Failure]:
        agent_errors = (
            sa.select(
                col(AgentStatusChange.agent_id),
                col(AgentInstance.name),
                col(AgentStatusChange.at),
                sa.func.substr(AgentStatusChange.reason, 1, TEXT_PREVIEW),
            )
            .join(AgentInstance, col(AgentInstance.id) == col(AgentStatusChange.agent_id))
            .where(*self._status_range(query, since, until), col(AgentStatusChange.to_status) == "error")
            .order_by(col(AgentStatusChange.at).desc())
            .limit(limit)
        )
        failures = [
            Failure(kind="agent_error", at=at, agent_id=agent_id, subject=name, reason=reason or "")
            for agent_id, name, at, reason in session.execute(agent_errors)
        ]
        failed_runs = (
            sa.select(
                col(Run.id),
                sa.func.substr(Run.idea, 1, TEXT_PREVIEW),
                sa.func.coalesce(Run.finished_at, Run.updated_at),
                sa.func.substr(Run.error, 1, TEXT_PREVIEW),
                sa.func.substr(Run.stop_reason, 1, TEXT_PREVIEW),
            )
            .where(*self._run_range(query, since, until), col(Run.status) == "failed")
            .order_by(col(Run.created_at).desc())
            .limit(limit)
        )
        for run_id, idea, at, error, stop_reason in session.execute(failed_runs):
            failures.append(
                Failure(
                    kind="run_failed",
                    at=_aware(at) if isinstance(at, datetime) else _parse_db_time(at),
                    run_id=run_id,
                    subject=idea,
                    reason=error or stop_reason or "",
                )
            )
        failures.sort(key=lambda f: f.at, reverse=True)
        return failures[:limit]

    # -- building blocks -------------------------------------------------------------------
    def _check_filters(self, session: Session, query: AnalyticsQuery) -> None:
        """A project or agent of another workspace is NotFound, exactly like an unknown one."""
        if query.project_id is not None:
            found = session.execute(
                sa.select(col(Project.id)).where(
                    col(Project.id) == query.project_id, col(Project.workspace_id) == query.workspace_id
                )
            ).first()
            if found is None:
                raise NotFound("project", query.project_id)
        if query.agent_ids:
            wanted = set(query.agent_ids)
            known = set(
                session.execute(
                    sa.select(col(AgentInstance.id)).where(
                        col(AgentInstance.workspace_id) == query.workspace_id, col(AgentInstance.id).in_(wanted)
                    )
                ).scalars()
            )
            missing = sorted(wanted - known, key=str)
            if missing:
                raise NotFound("agent", missing[0])

    def _unindexed(self, column: Any) -> Any:
        """On SQLite, `+column`: keeps its planner (which has no statistics unless someone ran
        ANALYZE) off the per-agent indexes, so the range is always read from the covering index."""
        if self.db.dialect != "sqlite":
            return column
        return sa.sql.elements.UnaryExpression(column, operator=custom_op("+"), type_=column.type)

    def _agent_scope(self, column: Any, query: AnalyticsQuery) -> list[Any]:
        """Clauses that keep rows of the filtered agents (none without a filter)."""
        clauses: list[Any] = []
        if query.agent_ids:
            clauses.append(self._unindexed(column).in_(query.agent_ids))
        if query.project_id is not None:
            project_agents = sa.select(col(AgentInstance.id)).where(
                col(AgentInstance.workspace_id) == query.workspace_id, col(AgentInstance.project_id) == query.project_id
            )
            clauses.append(self._unindexed(column).in_(project_agents))
        return clauses

    def _agent_rows(self, session: Session, query: AnalyticsQuery) -> list[AgentFigures]:
        latest = AgentStatusChange.__table__.alias("latest")  # type: ignore[attr-defined]
        status_since = (
            sa.select(sa.func.max(latest.c.at)).where(latest.c.agent_id == AgentInstance.id).scalar_subquery()
        )
        stmt = sa.select(
            col(AgentInstance.id),
            col(AgentInstance.name),
            col(AgentInstance.status),
            col(AgentInstance.status_reason),
            status_since,
        ).where(col(AgentInstance.workspace_id) == query.workspace_id)
        if query.agent_ids:
            stmt = stmt.where(col(AgentInstance.id).in_(query.agent_ids))
        if query.project_id is not None:
            stmt = stmt.where(col(AgentInstance.project_id) == query.project_id)
        rows = session.execute(stmt.order_by(AgentInstance.name).limit(MAX_AGENTS))
        return [
            AgentFigures(
                agent_id=agent_id,
                name=name,
                status=status,
                status_reason=(reason or "")[:TEXT_PREVIEW],
                status_since=None if at is None else _parse_db_time(at),
            )
            for agent_id, name, status, reason, at in rows
        ]

    def _message_range(self, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        return [
            AgentMessage.workspace_id == query.workspace_id,
            col(AgentMessage.created_at) >= since,
            col(AgentMessage.created_at) < until,
            *self._agent_scope(col(AgentMessage.agent_id), query),
        ]

    def _status_range(self, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        return [
            AgentStatusChange.workspace_id == query.workspace_id,
            col(AgentStatusChange.at) >= since,
            col(AgentStatusChange.at) < until,
            *self._agent_scope(col(AgentStatusChange.agent_id), query),
        ]

    def _run_range(self, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        clauses: list[Any] = [
            Run.workspace_id == query.workspace_id,
            col(Run.created_at) >= since,
            col(Run.created_at) < until,
        ]
        if query.project_id is not None:
            clauses.append(Run.project_id == query.project_id)
        if query.agent_ids:
            members = sa.select(col(RunMember.run_id)).where(col(RunMember.agent_id).in_(query.agent_ids))
            clauses.append(col(Run.id).in_(members))
        return clauses

    def _error_counts(self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        stmt = (
            sa.select(col(AgentStatusChange.agent_id), sa.func.count())
            .where(*self._status_range(query, since, until), col(AgentStatusChange.to_status) == "error")
            .group_by(col(AgentStatusChange.agent_id))
        )
        return list(session.execute(stmt))

    def _status_seconds(self, session: Session, query: AnalyticsQuery, since: datetime, until: datetime) -> list[Any]:
        """(agent_id, status, seconds) for the range, computed with LEAD() over the trail."""
        end = min(until, utcnow())  # the current status lasts until now, not into the future
        if end <= since:
            return []
        changes = AgentStatusChange.__table__  # type: ignore[attr-defined]
        agents = AgentInstance.__table__  # type: ignore[attr-defined]
        # The changes inside the range ...
        inside = sa.select(changes.c.agent_id, changes.c.to_status, changes.c.at, sa.literal(1).label("ord")).where(
            *self._status_range(query, since, until)
        )
        # ... plus, per agent, the status it was in when the range started (one index seek each),
        # counted from `since`; `ord` puts it before a change made at exactly `since`.
        prior = changes.alias("prior")
        latest_before = (
            sa.select(prior.c.id)
            .where(prior.c.agent_id == agents.c.id, prior.c.at < since)
            .order_by(prior.c.at.desc(), prior.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        starting = (
            sa.select(changes.c.agent_id, changes.c.to_status, _at(since).label("at"), sa.literal(0).label("ord"))
            .select_from(agents)
            .join(changes, changes.c.id == latest_before)
            .where(agents.c.workspace_id == query.workspace_id, *self._agent_scope(agents.c.id, query))
        )
        trail = sa.union_all(inside, starting).subquery("trail")
        # Times as numbers once per row (julian days on SQLite, epoch seconds on PostgreSQL).
        moment: ColumnElement[Any]
        end_moment: ColumnElement[Any]
        if self.db.dialect == "postgresql":
            moment, end_moment, scale = sa.func.extract("epoch", trail.c.at), sa.func.extract("epoch", _at(end)), 1.0
        else:
            moment, end_moment, scale = sa.func.julianday(trail.c.at), sa.func.julianday(_at(end)), 86400.0
        next_moment = sa.func.lead(moment).over(partition_by=trail.c.agent_id, order_by=(trail.c.at, trail.c.ord))
        spans = sa.select(
            trail.c.agent_id,
            trail.c.to_status,
            moment.label("start"),
            sa.func.coalesce(next_moment, end_moment).label("stop"),
        ).subquery("spans")
        # A change stamped after `end` (clock skew) would give a negative span: count it as 0.
        seconds = (spans.c.stop - spans.c.start) * scale
        clipped = sa.case((spans.c.stop > spans.c.start, seconds), else_=0)
        stmt = sa.select(spans.c.agent_id, spans.c.to_status, sa.func.sum(clipped)).group_by(
            spans.c.agent_id, spans.c.to_status
        )
        return list(session.execute(stmt))


def _parse_db_time(value: Any) -> datetime:
    """A time from an expression the column type did not process (e.g. MAX(at) on SQLite)."""
    if isinstance(value, datetime):
        return _aware(value)
    return _aware(datetime.fromisoformat(str(value)))


def _messages_series(buckets: list[MessageBucket], names: dict[uuid.UUID, str]) -> list[SeriesPoint]:
    points = [
        SeriesPoint(bucket=r.bucket, key=names.get(r.agent_id, str(r.agent_id)), value=r.messages, agent_id=r.agent_id)
        for r in buckets
    ]
    points.sort(key=lambda p: (p.bucket, p.key))
    return points


def _cost_series(buckets: list[MessageBucket]) -> list[SeriesPoint]:
    """Cost per bucket (summed over the agents' bucket rows) and its running total."""
    per_bucket: dict[str, float] = {}
    for r in buckets:
        per_bucket[r.bucket] = per_bucket.get(r.bucket, 0.0) + r.cost
    points: list[SeriesPoint] = []
    total = 0.0
    for k in sorted(per_bucket):
        total += per_bucket[k]
        points.append(SeriesPoint(bucket=k, key="cost", value=round(per_bucket[k], 9)))
        points.append(SeriesPoint(bucket=k, key="cumulative", value=round(total, 9)))
    return points
