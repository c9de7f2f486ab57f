"""The analytics page's charts (ui/analytics.py): Plotly figures and CSV files built from one
`Dashboard` of aggregates, as pure functions of the data and the dark-mode flag.

Plotly renders text as pseudo-HTML: agent names and run ideas are escaped before they are drawn.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from html import escape
from typing import Any

from core.analytics_headlines import stuck_score
from core.analytics_schemas import AgentFigures, Dashboard, RunFigures
from core.status import AgentStatus
from ui.format import money

TOP_AGENTS = 12  # agents drawn by name in a chart; the rest are summed as "others"
RUNS_DRAWN = 40
STATUS_HEX = {
    "idle": "#94a3b8",
    "initializing": "#60a5fa",
    "active": "#22c55e",
    "busy": "#f59e0b",
    "error": "#ef4444",
    "offline": "#64748b",
}
RUN_HEX = {
    "queued": "#94a3b8",
    "running": "#6366f1",
    "waiting": "#d97706",
    "completed": "#22c55e",
    "failed": "#ef4444",
    "cancelled": "#64748b",
    "interrupted": "#f97316",
}
CARD_BG = {False: "#ffffff", True: "#1e293b"}  # the page's card colours (ui.colors dark=#1e293b)
TEMPLATE_KEYS = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "xaxis", "yaxis", "title")


@cache
def template(dark: bool) -> dict[str, Any]:
    """The layout part of plotly's own template (plotly_dark / plotly_white), trimmed to what
    these charts use so each update stays small."""
    import plotly.io as pio

    layout = pio.templates["plotly_dark" if dark else "plotly_white"].layout.to_plotly_json()
    return {"layout": {k: layout[k] for k in TEMPLATE_KEYS if k in layout}}


# -- formatting (plotly renders text as pseudo-HTML: names and ideas are escaped) -----------------------------------------------------------------------------------
def count(value: float) -> str:
    value = float(value)
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def csv_bytes(header: list[str], rows: Iterable[Iterable[Any]]) -> bytes:
    """CSV of aggregate rows. Text cells that a spreadsheet would run as a formula (agent names
    and run ideas are user/LLM text) are prefixed with an apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [("'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v) for v in row]
        )
    return out.getvalue().encode()


def wrap(name: str, width: int = 12) -> str:
    """A category label on up to two lines (plotly breaks on <br>); the text is escaped."""
    words, lines, line = escape(name).split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def short(text: str, limit: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- figures --------------------------------------------------------------------------------------
def base_figure(name: str, dark: bool, **layout: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "template": template(dark),
        "paper_bgcolor": CARD_BG[dark],
        "plot_bgcolor": CARD_BG[dark],
        "margin": {"l": 56, "r": 16, "t": 8, "b": 40},
        "height": 320,
        "font": {"family": "Inter, ui-sans-serif, system-ui, sans-serif", "size": 12},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0, "traceorder": "normal"},
        "hoverlabel": {"namelength": -1},
    }
    merged.update(layout)
    return {
        "data": [],
        "layout": merged,
        "config": {
            "displaylogo": False,
            "responsive": True,
            "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
            "toImageButtonOptions": {"format": "png", "filename": f"agentdeck-{name}", "scale": 2},
        },
    }


def empty(figure: dict[str, Any], text: str) -> dict[str, Any]:
    figure["layout"]["annotations"] = [
        {"text": text, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 14}}
    ]
    figure["layout"]["xaxis"] = {"visible": False}
    figure["layout"]["yaxis"] = {"visible": False}
    return figure


