"""The analytics page's LLM charts: latency p50/p95 per model over time, error rate per profile.

Same shape as ui/analytics_charts.py's charts (a figure and a CSV per chart); model and profile
names are user text and Plotly renders text as pseudo-HTML, so they are escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

from core.analytics_schemas import Dashboard
from ui.analytics_charts import ChartSpec, base_figure, csv_bytes, empty, time_axis

PALETTE = ("#6366f1", "#0ea5e9", "#10b981", "#f59e0b", "#ec4899", "#8b5cf6", "#14b8a6", "#ef4444")


def llm_latency_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure("llm-latency", dark, xaxis=time_axis(data), yaxis={"title": "ms", "rangemode": "tozero"})
    points = data.llm.latency if data.llm else []
    if not points:
        return empty(figure, "No LLM calls in this range")
    models = sorted({p.model for p in points})
    traces = []
    for i, model in enumerate(models):
        mine = [p for p in points if p.model == model]
        color = PALETTE[i % len(PALETTE)]
        for stat, dash in (("p50", "solid"), ("p95", "dot")):
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"{escape(model)} {stat}",
                    "x": [p.bucket for p in mine],
                    "y": [p.p50_ms if stat == "p50" else p.p95_ms for p in mine],
                    "text": [f"{p.calls} calls" for p in mine],
                    "line": {"color": color, "dash": dash},
                    "hovertemplate": f"%{{x}}: %{{y:.0f}} ms ({stat}, %{{text}})<extra>{escape(model)}</extra>",
                }
            )
    figure["data"] = traces
    return figure


def llm_errors_figure(data: Dashboard, dark: bool) -> dict[str, Any]:
    figure = base_figure("llm-errors", dark, yaxis={"title": "error rate", "tickformat": ".0%", "rangemode": "tozero"})
    profiles = data.llm.profiles if data.llm else []
    if not profiles:
        return empty(figure, "No LLM calls in this range")
    figure["data"] = [
        {
            "type": "bar",
            "x": [escape(p.profile or "(none)") for p in profiles],
            "y": [p.error_rate for p in profiles],
            "text": [f"{p.errors} of {p.calls}" for p in profiles],
            "textposition": "auto",
            "marker": {"color": ["#ef4444" if p.errors else "#10b981" for p in profiles]},
            "hovertemplate": "%{x}: %{y:.1%} (%{text} calls failed)<extra></extra>",
        }
    ]
    return figure


def llm_latency_csv(data: Dashboard) -> bytes:
    rows = [(p.bucket, p.model, p.calls, p.p50_ms, p.p95_ms) for p in (data.llm.latency if data.llm else [])]
    return csv_bytes(["bucket", "model", "calls", "p50_ms", "p95_ms"], rows)


def llm_errors_csv(data: Dashboard) -> bytes:
    rows = [(p.profile, p.calls, p.errors, p.error_rate) for p in (data.llm.profiles if data.llm else [])]
    return csv_bytes(["profile", "calls", "errors", "error_rate"], rows)


LLM_CHARTS = (
    ChartSpec(
        "llm-latency", "LLM latency", "p50 (solid) and p95 (dotted) per model", llm_latency_figure, llm_latency_csv
    ),
    ChartSpec("llm-errors", "LLM error rate", "failed calls per LLM profile", llm_errors_figure, llm_errors_csv),
)
