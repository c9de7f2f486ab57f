"""Analytics (core/analytics.py, /api/analytics/...): every aggregate against figures computed by
hand from a written history, on SQLite and (with TEST_DATABASE_URL) PostgreSQL; the plans that
prove each query reads an index; and the SQL that proves the page never loads rows into Python.

The hand-made history is written with the storage models directly, so every timestamp is exact:

    T0 = 2025-03-10 00:00 UTC; the main range is [T0, T0 + 24 h) (hour buckets).

    alice (project P)  idle T0-2h, error T0-1h30, active T0-1h, busy T0+2h, error T0+5h,
                       active T0+6h, offline T0+20h
    bob                idle T0+3h, active T0+4h, busy T0+10h, error T0+10h30 (still in error)
    carol              idle T0-3d, active T0-2d, busy T0+30h (after the range)
    dave (project Q)   idle T0-1d, active exactly at T0, offline T0+12h
    eve (workspace B)  everything of B must stay out of A's figures

The index checks use a generated history of 50,000 messages and 5,000 status changes
(bench.bench_analytics.generate_history, INSERT ... SELECT in the database): large enough for both
planners to prefer the indexes, quick enough for the suite. The million-message history of the
issue (1,000,000 messages, 100,000 status changes) is bench/bench_analytics.py's job: it prints the
same plans and the timings, and fails the same way if a big table is read without an index.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.testclient import TestClient

from api.analytics import router as analytics_router
from api.errors import install_error_handlers
from bench.bench_analytics import (
    analyze,
    captured_statements,
    explain,
    full_index_scans,
    generate_history,
    make_agents,
    unindexed_reads,
)
from core.analytics import AnalyticsService, parse_time, resolve_range
from core.analytics_headlines import STUCK_BUSY, judge_headlines, stuck_score
from core.analytics_schemas import AgentFigures, AnalyticsQuery, Dashboard, Summary
from core.errors import InvalidInput, NotFound
from core.schemas import WorkspaceCreate
from core.services import Services
from storage.models import (
    AgentDefinition,
    AgentInstance,
    AgentMessage,
    AgentStatusChange,
    Project,
    Run,
    RunMember,
    Workspace,
)
from storage.types import utcnow

T0 = datetime(2025, 3, 10, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)
TOL = 0.01  # seconds; SQLite's julianday() is exact to ~0.1 ms at these dates


@dataclass
class History:
    a: uuid.UUID  # the workspace under test
    b: uuid.UUID  # another workspace
    project_p: uuid.UUID
    project_q: uuid.UUID
    project_b: uuid.UUID
    agents: dict[str, uuid.UUID] = field(default_factory=dict)
    runs: dict[str, uuid.UUID] = field(default_factory=dict)

    def query(self, since: datetime = T0, until: datetime = T0 + DAY, **filters: Any) -> AnalyticsQuery:
        return AnalyticsQuery(workspace_id=self.a, since=since, until=until, **filters)


def _definition(session: Any) -> uuid.UUID:
    return session.execute(sa.select(AgentDefinition.id).where(AgentDefinition.slug == "assistant")).one()[0]


def write_history(services: Services, t0: datetime = T0) -> History:
    """The history of the module docstring, around `t0` (default T0)."""
    with services.db.write() as s:
        a = Workspace(slug=f"a-{uuid.uuid4().hex[:8]}", name="A")
        b = Workspace(slug=f"b-{uuid.uuid4().hex[:8]}", name="B")
        s.add_all([a, b])
        s.flush()
        p = Project(workspace_id=a.id, slug="p", name="P")
        q = Project(workspace_id=a.id, slug="q", name="Q")
        pb = Project(workspace_id=b.id, slug="p", name="P of B")
        s.add_all([p, q, pb])
        s.flush()
        h = History(a=a.id, b=b.id, project_p=p.id, project_q=q.id, project_b=pb.id)
        definition = _definition(s)

        def agent(name: str, workspace: uuid.UUID, status: str, reason: str = "", project: uuid.UUID | None = None):  # type: ignore[no-untyped-def]
            row = AgentInstance(
                workspace_id=workspace,
                definition_id=definition,
                name=name,
                status=status,
                status_reason=reason,
                project_id=project,
            )
            s.add(row)
            s.flush()
            h.agents[name] = row.id
            return row

        alice = agent("alice", a.id, "offline", project=p.id)
        bob = agent("bob", a.id, "error", "rate limited")
        carol = agent("carol", a.id, "busy")
        dave = agent("dave", a.id, "offline", project=q.id)
        eve = agent("eve", b.id, "error")

        def trail(row: AgentInstance, *changes: tuple[timedelta, str, str]) -> None:
            previous = None
            for offset, status, reason in changes:
                s.add(
                    AgentStatusChange(
                        workspace_id=row.workspace_id,
                        agent_id=row.id,
                        from_status=previous,
                        to_status=status,
                        reason=reason,
                        at=t0 + offset,
                    )
                )
                previous = status

        trail(
            alice,
            (-2 * H, "idle", "created"),
            (-1.5 * H, "error", "boot failure"),
            (-1 * H, "active", ""),
            (2 * H, "busy", ""),
            (5 * H, "error", "LLM timeout"),
            (6 * H, "active", ""),
            (20 * H, "offline", ""),
        )
        trail(
            bob,
            (3 * H, "idle", "created"),
            (4 * H, "active", ""),
            (10 * H, "busy", ""),
            (10.5 * H, "error", "rate limited"),
        )
        trail(carol, (-3 * DAY, "idle", "created"), (-2 * DAY, "active", ""), (30 * H, "busy", ""))
        trail(dave, (-DAY, "idle", "created"), (timedelta(0), "active", ""), (12 * H, "offline", ""))
        trail(eve, (-DAY, "idle", "created"), (2 * H, "error", "B's trouble"))

        def messages(row: AgentInstance, *items: tuple[timedelta, int, int, float]) -> None:
            for seq, (offset, prompt, completion, cost) in enumerate(items, start=1):
                s.add(
                    AgentMessage(
                        workspace_id=row.workspace_id,
                        agent_id=row.id,
                        seq=seq,
                        sender=row.name,
                        role="assistant",
                        content=f"message {seq} of {row.name}",
                        prompt_tokens=prompt,
                        completion_tokens=completion,
                        cost=cost,
                        created_at=t0 + offset,
                    )
                )

        messages(
            alice,
            (-1 * H, 1000, 1000, 1.0),  # before the range
            (1 * H, 100, 50, 0.01),
            (1.5 * H, 200, 100, 0.02),
            (7 * H, 0, 0, 0.0),
            (24 * H, 5, 5, 0.5),  # exactly at `until`: excluded
        )
        messages(
            bob,
            (4 * H + timedelta(minutes=10), 300, 300, 0.05),
            (4 * H + timedelta(minutes=20), 50, 25, 0.005),
            (9 * H, 10, 10, 0.001),
        )
        messages(carol, (23 * H + timedelta(minutes=59), 1, 2, 0.5))
        messages(eve, (2 * H, 999, 999, 9.0))

        def run(
            name: str, row_ws: uuid.UUID, members: list[AgentInstance], created: timedelta, status: str, **kw: Any
        ) -> None:
            r = Run(workspace_id=row_ws, idea=f"idea {name}", status=status, created_at=t0 + created, **kw)
            s.add(r)
            s.flush()
            h.runs[name] = r.id
            for m in members:
                s.add(RunMember(run_id=r.id, agent_id=m.id, agent_name=m.name, role_kind="assistant"))

        run(
            "r1", a.id, [alice], H, "completed", project_id=p.id, started_at=t0 + H,
            finished_at=t0 + H + timedelta(seconds=90), cost=0.03, prompt_tokens=300, completion_tokens=150, tokens=450,
        )  # fmt: skip
        run(
            "r2", a.id, [bob], 10 * H, "failed", started_at=t0 + 10 * H + timedelta(seconds=5),
            finished_at=t0 + 10 * H + timedelta(seconds=65), error="LLM error: rate limited", stop_reason="error",
            cost=0.001, prompt_tokens=10, completion_tokens=10, tokens=20,
        )  # fmt: skip
        run("r3", a.id, [alice, bob], 22 * H, "running", started_at=t0 + 22 * H)
        run("r4", a.id, [carol], -2 * H, "failed", started_at=t0 - 2 * H, finished_at=t0 - H, error="old failure")
        run(
            "r5", a.id, [dave], 12 * H, "cancelled", project_id=q.id, started_at=t0 + 12 * H,
            finished_at=t0 + 12 * H + timedelta(seconds=30), stop_reason="cancelled",
        )  # fmt: skip
        run("rb", b.id, [eve], 3 * H, "failed", started_at=t0 + 3 * H, finished_at=t0 + 4 * H, error="B failed")
    return h


@pytest.fixture
def history(services: Services) -> History:
    return write_history(services)


@pytest.fixture
def analytics(services: Services) -> AnalyticsService:
    return services.analytics


def by_name(dashboard_or_summary: Any) -> dict[str, Any]:
    summary = getattr(dashboard_or_summary, "summary", dashboard_or_summary)
    return {a.name: a for a in summary.agents}


def approx_seconds(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert set(actual) == set(expected), (actual, expected)
    for status, seconds in expected.items():
        assert actual[status] == pytest.approx(seconds, abs=TOL), (status, actual, expected)


# -- hand-computed figures ---------------------------------------------------------------------
def test_summary_gives_each_agents_messages_tokens_cost_and_errors(
    analytics: AnalyticsService, history: History
) -> None:
    summary = analytics.summary(history.query())
    assert [a.name for a in summary.agents] == ["carol", "bob", "alice", "dave"]  # most expensive first
    agents = by_name(summary)
    expected = {
        "alice": (3, 300, 150, 0.03, 1),
        "bob": (3, 360, 335, 0.056, 1),
        "carol": (1, 1, 2, 0.5, 0),
        "dave": (0, 0, 0, 0.0, 0),
    }
    for name, (messages, prompt, completion, cost, errors) in expected.items():
        a = agents[name]
        assert (a.messages, a.prompt_tokens, a.completion_tokens, a.tokens, a.errors) == (
            messages,
            prompt,
            completion,
            prompt + completion,
            errors,
        ), name
        assert a.cost == pytest.approx(cost), name
    assert summary.bucket == "hour"
    assert summary.runs_by_outcome == {"cancelled": 1, "completed": 1, "failed": 1, "running": 1}
    assert summary.totals["messages"] == 7
    assert summary.totals["tokens"] == 450 + 695 + 3
    assert summary.totals["cost"] == pytest.approx(0.586)
    assert summary.totals["agent_errors"] == 2
    assert summary.totals["failed_runs"] == 1
    assert summary.totals["errors"] == 3
    assert summary.totals["runs"] == 4


def test_time_in_status_follows_the_audit_trail_within_the_range(analytics: AnalyticsService, history: History) -> None:
    agents = by_name(analytics.summary(history.query()))
    # alice was already active when the range began (her change at T0-1h): that counts from T0.
    approx_seconds(
        agents["alice"].seconds_in_status, {"active": 16 * 3600, "busy": 3 * 3600, "error": 3600, "offline": 4 * 3600}
    )
    # bob only exists from T0+3h; his last status lasts to the end of the range.
    approx_seconds(
        agents["bob"].seconds_in_status, {"idle": 3600, "active": 6 * 3600, "busy": 1800, "error": 13.5 * 3600}
    )
    # carol changed nothing inside the range; her change after it does not count.
    approx_seconds(agents["carol"].seconds_in_status, {"active": 24 * 3600})
    # dave changed exactly at `since`: the status he had before lasted 0 s, so it is not listed.
    approx_seconds(agents["dave"].seconds_in_status, {"active": 12 * 3600, "offline": 12 * 3600})
    for agent in agents.values():  # never more time than the agent existed in the range
        assert sum(agent.seconds_in_status.values()) <= 24 * 3600 + TOL


def test_a_longer_range_uses_day_buckets_and_counts_the_earlier_history(
    analytics: AnalyticsService, history: History
) -> None:
    query = history.query(since=T0 - 3 * DAY, until=T0 + 2 * DAY)
    dashboard = analytics.dashboard(query)
    assert dashboard.summary.bucket == "day"
    agents = by_name(dashboard)
    approx_seconds(agents["carol"].seconds_in_status, {"idle": 86400, "active": 78 * 3600, "busy": 18 * 3600})
    approx_seconds(
        agents["alice"].seconds_in_status,
        {"idle": 1800, "error": 1800 + 3600, "active": 17 * 3600, "busy": 3 * 3600, "offline": 28 * 3600},
    )
    assert agents["alice"].errors == 2
    assert agents["alice"].messages == 5
    assert {(p.bucket, p.key): p.value for p in dashboard.messages.points} == {
        ("2025-03-09", "alice"): 1,
        ("2025-03-10", "alice"): 3,
        ("2025-03-10", "bob"): 3,
        ("2025-03-10", "carol"): 1,
        ("2025-03-11", "alice"): 1,
    }
    assert dashboard.summary.runs_by_outcome["failed"] == 2
    assert [(p.bucket, p.key, p.value) for p in dashboard.errors.points] == [
        ("2025-03-09", "agent_errors", 1),
        ("2025-03-09", "failed_runs", 1),
        ("2025-03-10", "agent_errors", 2),
        ("2025-03-10", "failed_runs", 1),
    ]


def test_messages_over_time_are_counted_per_hour_and_agent(analytics: AnalyticsService, history: History) -> None:
    series = analytics.messages_over_time(history.query())
    assert [(p.bucket, p.key, p.value) for p in series.points] == [
        ("2025-03-10T01:00:00", "alice", 2),
        ("2025-03-10T04:00:00", "bob", 2),
        ("2025-03-10T07:00:00", "alice", 1),
        ("2025-03-10T09:00:00", "bob", 1),
        ("2025-03-10T23:00:00", "carol", 1),
    ]
    assert {p.agent_id for p in series.points} == {history.agents[n] for n in ("alice", "bob", "carol")}


def test_cost_over_time_gives_each_buckets_cost_and_the_running_total(
    analytics: AnalyticsService, history: History
) -> None:
    series = analytics.cost_over_time(history.query())
    cost = {p.bucket[11:13]: p.value for p in series.points if p.key == "cost"}
    cumulative = [(p.bucket[11:13], p.value) for p in series.points if p.key == "cumulative"]
    assert cost == pytest.approx({"01": 0.03, "04": 0.055, "07": 0.0, "09": 0.001, "23": 0.5})
    assert [b for b, _ in cumulative] == ["01", "04", "07", "09", "23"]
    assert [v for _, v in cumulative] == pytest.approx([0.03, 0.085, 0.085, 0.086, 0.586])


def test_errors_over_time_count_transitions_into_error_and_failed_runs(
    analytics: AnalyticsService, history: History
) -> None:
    series = analytics.errors_over_time(history.query())
    assert [(p.bucket, p.key, p.value) for p in series.points] == [
        ("2025-03-10T05:00:00", "agent_errors", 1),
        ("2025-03-10T10:00:00", "agent_errors", 1),
        ("2025-03-10T10:00:00", "failed_runs", 1),
    ]


def test_runs_give_duration_outcome_tokens_and_cost(analytics: AnalyticsService, history: History) -> None:
    runs = {r.run_id: r for r in analytics.runs(history.query())}
    assert set(runs) == {history.runs[n] for n in ("r1", "r2", "r3", "r5")}
    r1, r2, r3, r5 = (runs[history.runs[n]] for n in ("r1", "r2", "r3", "r5"))
    assert (r1.status, r1.seconds, r1.tokens, r1.prompt_tokens, r1.completion_tokens) == (
        "completed",
        90,
        450,
        300,
        150,
    )
    assert r1.cost == pytest.approx(0.03)
    assert (r2.status, r2.seconds, r2.error) == ("failed", 60, "LLM error: rate limited")
    assert (r5.status, r5.seconds) == ("cancelled", 30)
    # Still running: the time so far.
    assert r3.status == "running"
    assert r3.seconds == pytest.approx((utcnow() - (T0 + 22 * H)).total_seconds(), abs=60)
    assert [r.run_id for r in analytics.runs(history.query())][:2] == [history.runs["r3"], history.runs["r5"]]


def test_failures_say_what_failed_and_when_newest_first(analytics: AnalyticsService, history: History) -> None:
    failures = analytics.failures(history.query())
    assert [(f.kind, f.subject, f.at, f.reason) for f in failures] == [
        ("agent_error", "bob", T0 + 10.5 * H, "rate limited"),
        ("run_failed", "idea r2", T0 + 10 * H + timedelta(seconds=65), "LLM error: rate limited"),
        ("agent_error", "alice", T0 + 5 * H, "LLM timeout"),
    ]
    assert failures[0].agent_id == history.agents["bob"]
    assert failures[1].run_id == history.runs["r2"]
    assert len(analytics.failures(history.query(), limit=1)) == 1


def test_agents_report_their_current_status_and_since_when(analytics: AnalyticsService, history: History) -> None:
    agents = by_name(analytics.summary(history.query()))
    assert (agents["bob"].status, agents["bob"].status_reason) == ("error", "rate limited")
    assert agents["bob"].status_since == T0 + 10.5 * H
    assert agents["carol"].status_since == T0 + 30 * H  # the latest change, whatever the range


def test_the_dashboard_equals_the_separate_aggregates(analytics: AnalyticsService, history: History) -> None:
    query = history.query()
    dashboard = analytics.dashboard(query)
    assert isinstance(dashboard, Dashboard)
    assert dashboard.summary == analytics.summary(query)
    assert dashboard.messages == analytics.messages_over_time(query)
    assert dashboard.cost == analytics.cost_over_time(query)
    assert dashboard.errors == analytics.errors_over_time(query)
    assert dashboard.failures == analytics.failures(query)
    assert [r.run_id for r in dashboard.runs] == [r.run_id for r in analytics.runs(query)]


# -- filters and scoping -----------------------------------------------------------------------
def test_the_agent_filter_keeps_those_agents_and_their_runs(analytics: AnalyticsService, history: History) -> None:
    query = history.query(agent_ids=[history.agents["alice"]])
    dashboard = analytics.dashboard(query)
    assert [a.name for a in dashboard.summary.agents] == ["alice"]
    assert {p.key for p in dashboard.messages.points} == {"alice"}
    assert dashboard.summary.totals["cost"] == pytest.approx(0.03)
    assert {r.run_id for r in dashboard.runs} == {history.runs["r1"], history.runs["r3"]}
    assert [(p.bucket, p.key) for p in dashboard.errors.points] == [("2025-03-10T05:00:00", "agent_errors")]
    assert [f.subject for f in dashboard.failures] == ["alice"]

    both = analytics.summary(history.query(agent_ids=[history.agents["alice"], history.agents["bob"]]))
    assert {a.name for a in both.agents} == {"alice", "bob"}
    assert both.runs_by_outcome == {"completed": 1, "failed": 1, "running": 1}


def test_the_project_filter_keeps_its_agents_and_runs(analytics: AnalyticsService, history: History) -> None:
    p = analytics.dashboard(history.query(project_id=history.project_p))
    assert [a.name for a in p.summary.agents] == ["alice"]
    assert [r.run_id for r in p.runs] == [history.runs["r1"]]
    assert p.summary.totals["messages"] == 3

    q = analytics.dashboard(history.query(project_id=history.project_q))
    assert [a.name for a in q.summary.agents] == ["dave"]
    approx_seconds(q.summary.agents[0].seconds_in_status, {"active": 12 * 3600, "offline": 12 * 3600})
    assert [r.run_id for r in q.runs] == [history.runs["r5"]]
    assert q.messages.points == [] and q.cost.points == [] and q.errors.points == []


def test_another_workspaces_data_never_counts(analytics: AnalyticsService, history: History) -> None:
    dashboard = analytics.dashboard(history.query())
    assert "eve" not in by_name(dashboard)
    assert history.runs["rb"] not in {r.run_id for r in dashboard.runs}
    assert all("B" not in f.reason for f in dashboard.failures)
    b = analytics.summary(AnalyticsQuery(workspace_id=history.b, since=T0, until=T0 + DAY))
    assert [a.name for a in b.agents] == ["eve"]
    assert b.totals["cost"] == pytest.approx(9.0)


@pytest.mark.parametrize("kind", ["agent of B", "project of B", "unknown agent", "unknown project"])
def test_filter_ids_of_another_workspace_are_not_found(
    analytics: AnalyticsService, history: History, kind: str
) -> None:
    filters: dict[str, Any] = {
        "agent of B": {"agent_ids": [history.agents["alice"], history.agents["eve"]]},
        "project of B": {"project_id": history.project_b},
        "unknown agent": {"agent_ids": [uuid.uuid4()]},
        "unknown project": {"project_id": uuid.uuid4()},
    }[kind]
    with pytest.raises(NotFound):
        analytics.dashboard(history.query(**filters))


def test_ranges_are_validated() -> None:
    with pytest.raises(InvalidInput):
        resolve_range(T0, T0)
    with pytest.raises(InvalidInput):
        resolve_range(T0 + H, T0)
    with pytest.raises(InvalidInput):
        resolve_range(T0 - 400 * DAY, T0)
    with pytest.raises(InvalidInput):
        resolve_range(None, datetime(1, 1, 1))
    with pytest.raises(InvalidInput):
        parse_time("yesterday")
    since, until, bucket = resolve_range(None, T0)
    assert (until - since, bucket) == (7 * DAY, "day")
    # Naive times are UTC; others are converted.
    assert resolve_range(datetime(2025, 3, 10), datetime(2025, 3, 10, 3, tzinfo=UTC))[0] == T0
    assert parse_time("2025-03-10T01:00:00+01:00") == T0


def test_status_time_never_runs_past_now(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"now-{uuid.uuid4().hex[:6]}"))
    with services.db.write() as s:
        agent = AgentInstance(workspace_id=ws.id, definition_id=_definition(s), name="solo")
        s.add(agent)
        s.flush()
        s.add(AgentStatusChange(workspace_id=ws.id, agent_id=agent.id, to_status="idle", at=utcnow() - 2 * H))
    now = utcnow()
    summary = services.analytics.summary(AnalyticsQuery(workspace_id=ws.id, since=now - H, until=now + H))
    assert summary.agents[0].seconds_in_status["idle"] == pytest.approx(3600, abs=30)


def test_an_empty_workspace_has_zero_figures(services: Services) -> None:
    ws = services.workspaces.create(WorkspaceCreate(slug=f"empty-{uuid.uuid4().hex[:6]}"))
    dashboard = services.analytics.dashboard(AnalyticsQuery(workspace_id=ws.id))
    assert dashboard.summary.agents == [] and dashboard.runs == [] and dashboard.failures == []
    assert dashboard.messages.points == dashboard.cost.points == dashboard.errors.points == []
    assert set(dashboard.summary.totals.values()) == {0.0}


# -- headlines (core/analytics_headlines.py) ---------------------------------------------------------
def figures(name: str, status: str, since: datetime | None = None, **values: Any) -> AgentFigures:
    return AgentFigures(agent_id=uuid.uuid4(), name=name, status=status, status_since=since, **values)


def summary_of(*agents: AgentFigures, errors: int = 0) -> Summary:
    ordered = sorted(agents, key=lambda f: (-f.cost, -f.messages, f.name))
    totals = {"cost": sum(a.cost for a in agents), "tokens": float(sum(a.tokens for a in agents))}
    return Summary(
        since=T0, until=T0 + DAY, bucket="hour", agents=ordered, runs_by_outcome={}, totals={**totals, "errors": errors}
    )


def test_an_agent_in_error_is_stuck_with_its_reason_and_since_when(
    analytics: AnalyticsService, history: History
) -> None:
    now = T0 + 30 * H + timedelta(minutes=5)  # carol went busy 5 minutes ago: not stuck yet
    headlines = analytics.headlines(history.query(), now=now)
    assert [(s.name, s.status, s.reason) for s in headlines.stuck] == [("bob", "error", "rate limited")]
    assert headlines.stuck[0].since == T0 + 10.5 * H
    assert headlines.stuck[0].seconds == pytest.approx((now - (T0 + 10.5 * H)).total_seconds())
    assert headlines.longest_in_busy_or_error is None  # only when nobody is stuck
    assert headlines.at == now


def test_an_agent_busy_longer_than_the_threshold_is_stuck_after_those_in_error(
    analytics: AnalyticsService, history: History
) -> None:
    now = T0 + 30 * H + STUCK_BUSY + timedelta(seconds=1)
    headlines = analytics.headlines(history.query(), now=now)
    assert [(s.name, s.status) for s in headlines.stuck] == [("bob", "error"), ("carol", "busy")]
    assert headlines.stuck[1].seconds == pytest.approx(STUCK_BUSY.total_seconds() + 1)


def test_an_agent_busy_for_a_short_while_is_not_stuck() -> None:
    just_busy = figures("quick", "busy", since=T0 + 12 * H - STUCK_BUSY, seconds_in_status={"busy": 600.0})
    headlines = judge_headlines(summary_of(just_busy), [], now=T0 + 12 * H)  # exactly the threshold
    assert headlines.stuck == []
    assert headlines.longest_in_busy_or_error is not None
    assert (headlines.longest_in_busy_or_error.name, headlines.longest_in_busy_or_error.seconds) == ("quick", 600.0)


def test_when_nobody_is_stuck_the_longest_in_busy_or_error_is_named(
    analytics: AnalyticsService, history: History
) -> None:
    query = history.query(agent_ids=[history.agents["alice"], history.agents["dave"]])
    headlines = analytics.headlines(query, now=T0 + 30 * H)
    assert headlines.stuck == []
    longest = headlines.longest_in_busy_or_error
    assert longest is not None and longest.name == "alice"
    assert longest.seconds == pytest.approx(4 * 3600, abs=TOL)  # busy T0+2h..5h, error T0+5h..6h
    assert longest.seconds == stuck_score(by_name(analytics.summary(query))["alice"])


def test_the_top_spender_has_the_highest_cost_and_its_share_of_the_total(
    analytics: AnalyticsService, history: History
) -> None:
    summary = analytics.summary(history.query())
    headlines = analytics.headlines(history.query(), now=T0 + 30 * H)
    spender = headlines.top_spender
    assert spender is not None and spender.by == "cost"
    carol = by_name(summary)["carol"]
    assert (spender.agent_id, spender.name, spender.cost, spender.tokens) == (
        carol.agent_id,
        "carol",
        carol.cost,
        carol.tokens,
    )
    assert spender.total_cost == pytest.approx(0.586)
    assert spender.share == pytest.approx(carol.cost / 0.586)
    assert 0 < spender.share < 1


def test_failures_are_counted_with_the_latest(analytics: AnalyticsService, history: History) -> None:
    failures = analytics.headlines(history.query(), now=T0 + 30 * H).failures
    assert failures.count == 3  # alice and bob into error, run r2 failed
    assert failures.latest is not None and (failures.latest.kind, failures.latest.subject) == ("agent_error", "bob")


def test_no_cost_names_the_heaviest_by_tokens_and_no_tokens_names_nobody(services: Services) -> None:
    free = summary_of(figures("light", "idle", tokens=10), figures("heavy", "idle", tokens=900))
    spender = judge_headlines(free, [], now=T0).top_spender
    assert spender is not None and (spender.name, spender.by, spender.cost, spender.share) == ("heavy", "tokens", 0, 0)

    assert judge_headlines(summary_of(figures("quiet", "idle")), [], now=T0).top_spender is None
    ws = services.workspaces.create(WorkspaceCreate(slug=f"empty-{uuid.uuid4().hex[:6]}"))
    empty = services.analytics.headlines(AnalyticsQuery(workspace_id=ws.id))
    assert empty.top_spender is None and empty.stuck == [] and empty.longest_in_busy_or_error is None
    assert (empty.failures.count, empty.failures.latest) == (0, None)


# -- the REST API --------------------------------------------------------------------------------
@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(analytics_router)
    app.state.services = services  # as main.py does: the API reads them from the app
    with TestClient(app) as c:
        yield c


def auth(services: Services, workspace_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {services.tokens.create(workspace_id, 'analytics')[1]}"}


RANGE = {"since": "2025-03-10T00:00:00Z", "until": "2025-03-11T00:00:00Z"}


def test_the_api_serves_every_aggregate(client: TestClient, services: Services, history: History) -> None:
    headers = auth(services, history.a)
    summary = client.get("/api/analytics/summary", params=RANGE, headers=headers)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert [a["name"] for a in body["agents"]] == ["carol", "bob", "alice", "dave"]
    assert body["agents"][1]["seconds_in_status"]["error"] == pytest.approx(13.5 * 3600, abs=TOL)
    assert body["runs_by_outcome"] == {"cancelled": 1, "completed": 1, "failed": 1, "running": 1}

    messages = client.get("/api/analytics/messages-over-time", params=RANGE, headers=headers).json()
    assert next((p["bucket"], p["key"], p["value"]) for p in messages["points"]) == ("2025-03-10T01:00:00", "alice", 2)
    cost = client.get("/api/analytics/cost-over-time", params=RANGE, headers=headers).json()
    assert cost["points"][-1]["key"] == "cumulative"
    assert cost["points"][-1]["value"] == pytest.approx(0.586)
    errors = client.get("/api/analytics/errors-over-time", params=RANGE, headers=headers).json()
    assert len(errors["points"]) == 3
    runs = client.get("/api/analytics/runs", params=RANGE, headers=headers).json()
    assert {r["status"] for r in runs} == {"completed", "failed", "running", "cancelled"}
    failures = client.get("/api/analytics/failures", params={**RANGE, "limit": 2}, headers=headers).json()
    assert [f["subject"] for f in failures] == ["bob", "idea r2"]
    headlines = client.get("/api/analytics/headlines", params=RANGE, headers=headers)
    assert headlines.status_code == 200, headlines.text
    judged = headlines.json()
    assert (judged["top_spender"]["name"], judged["top_spender"]["by"]) == ("carol", "cost")
    assert judged["top_spender"]["share"] == pytest.approx(judged["top_spender"]["cost"] / 0.586)
    # Judged now: bob is in error, carol busy since T0 + 30 h.
    assert [(s["name"], s["status"], s["reason"]) for s in judged["stuck"]] == [
        ("bob", "error", "rate limited"),
        ("carol", "busy", ""),
    ]
    assert judged["failures"]["count"] == 3 and judged["failures"]["latest"]["subject"] == "bob"
    schema = client.get("/openapi.json").json()
    assert schema["paths"]["/api/analytics/headlines"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/AnalyticsHeadlines"}
    assert {"top_spender", "stuck", "longest_in_busy_or_error", "failures"} <= set(
        schema["components"]["schemas"]["AnalyticsHeadlines"]["properties"]
    )

    # Offsets are converted; the agent filter repeats; the workspace may be named.
    params = {
        "since": "2025-03-10T01:00:00+01:00",
        "until": "2025-03-11T00:00:00",
        "agent_id": [str(history.agents["alice"]), str(history.agents["bob"])],
        "workspace_id": str(history.a),
    }
    filtered = client.get("/api/analytics/summary", params=params, headers=headers).json()
    assert {a["name"] for a in filtered["agents"]} == {"alice", "bob"}
    by_project = client.get(
        "/api/analytics/summary", params={**RANGE, "project_id": str(history.project_q)}, headers=headers
    ).json()
    assert [a["name"] for a in by_project["agents"]] == ["dave"]


@pytest.mark.parametrize(
    "path", ["summary", "messages-over-time", "cost-over-time", "errors-over-time", "runs", "failures", "headlines"]
)
def test_the_api_is_scoped_by_the_token(client: TestClient, services: Services, history: History, path: str) -> None:
    headers = auth(services, history.a)
    url = f"/api/analytics/{path}"
    assert client.get(url, params=RANGE).status_code == 401
    assert client.get(url, params={**RANGE, "workspace_id": str(history.b)}, headers=headers).status_code == 404
    assert client.get(url, params={**RANGE, "agent_id": str(history.agents["eve"])}, headers=headers).status_code == 404
    assert client.get(url, params={**RANGE, "project_id": str(history.project_b)}, headers=headers).status_code == 404
    for bad in ({"since": "yesterday"}, {"until": "2025-13-01"}, {"since": RANGE["until"], "until": RANGE["since"]}):
        response = client.get(url, params=bad, headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert "detail" in response.json()
    too_long = {"since": "2020-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}
    assert client.get(url, params=too_long, headers=headers).status_code == 422
    assert client.get(url, params=RANGE, headers=headers).status_code == 200
    # B's own token sees B.
    assert client.get(url, params=RANGE, headers=auth(services, history.b)).status_code == 200


# -- on a large history: indexes, and no rows in Python ----------------------------------------------
LARGE_MESSAGES = 50_000
LARGE_STATUS_CHANGES = 5_000
HISTORY_DAYS = 120


@dataclass
class Large:
    workspace_id: uuid.UUID
    agents: list[uuid.UUID]
    project_id: uuid.UUID
    now: datetime

    def queries(self, dialect: str) -> dict[str, AnalyticsQuery]:
        """The page's preset ranges, with and without filters; on SQLite also the whole history.

        On PostgreSQL a range that covers (nearly) the whole table is read with a sequential scan
        when the planner finds that cheaper; bench/bench_analytics.py prints that case."""
        base = {"workspace_id": self.workspace_id, "until": self.now}
        queries = {
            "24 h": AnalyticsQuery(since=self.now - DAY, **base),
            "7 d": AnalyticsQuery(since=self.now - 7 * DAY, **base),
            "30 d": AnalyticsQuery(since=self.now - 30 * DAY, **base),
            "7 d, two agents": AnalyticsQuery(since=self.now - 7 * DAY, agent_ids=self.agents[:2], **base),
            "30 d, a project": AnalyticsQuery(since=self.now - 30 * DAY, project_id=self.project_id, **base),
        }
        if dialect == "sqlite":
            queries["all of it"] = AnalyticsQuery(since=self.now - HISTORY_DAYS * DAY - DAY, **base)
        return queries


@pytest.fixture
def large(services: Services) -> Large:
    """120 days of history in one workspace beside a smaller one (so the tables hold other
    workspaces' rows too), generated in the database, then planner statistics as in production."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    other = services.workspaces.create(WorkspaceCreate(slug=f"other-{uuid.uuid4().hex[:6]}"))
    generate_history(
        services.db, other.id, make_agents(services.db, other.id, 5, "other"),
        messages=5_000, status_changes=500, start=now - HISTORY_DAYS * DAY, end=now,
    )  # fmt: skip
    ws = services.workspaces.create(WorkspaceCreate(slug=f"large-{uuid.uuid4().hex[:6]}"))
    agents = make_agents(services.db, ws.id, 20)
    with services.db.write() as s:
        project = Project(workspace_id=ws.id, slug="p", name="P")
        s.add(project)
        s.flush()
        s.execute(sa.update(AgentInstance).where(sa.column("id").in_(agents[:5])).values(project_id=project.id))
        project_id = project.id
    generate_history(
        services.db, ws.id, agents, messages=LARGE_MESSAGES, status_changes=LARGE_STATUS_CHANGES,
        start=now - HISTORY_DAYS * DAY, end=now,
    )  # fmt: skip
    analyze(services.db)
    return Large(ws.id, agents, project_id, now)


def selects(statements: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(s, p) for s, p in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]


def test_every_aggregate_reads_the_big_tables_through_an_index(services: Services, large: Large) -> None:
    """EXPLAIN every statement the page's data load runs: agent_messages and agent_status_changes
    are never scanned without an index (SQLite: no `SCAN` of them at all, only index `SEARCH`es,
    with and without ANALYZE statistics; PostgreSQL, after VACUUM ANALYZE: no `Seq Scan`)."""
    db = services.db
    check_plans(services, large)
    if db.dialect == "sqlite":  # a laptop database usually has no statistics at all
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE sqlite_stat1")
        db.engine.dispose()  # connections keep the statistics they read when they opened
        check_plans(services, large)


def check_plans(services: Services, large: Large) -> None:
    db = services.db
    checked = 0
    for label, query in large.queries(db.dialect).items():
        with captured_statements(db) as statements:
            services.analytics.dashboard(query)
        for statement, parameters in selects(statements):
            plan = explain(db, statement, parameters)
            assert not unindexed_reads(db.dialect, plan), (label, statement, plan)
            assert not full_index_scans(db.dialect, plan), (label, statement, plan)
            if re.search(r"\b(agent_messages|agent_status_changes)\b", statement):
                checked += 1
                assert any(("INDEX" in line) or ("Index" in line) for line in plan), (label, statement, plan)
    assert checked >= 5 * len(large.queries(db.dialect))


def test_the_page_data_is_aggregated_in_the_database_not_loaded_into_python(services: Services, large: Large) -> None:
    """Every statement that touches the big tables aggregates (GROUP BY / an aggregate function) or
    reads a bounded handful (LIMIT); replayed, the whole page load returns a few hundred rows for
    tens of thousands of messages in the range."""
    db = services.db
    for label, query in large.queries(services.db.dialect).items():
        with captured_statements(db) as statements:
            dashboard = services.analytics.dashboard(query)
        returned = 0
        for statement, parameters in selects(statements):
            flat = " ".join(statement.split()).lower()
            if re.search(r"\b(agent_messages|agent_status_changes)\b", flat):
                assert re.search(r"group by|count\(|sum\(|max\(|limit", flat), (label, statement)
            with db.engine.connect() as conn:
                returned += len(conn.exec_driver_sql(statement, parameters).all())
        in_range = int(dashboard.summary.totals["messages"])
        assert in_range > 100, label
        # Rows returned are bounded by buckets x agents, agents x statuses and LIMITed lists, never
        # by the number of messages.
        span = query.until - query.since  # type: ignore[operator]
        buckets = int(span / H) + 1 if dashboard.summary.bucket == "hour" else span.days + 1
        agents = len(dashboard.summary.agents)
        limit = buckets * agents + agents * 8 + 2 * buckets + 100
        assert returned <= limit, (label, returned, in_range)
        if label == "30 d":
            assert returned * 10 < in_range, (label, returned, in_range)
    full = services.analytics.summary(
        AnalyticsQuery(workspace_id=large.workspace_id, since=large.now - HISTORY_DAYS * DAY - DAY, until=large.now)
    )
    assert full.totals["messages"] == LARGE_MESSAGES