def time_axis(data: Dashboard) -> dict[str, Any]:
    """A date axis over the whole range, widened to whole buckets so the first and last bars show."""
    summary = data.summary
    if summary.bucket == "hour":
        start = summary.since.replace(minute=0, second=0, microsecond=0)
        end = summary.until.replace(minute=0, second=0, microsecond=0)
        end += timedelta(hours=1) if end < summary.until else timedelta(0)
        return {"type": "date", "range": [start.isoformat(), end.isoformat()]}
    start = summary.since.replace(hour=0, minute=0, second=0, microsecond=0)
    end = summary.until.replace(hour=0, minute=0, second=0, microsecond=0)
    end += timedelta(days=1) if end < summary.until else timedelta(0)
    return {
        "type": "date",
        "range": [start.isoformat(), end.isoformat()],
        "ticklabelmode": "period",
        "tickformat": "%b %d",
    }


def count_axis(values: Iterable[float], title: str) -> dict[str, Any]:
    """A y axis of counts: whole numbers only (no 0.2 steps for a handful of errors)."""
    top = max(values, default=0)
    axis: dict[str, Any] = {"title": title, "rangemode": "tozero", "tickformat": ",d"}
    if top <= 8:
        axis["dtick"] = 1
    return axis


def period_ms(data: Dashboard) -> int:
    return 3_600_000 if data.summary.bucket == "hour" else 86_400_000


def bucketed_bars(data: Dashboard) -> dict[str, Any]:
    """Bars of a time series: one bucket wide (80 %), drawn across the hour or day they count."""
    period = period_ms(data)
    return {"xperiod": period, "xperiodalignment": "middle", "width": period * 0.8}


def bucket_end(data: Dashboard, bucket: str) -> str:
    end = datetime.fromisoformat(bucket).replace(tzinfo=UTC) + timedelta(milliseconds=period_ms(data))
    return min(end, data.summary.until).isoformat()


def top_agents(agents: list[AgentFigures], key: Callable[[AgentFigures], float]) -> list[AgentFigures]:
    ranked = sorted((a for a in agents if key(a) > 0), key=lambda a: (-key(a), a.name))
    return ranked[:TOP_AGENTS]


def messages_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure(
        "messages-over-time", dark, barmode="stack", xaxis=time_axis(data), yaxis={"title": "messages"}
    )
    if not data.messages.points:
        return empty(figure, "No messages in this range")
    totals: dict[str, float] = {}
    for p in data.messages.points:
        totals[p.key] = totals.get(p.key, 0) + p.value
    named = set(sorted(totals, key=lambda k: (-totals[k], k))[:TOP_AGENTS])
    series: dict[str, dict[str, float]] = {}
    for p in data.messages.points:
        key = p.key if p.key in named else "others"
        bucket = series.setdefault(key, {})
        bucket[p.bucket] = bucket.get(p.bucket, 0) + p.value
    order = sorted(series, key=lambda k: (k == "others", -totals.get(k, 0), k))
    figure["data"] = [
        {
            "type": "bar",
            "name": escape(key),
            "x": list(series[key]),
            "y": list(series[key].values()),
            "hovertemplate": "%{fullData.name}: %{y} messages<br>%{x}<extra></extra>",
            **bucketed_bars(data),
        }
        for key in order
    ]
    figure["layout"]["yaxis"] = count_axis(_bucket_sums(data.messages.points), "messages")
    return figure


def _bucket_sums(points: Iterable[Any]) -> list[float]:
    sums: dict[str, float] = {}
    for p in points:
        sums[p.bucket] = sums.get(p.bucket, 0) + p.value
    return list(sums.values())


def busiest_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    agents = top_agents(data.summary.agents, lambda a: a.messages)[::-1]
    figure = base_figure(
        "busiest-agents",
        dark,
        xaxis={"title": "messages"},
        yaxis={"automargin": True},
        margin={"l": 8, "r": 24, "t": 8, "b": 40},
    )
    if not agents:
        return empty(figure, "No messages in this range")
    figure["data"] = [
        {
            "type": "bar",
            "orientation": "h",
            "name": "messages",
            "y": [escape(a.name) for a in agents],
            "x": [a.messages for a in agents],
            "text": [count(a.messages) for a in agents],
            "textposition": "auto",
            "marker": {"color": "#6366f1"},
            "customdata": [[count(a.tokens), money(a.cost)] for a in agents],
            "hovertemplate": "%{y}: %{x} messages<br>%{customdata[0]} tokens, %{customdata[1]}<extra></extra>",
        }
    ]
    figure["layout"]["showlegend"] = False
    return figure


