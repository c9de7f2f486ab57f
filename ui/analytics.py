"""Analytics (SPEC §11, route `/analytics`): where the workspace's time and money go, at a glance.

Headline cards answer "which agent costs most", "which is stuck" and "what failed and when"; eight
Plotly charts show messages over time (stacked per agent), the busiest agents, time in each status
per agent, tokens and cost per agent, cumulative cost, errors over time, run durations and
outcomes, and tokens and cost per run. A range picker (24 h / 7 days / 30 days / custom dates) and
agent and project filters scope everything.

All figures (built in ui/analytics_charts.py) come from `AnalyticsService.dashboard`: aggregates computed by the database, loaded
in a worker thread, never rows. The page follows the workspace's events live, but throttled: an
event only marks the data stale, and a timer reloads it at most every `THROTTLE_SECONDS`.

Charts follow the dark-mode switch (plotly_dark / plotly_white, redrawn from the loaded figures
without a reload); each downloads as PNG (the button, or the chart's own modebar) and as CSV of
the aggregate rows it draws.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nicegui import APIRouter, run, ui

from core.analytics_headlines import judge_headlines
from core.analytics_schemas import AgentRef, AnalyticsQuery, Dashboard
from core.errors import DomainError, NotFound
from core.event_schema import AgentCreated, AgentDeleted, AgentUpdated
from core.events import EventFilter, EventOut, EventType
from core.schemas import ProjectPublic, WorkspacePublic
from core.services import Services
from ui import live
from ui.analytics_charts import (
    CHARTS,
    ChartSpec,
    base_figure,
    count,
    duration,
    short,
)
from ui.analytics_llm import LLM_CHARTS
from ui.dark_mode import page_dark_mode
from ui.format import full_time, money, when
from ui.palette import MUTED
from ui.safe_props import with_props
from ui.state import app_services
from ui.theme import frame

router = APIRouter()

CARD = "w-full p-4 gap-2 rounded-xl shadow-sm border border-slate-200 dark:border-slate-700"

THROTTLE_SECONDS = 3.0  # live updates: reload at most this often, however many events arrive
ROLLING_REFRESH_SECONDS = 60.0  # a rolling range ("last 24 h") moves on even without events
PRESETS: dict[str, tuple[str, timedelta]] = {
    "24h": ("24 h", timedelta(days=1)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}
CUSTOM = "custom"
ALL = ""
# Events after which the figures may have changed (llm_token and context edits do not count).
WATCHED = frozenset(
    {
        EventType.AGENT_STATUS_CHANGED,
        EventType.AGENT_MESSAGE,
        EventType.AGENT_CREATED,
        EventType.AGENT_DELETED,
        EventType.AGENT_UPDATED,
        EventType.RUN_STARTED,
        EventType.RUN_FINISHED,
        EventType.RUN_RESUMED,
        EventType.LLM_CALL,  # the LLM latency and error-rate charts
        EventType.RUN_ROUND,
        EventType.RESUME,
    }
)


# -- the page -------------------------------------------------------------------------------------
@dataclass
class Filters:
    range: str = "7d"
    custom: tuple[datetime, datetime] | None = None
    agent_ids: list[str] = field(default_factory=list)
    project_id: str = ALL

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        if self.range == CUSTOM and self.custom is not None:
            return self.custom
        return now - PRESETS.get(self.range, PRESETS["7d"])[1], now

    @property
    def rolling(self) -> bool:
        return self.range != CUSTOM


class Chart:
    """A card with a title, PNG and CSV buttons and one ui.plotly."""

    def __init__(self, page: AnalyticsPage, spec: ChartSpec) -> None:
        self.page = page
        self.spec = spec
        span = "lg:col-span-2" if spec.wide else ""
        with ui.card().classes(f"{CARD} {span}").mark(f"chart-card chart-card-{spec.name}"):
            with ui.row().classes("w-full items-start no-wrap gap-2"):
                with ui.column().classes("gap-0 grow min-w-0"):
                    ui.label(spec.title).classes("text-base font-semibold")
                    self.subtitle = ui.label(spec.subtitle).classes(f"text-xs {MUTED}")
                with_props(
                    ui.button(icon="image", on_click=self.download_png).props("flat round dense size=sm"),
                    {"aria-label": f"Download {spec.title} as PNG"},
                ).tooltip("Download PNG").mark(f"png-{spec.name}")
                with_props(
                    ui.button(icon="table_view", on_click=self.download_csv).props("flat round dense size=sm"),
                    {"aria-label": f"Download {spec.title} as CSV"},
                ).tooltip("Download CSV").mark(f"csv-{spec.name}")
            self.plot = ui.plotly(base_figure(spec.name, page.dark)).classes("w-full").mark(f"chart chart-{spec.name}")

    def render(self, data: Dashboard, dark: bool) -> None:
        self.plot.update_figure(self.spec.figure(data, dark))

    def download_png(self) -> None:
        """plotly.js renders the PNG in the browser, as drawn (theme included)."""
        self.plot.run_plot_method(
            "downloadImage", {"format": "png", "filename": self.filename(), "width": 1200, "height": 600, "scale": 2}
        )

    def download_csv(self) -> None:
        if self.page.data is None:
            ui.notify("Nothing loaded yet", type="warning")
            return
        ui.download.content(self.spec.csv(self.page.data), f"{self.filename()}.csv", "text/csv")

    def filename(self) -> str:
        data = self.page.data
        stamp = f"-{data.summary.since:%Y%m%d%H%M}-{data.summary.until:%Y%m%d%H%M}" if data else ""
        return f"agentdeck-{self.spec.name}{stamp}"


class AnalyticsPage:
    def __init__(
        self,
        services: Services,
        workspace: WorkspacePublic,
        agents: list[AgentRef],
        projects: list[ProjectPublic],
        dark: ui.dark_mode | None,
    ) -> None:
        self.services = services
        self.workspace = workspace
        self.agents = agents
        self.projects = projects
        self.dark_mode = dark
        self.filters = Filters()
        self.data: Dashboard | None = None
        self.stale = False
        self.loading = False
        self.generation = 0
        self.loaded_at: datetime | None = None
        self.charts: list[Chart] = []
        self._build()
        if dark is not None:
            dark.on_value_change(lambda _: self.render())

    @property
    def dark(self) -> bool:
        return bool(self.dark_mode.value) if self.dark_mode is not None else False

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        with ui.column().classes("w-full gap-1"), ui.row().classes("w-full items-center gap-3"):
            options = {key: label for key, (label, _) in PRESETS.items()} | {CUSTOM: "Custom"}
            self.range = (
                ui.toggle(options, value=self.filters.range, on_change=lambda e: self._range_chosen(e.value))
                .props("no-caps unelevated toggle-color=primary")
                .classes("border border-slate-200 dark:border-slate-700 rounded-lg")
                .mark("range")
            )
            with (
                ui.button(icon="date_range").props("outline no-caps").mark("custom-range-button") as self.custom_button
            ):
                self.custom_label = ui.label("Pick dates")
                with ui.menu() as self.custom_menu:
                    self.date = (
                        ui.date(on_change=lambda e: self._dates_chosen(e.value)).props("range").mark("custom-range")
                    )
            self.custom_button.set_visibility(False)
            agent_options = {str(a.agent_id): a.name for a in self.agents}
            self.agent_select = (
                ui.select(agent_options, multiple=True, label="Agents", clearable=True, on_change=self._agents_chosen)
                .props('dense outlined use-chips options-dense max-values=20 aria-label="Agents"')
                .classes("min-w-48 max-w-96")
                .mark("agent-filter")
            )
            if self.projects:
                project_options = {ALL: "All projects", **{str(p.id): p.name for p in self.projects}}
                ui.select(project_options, value=ALL, label="Project", on_change=self._project_chosen).props(
                    'dense outlined options-dense aria-label="Project"'
                ).classes("w-48").mark("project-filter")
            ui.space()
            with ui.row().classes("items-center gap-1 no-wrap"):
                ui.icon("sensors").classes("text-base text-emerald-500").tooltip(
                    f"Live: new events reload the figures, at most every {THROTTLE_SECONDS:g} s"
                )
                self.status = ui.label("Loading…").classes(f"text-xs {MUTED}").mark("updated")
                ui.button(icon="refresh", on_click=self.reload).props(
                    'flat round dense aria-label="Reload now"'
                ).tooltip("Reload now").mark("reload")

        with ui.card().classes(f"{CARD} items-center py-10 border-dashed shadow-none") as self.empty_state:
            ui.icon("insights").classes("text-5xl text-slate-300")
            ui.label("Nothing to chart yet").classes("text-lg font-medium").mark("analytics-empty")
            ui.label(
                "This workspace has no agents. Create agents on the Agents board and start a team run: their "
                "messages, statuses, tokens and costs appear here as they happen."
            ).classes(f"text-sm {MUTED} text-center max-w-xl")
            ui.button("Go to agents", icon="smart_toy", on_click=lambda: ui.navigate.to("/")).props(
                "unelevated no-caps"
            )
        self.empty_state.set_visibility(False)

        with ui.column().classes("w-full gap-6") as self.content:
            with ui.element("div").classes("w-full grid gap-4 grid-cols-1 sm:grid-cols-2 xl:grid-cols-4"):
                self.headline_cost = Headline("payments", "Costs most", "headline-cost")
                self.headline_stuck = Headline("hourglass_bottom", "Stuck", "headline-stuck")
                self.headline_failures = Headline("report", "Failures", "headline-failures")
                self.headline_activity = Headline("forum", "Activity", "headline-activity")
            with ui.element("div").classes("w-full grid gap-4 grid-cols-1 lg:grid-cols-2"):
                for spec in CHARTS[:2]:
                    self.charts.append(Chart(self, spec))
                with ui.card().classes(f"{CARD}").mark("failures-card"):
                    with ui.row().classes("w-full items-center gap-2"):
                        ui.icon("report", color="negative").classes("text-xl")
                        ui.label("What failed and when").classes("text-base font-semibold")
                        ui.space()
                        self.failures_count = ui.label().classes(f"text-xs {MUTED}")
                    self.failures = (
                        ui.column().classes("w-full gap-1 max-h-[320px] overflow-auto").mark("failures-list")
                    )
                for spec in (*CHARTS[2:], *LLM_CHARTS):
                    self.charts.append(Chart(self, spec))
        self.content.set_visibility(False)

    # -- filters -------------------------------------------------------------------------------
    async def _range_chosen(self, value: str | None) -> None:
        self.filters.range = value or "7d"
        custom = self.filters.range == CUSTOM
        self.custom_button.set_visibility(custom)
        if custom:
            if self.filters.custom is None:
                now = datetime.now(UTC)
                self.filters.custom = (datetime.combine(now.date() - timedelta(days=6), datetime.min.time(), UTC), now)
                self.date.value = {"from": f"{now.date() - timedelta(days=6):%Y/%m/%d}", "to": f"{now.date():%Y/%m/%d}"}
            self.custom_menu.open()
        self._show_custom_label()
        await self.reload()

    async def _dates_chosen(self, value: Any) -> None:
        if not value:
            return
        if isinstance(value, str):
            first = last = value
        else:
            first, last = value.get("from"), value.get("to")
        try:
            start = datetime.strptime(first, "%Y/%m/%d").replace(tzinfo=UTC)
            end = datetime.strptime(last, "%Y/%m/%d").replace(tzinfo=UTC) + timedelta(days=1)
        except (TypeError, ValueError):
            return
        self.filters.custom = (start, end)
        self._show_custom_label()
        if self.filters.range == CUSTOM:
            await self.reload()

    def _show_custom_label(self) -> None:
        if self.filters.custom is not None:
            start, end = self.filters.custom
            self.custom_label.set_text(f"{start:%b %d} – {end - timedelta(seconds=1):%b %d}")

    async def _agents_chosen(self, event: Any) -> None:
        self.filters.agent_ids = list(event.value or [])
        await self.reload()

    async def _project_chosen(self, event: Any) -> None:
        self.filters.project_id = event.value or ALL
        await self.reload()

    def query(self) -> AnalyticsQuery:
        since, until = self.filters.window(datetime.now(UTC))
        return AnalyticsQuery(
            workspace_id=self.workspace.id,
            since=since,
            until=until,
            agent_ids=[uuid.UUID(a) for a in self.filters.agent_ids] or None,
            project_id=uuid.UUID(self.filters.project_id) if self.filters.project_id else None,
        )

    # -- loading -------------------------------------------------------------------------------
    async def reload(self) -> None:
        self.generation += 1
        generation = self.generation
        self.loading = True
        self.stale = False
        self.status.set_text("Loading…")
        try:
            query = self.query()
            data = await run.io_bound(self.services.analytics.dashboard, query)
        except NotFound:
            if generation == self.generation:
                ui.notify("An agent or project of the filter no longer exists; the filter was cleared", type="warning")
                self.loading = False
                self.filters.agent_ids, self.filters.project_id = [], ALL
                self.agent_select.value = []
            return
        except DomainError as exc:
            if generation == self.generation:
                ui.notify(str(exc), type="negative")
                self.status.set_text("Could not load")
                self.loading = False
            return
        if generation != self.generation:  # a newer filter change took over
            return
        self.loading = False
        self.data = data
        self.loaded_at = datetime.now(UTC)
        self.render()

    async def tick(self) -> None:
        """The throttle: reload when events marked the data stale (or a rolling range aged)."""
        if self.loading or self.loaded_at is None:
            return
        aged = self.filters.rolling and (datetime.now(UTC) - self.loaded_at).total_seconds() >= ROLLING_REFRESH_SECONDS
        if self.stale or aged:
            await self.reload()

    def on_event(self, event: EventOut) -> None:
        if event.type in WATCHED:
            self.stale = True
            if event.type in (EventType.AGENT_CREATED, EventType.AGENT_DELETED, EventType.AGENT_UPDATED):
                self._agent_options_changed(event)

    def _agent_options_changed(self, event: EventOut) -> None:
        options = dict(self.agent_select.options) if isinstance(self.agent_select.options, dict) else {}
        if event.type == EventType.AGENT_DELETED:
            options.pop(str(AgentDeleted.of(event).agent_id), None)
        else:
            agent = (AgentCreated.of(event) if event.type == EventType.AGENT_CREATED else AgentUpdated.of(event)).agent
            options[str(agent.id)] = agent.name
        self.agent_select.set_options(
            dict(sorted(options.items(), key=lambda kv: kv[1].casefold())),
            value=[v for v in (self.agent_select.value or []) if v in options],
        )

    # -- rendering -----------------------------------------------------------------------------
    def render(self) -> None:
        data = self.data
        if data is None:
            return
        summary = data.summary
        nothing = not summary.agents and not data.runs and not self.filters.agent_ids and not self.filters.project_id
        self.empty_state.set_visibility(nothing)
        self.content.set_visibility(not nothing)
        stamp = full_time(self.loaded_at) if self.loaded_at else ""
        unit = "hourly" if summary.bucket == "hour" else "daily"
        self.status.set_text(f"{summary.since:%b %d %H:%M} – {summary.until:%b %d %H:%M} UTC · {unit}")
        self.status.props["title"] = f"Updated {stamp}"
        if nothing:
            return
        dark = self.dark
        self._headlines(data)
        self._failures(data)
        for chart in self.charts:
            chart.render(data, dark)

    def _headlines(self, data: Dashboard) -> None:
        summary, totals = data.summary, data.summary.totals
        judged = judge_headlines(summary, data.failures, datetime.now(UTC))
        spender = judged.top_spender
        if spender is not None and spender.by == "cost":
            self.headline_cost.show(
                spender.name,
                f"{money(spender.cost)} · {spender.share * 100:.0f}% of {money(spender.total_cost)}"
                f" · {count(spender.tokens)} tokens",
                tone="warning",
            )
        elif spender is not None:  # tokens but no cost (e.g. the free offline demo model)
            self.headline_cost.show(
                spender.name,
                f"{count(spender.tokens)} tokens, the most · no cost recorded in this range",
                tone="warning",
            )
        else:
            self.headline_cost.show("No spend", "No tokens were used in this range", tone="muted")

        if judged.stuck:
            first = judged.stuck[0]
            since = duration(first.seconds) if first.seconds is not None else "a while"
            detail = f"{first.status} for {since}"
            if first.reason:
                detail += f" — {short(first.reason, 60)}"
            more = len(judged.stuck) - 1
            if more:
                detail += f" · {more} more stuck"
            self.headline_stuck.show(first.name, detail, tone="negative")
        elif (worst := judged.longest_in_busy_or_error) is not None:
            self.headline_stuck.show(
                "Nobody stuck now",
                f"Longest in busy/error: {worst.name}, {duration(worst.seconds)} in this range",
                tone="positive",
            )
        else:
            self.headline_stuck.show("Nobody stuck", "No agent is in error or busy for long", tone="positive")

        failures = judged.failures
        if failures.count and failures.latest is not None:
            last = failures.latest
            what = "run failed" if last.kind == "run_failed" else "went into error"
            self.headline_failures.show(
                f"{failures.count} failure{'s' if failures.count != 1 else ''}",
                f"Last {when(last.at)} UTC: {short(last.subject, 32)} {what}",
                tone="negative",
            )
        else:
            self.headline_failures.show("No failures", "No agent went into error, no run failed", tone="positive")

        outcomes = ", ".join(f"{n} {status}" for status, n in sorted(summary.runs_by_outcome.items()))
        self.headline_activity.show(
            f"{count(totals['messages'])} messages",
            f"{count(totals['tokens'])} tokens · {int(totals['runs'])} run{'' if totals['runs'] == 1 else 's'}"
            + (f" ({outcomes})" if outcomes else ""),
            tone="primary",
        )

    def _failures(self, data: Dashboard) -> None:
        self.failures.clear()
        self.failures_count.set_text(f"latest {len(data.failures)}" if data.failures else "")
        with self.failures:
            if not data.failures:
                with ui.row().classes("items-center gap-2 py-6 w-full justify-center"):
                    ui.icon("check_circle", color="positive")
                    ui.label("Nothing failed in this range").classes(f"text-sm {MUTED}")
                return
            for failure in data.failures:
                icon = "rocket_launch" if failure.kind == "run_failed" else "smart_toy"
                link = f"/runs/{failure.run_id}" if failure.run_id else f"/agents/{failure.agent_id}"
                with (
                    ui.link(target=link)
                    .classes(
                        "w-full no-underline text-inherit rounded-lg px-2 py-1 hover:bg-slate-100 "
                        "dark:hover:bg-slate-700/60"
                    )
                    .mark("failure"),
                    ui.row().classes("w-full items-start no-wrap gap-2"),
                ):
                    ui.icon(icon, color="negative").classes("text-lg mt-0.5")
                    with ui.column().classes("gap-0 min-w-0 grow"):
                        what = "run failed" if failure.kind == "run_failed" else "went into error"
                        ui.label(f"{short(failure.subject, 60)} {what}").classes("text-sm font-medium truncate w-full")
                        if failure.reason:
                            ui.label(short(failure.reason, 140)).classes(f"text-xs {MUTED} line-clamp-2")
                    ui.label(f"{when(failure.at)}").classes(f"text-xs {MUTED} shrink-0").tooltip(full_time(failure.at))


TONES = {
    "primary": "bg-indigo-50 text-indigo-600 dark:bg-indigo-500/15 dark:text-indigo-300",
    "warning": "bg-amber-50 text-amber-600 dark:bg-amber-500/15 dark:text-amber-300",
    "negative": "bg-red-50 text-red-600 dark:bg-red-500/15 dark:text-red-300",
    "positive": "bg-emerald-50 text-emerald-600 dark:bg-emerald-500/15 dark:text-emerald-300",
    "muted": "bg-slate-100 text-slate-500 dark:bg-slate-700 dark:text-slate-300",
}


class Headline:
    """One answer at a glance: an icon, a question, the answer and a line of detail."""

    def __init__(self, icon: str, question: str, marker: str) -> None:
        with ui.card().classes(f"{CARD} shadow-sm").mark(marker):
            with ui.row().classes("w-full items-center no-wrap gap-3"):
                self.icon = ui.icon(icon).classes(f"text-xl p-2 rounded-lg {TONES['muted']}")
                ui.label(question).classes(f"text-xs uppercase tracking-wider font-medium {MUTED}")
            self.answer = ui.label("…").classes("text-xl font-semibold truncate w-full").mark(f"{marker}-answer")
            self.detail = ui.label("").classes(f"text-sm {MUTED} line-clamp-2").mark(f"{marker}-detail")
        self.tone = "muted"

    def show(self, answer: str, detail: str, *, tone: str) -> None:
        self.answer.set_text(answer)
        self.answer.props["title"] = answer
        self.detail.set_text(detail)
        if tone != self.tone:
            self.icon.classes(remove=TONES[self.tone], add=TONES[tone])
            self.tone = tone


@router.page("/analytics")
async def analytics_page() -> None:
    services = app_services()
    with frame(services, "Analytics") as workspace:
        agents, projects = await run.io_bound(
            lambda: (services.analytics.agents(workspace.id), services.workspaces.list_projects(workspace.id))
        )
        page = AnalyticsPage(services, workspace, agents, projects, page_dark_mode())
        # Events only mark the figures stale; the timer reloads at most every THROTTLE_SECONDS.
        live.subscribe(services.bus, EventFilter(workspace_id=workspace.id), page.on_event)
        ui.timer(THROTTLE_SECONDS, page.tick)
        # The first load runs after the page is sent: a large history must not hold the page up.
        ui.timer(0, page.reload, once=True)