def status_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure(
        "time-in-status",
        dark,
        barmode="stack",
        xaxis={"title": "hours"},
        yaxis={"automargin": True},
        margin={"l": 8, "r": 16, "t": 8, "b": 40},
    )
    agents = [a for a in data.summary.agents if a.seconds_in_status]
    # The most time in busy/error first (on top): stuck agents stand out.
    agents = sorted(agents, key=lambda a: (-stuck_score(a), a.name))[: TOP_AGENTS + 3][::-1]
    if not agents:
        return empty(figure, "No status history in this range")
    figure["data"] = [
        {
            "type": "bar",
            "orientation": "h",
            "name": status,
            "y": [escape(a.name) for a in agents],
            "x": [round(a.seconds_in_status.get(status, 0) / 3600, 3) for a in agents],
            "marker": {"color": STATUS_HEX[status]},
            "customdata": [duration(a.seconds_in_status.get(status, 0)) for a in agents],
            "hovertemplate": f"%{{y}}: {status} for %{{customdata}}<extra></extra>",
        }
        for status in AgentStatus
        if any(status in a.seconds_in_status for a in agents)
    ]
    return figure


def spend_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    agents = top_agents(data.summary.agents, lambda a: a.cost or a.tokens / 1e9)[::-1]
    figure = base_figure(
        "tokens-and-cost-per-agent",
        dark,
        barmode="stack",
        xaxis={"title": "tokens", "rangemode": "tozero"},
        xaxis2={"title": "cost ($)", "overlaying": "x", "side": "top", "rangemode": "tozero", "showgrid": False},
        yaxis={"automargin": True},
        margin={"l": 8, "r": 16, "t": 40, "b": 40},
    )
    if not agents:
        return empty(figure, "No tokens or cost in this range")
    names = [escape(a.name) for a in agents]
    figure["data"] = [
        {
            "type": "bar",
            "orientation": "h",
            "name": "prompt tokens",
            "y": names,
            "x": [a.prompt_tokens for a in agents],
            "marker": {"color": "#818cf8"},
            "hovertemplate": "%{y}: %{x:,} prompt tokens<extra></extra>",
        },
        {
            "type": "bar",
            "orientation": "h",
            "name": "completion tokens",
            "y": names,
            "x": [a.completion_tokens for a in agents],
            "marker": {"color": "#4f46e5"},
            "hovertemplate": "%{y}: %{x:,} completion tokens<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "cost",
            "y": names,
            "x": [a.cost for a in agents],
            "xaxis": "x2",
            "marker": {"color": "#f59e0b", "size": 12, "symbol": "diamond", "line": {"width": 1, "color": "#78350f"}},
            "customdata": [money(a.cost) for a in agents],
            "hovertemplate": "%{y}: %{customdata}<extra></extra>",
        },
    ]
    return figure


def cost_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure("cumulative-cost", dark, xaxis=time_axis(data), yaxis={"title": "$", "rangemode": "tozero"})
    cumulative = [p for p in data.cost.points if p.key == "cumulative"]
    per_bucket = [p for p in data.cost.points if p.key == "cost"]
    if not cumulative or cumulative[-1].value == 0:
        return empty(figure, "No cost in this range")
    unit = "hour" if data.summary.bucket == "hour" else "day"
    # The running total as a step line: 0 at the start, each bucket's total at its end, flat to the end.
    xs = [data.summary.since.isoformat(), *(bucket_end(data, p.bucket) for p in cumulative)]
    ys = [0.0, *(p.value for p in cumulative)]
    xs.append(data.summary.until.isoformat())
    ys.append(cumulative[-1].value)
    figure["data"] = [
        {
            "type": "bar",
            "name": f"cost per {unit}",
            "x": [p.bucket for p in per_bucket],
            "y": [p.value for p in per_bucket],
            "marker": {"color": "#f59e0b", "opacity": 0.45},
            "hovertemplate": "%{x}: $%{y:.4f}<extra></extra>",
            **bucketed_bars(data),
        },
        {
            "type": "scatter",
            "mode": "lines",
            "line": {"shape": "hv", "color": "#d97706", "width": 2.5},
            "name": "cumulative",
            "x": xs,
            "y": ys,
            "hovertemplate": "by %{x}: $%{y:.4f}<extra></extra>",
        },
    ]
    return figure


def errors_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure("errors-over-time", dark, barmode="stack", xaxis=time_axis(data), yaxis={"title": "errors"})
    if not data.errors.points:
        return empty(figure, "No errors in this range")
    labels = {"agent_errors": ("agents into error", "#ef4444"), "failed_runs": ("failed runs", "#f97316")}
    figure["data"] = [
        {
            "type": "bar",
            "name": label,
            "x": [p.bucket for p in data.errors.points if p.key == key],
            "y": [p.value for p in data.errors.points if p.key == key],
            "marker": {"color": color},
            "hovertemplate": f"%{{x}}: %{{y}} {label}<extra></extra>",
            **bucketed_bars(data),
        }
        for key, (label, color) in labels.items()
        if any(p.key == key for p in data.errors.points)
    ]
    figure["layout"]["yaxis"] = count_axis(_bucket_sums(data.errors.points), "errors")
    return figure


def run_label(r: RunFigures) -> str:
    return f"{escape(short(r.idea, 28))} · {r.created_at:%m-%d %H:%M}"


def runs_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure(
        "run-durations", dark, xaxis=time_axis(data), yaxis={"title": "minutes", "rangemode": "tozero"}
    )
    runs = [r for r in data.runs if r.seconds is not None]
    if not runs:
        return empty(figure, "No runs in this range")
    top_cost = max((r.cost for r in runs), default=0) or 1
    traces = []
    for status, color in RUN_HEX.items():
        chosen = [r for r in runs if r.status == status]
        if not chosen:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": status,
                "x": [(r.started_at or r.created_at).isoformat() for r in chosen],
                "y": [round((r.seconds or 0) / 60, 2) for r in chosen],
                "marker": {
                    "color": color,
                    "size": [10 + 18 * (r.cost / top_cost) for r in chosen],
                    "line": {"width": 1, "color": "rgba(0,0,0,0.3)"},
                },
                "customdata": [
                    [escape(short(r.idea, 60)), duration(r.seconds or 0), money(r.cost), count(r.tokens)]
                    for r in chosen
                ],
                "hovertemplate": (
                    f"<b>%{{customdata[0]}}</b><br>{status} after %{{customdata[1]}}"
                    "<br>%{customdata[3]} tokens, %{customdata[2]}<extra></extra>"
                ),
            }
        )
    figure["data"] = traces
    return figure


def run_cost_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure(
        "tokens-and-cost-per-run",
        dark,
        yaxis={"title": "cost ($)", "rangemode": "tozero"},
        yaxis2={"title": "tokens", "overlaying": "y", "side": "right", "rangemode": "tozero", "showgrid": False},
        xaxis={"showticklabels": False, "title": f"the latest {RUNS_DRAWN} runs, oldest first"},
        margin={"l": 56, "r": 56, "t": 8, "b": 40},
    )
    runs = data.runs[:RUNS_DRAWN][::-1]
    if not runs:
        return empty(figure, "No runs in this range")
    labels = [f"{i + 1}. {run_label(r)}" for i, r in enumerate(runs)]
    figure["data"] = [
        {
            "type": "bar",
            "name": "cost",
            "x": labels,
            "y": [r.cost for r in runs],
            "marker": {"color": [RUN_HEX.get(r.status, "#94a3b8") for r in runs]},
            "customdata": [[r.status, money(r.cost)] for r in runs],
            "hovertemplate": "%{x}<br>%{customdata[0]}, %{customdata[1]}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "tokens",
            "x": labels,
            "y": [r.tokens for r in runs],
            "yaxis": "y2",
            "marker": {"color": "#6366f1", "size": 8, "symbol": "circle-open", "line": {"width": 2}},
            "hovertemplate": "%{x}<br>%{y:,} tokens<extra></extra>",
        },
    ]
    return figure


# -- CSV of each chart ----------------------------------------------------------------------------
def messages_csv(data: Dashboard) -> bytes:
    return csv_bytes(
        ["bucket_utc", "agent", "messages"], ((p.bucket, p.key, int(p.value)) for p in data.messages.points)
    )


def agents_csv(data: Dashboard) -> bytes:
    return csv_bytes(
        ["agent", "status", "messages", "prompt_tokens", "completion_tokens", "tokens", "cost", "errors"],
        (
            (a.name, a.status, a.messages, a.prompt_tokens, a.completion_tokens, a.tokens, a.cost, a.errors)
            for a in data.summary.agents
        ),
    )


def status_csv(data: Dashboard) -> bytes:
    return csv_bytes(
        ["agent", "status", "seconds"],
        ((a.name, s, sec) for a in data.summary.agents for s, sec in sorted(a.seconds_in_status.items())),
    )


def cost_csv(data: Dashboard) -> bytes:
    per_bucket = {p.bucket: p.value for p in data.cost.points if p.key == "cost"}
    cumulative = {p.bucket: p.value for p in data.cost.points if p.key == "cumulative"}
    return csv_bytes(["bucket_utc", "cost", "cumulative_cost"], ((b, per_bucket[b], cumulative[b]) for b in per_bucket))


def errors_csv(data: Dashboard) -> bytes:
    table: dict[str, dict[str, float]] = {}
    for p in data.errors.points:
        table.setdefault(p.bucket, {})[p.key] = p.value
    return csv_bytes(
        ["bucket_utc", "agent_errors", "failed_runs"],
        ((b, int(v.get("agent_errors", 0)), int(v.get("failed_runs", 0))) for b, v in sorted(table.items())),
    )


def runs_csv(data: Dashboard) -> bytes:
    return csv_bytes(
        ["run_id", "idea", "status", "created_at", "started_at", "finished_at", "seconds", "prompt_tokens",
         "completion_tokens", "tokens", "cost", "error"],
        (
            (
                r.run_id, r.idea, r.status, r.created_at.isoformat(),
                r.started_at.isoformat() if r.started_at else "", r.finished_at.isoformat() if r.finished_at else "",
                r.seconds if r.seconds is not None else "", r.prompt_tokens, r.completion_tokens, r.tokens, r.cost,
                r.error,
            )
            for r in data.runs
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class ChartSpec:
    name: str
    title: str
    subtitle: str
    figure: Callable[[Dashboard, bool], dict[str, Any]]
    csv: Callable[[Dashboard], bytes]
    wide: bool = False


CHARTS = (
    ChartSpec("messages", "Messages over time", "per agent, stacked", messages_figure, messages_csv, wide=True),
    ChartSpec("busiest", "Busiest agents", "messages in the range", busiest_figure, agents_csv),
    ChartSpec("status", "Time in each status", "from the status audit trail, hours", status_figure, status_csv),
    ChartSpec("spend", "Tokens and cost per agent", "most expensive first", spend_figure, agents_csv),
    ChartSpec("cost", "Cumulative cost", "running total since the start of the range", cost_figure, cost_csv),
    ChartSpec("errors", "Errors over time", "transitions into error and failed runs", errors_figure, errors_csv),
    ChartSpec("runs", "Run durations and outcomes", "each dot a run; size = cost", runs_figure, runs_csv),
    ChartSpec("run-cost", "Tokens and cost per run", "bar colour = outcome", run_cost_figure, runs_csv),
)
