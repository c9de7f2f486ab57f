"""Recorded LLM calls on the dashboard (issue 14): one inspector, a run's timeline, an agent's list.

- `LlmCallInspector`: a dialog with the exact prompt messages (plain text, escaped), the response
  as sanitized markdown (`widgets.safe_markdown`), copy buttons, tokens, cost, latency, outcome.
- `RunTimeline`: a Plotly chart of a run's calls per agent (bar = duration, colour = outcome),
  rounds shaded behind them; clicking a bar opens the inspector. Live: `llm_call` events add a
  running bar when a call starts and complete it when it ends.
- `AgentLlmCalls`: the agent page's "LLM calls" tab, newest first, paged, live, same inspector.

Everything LLM-written is untrusted: prompts are shown with `ui.label` (text, never HTML), chart
labels are escaped (Plotly renders text as pseudo-HTML), responses go through the sanitizer.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from html import escape
from typing import Any

from nicegui import run, ui

from core.event_schema import LlmCall
from core.events import EventOut
from core.llm_calls import LlmCallPublic, LlmCallSummary
from core.services import Services
from ui.format import full_time, money, when
from ui.palette import MUTED
from ui.widgets import safe_markdown

OUTCOME_COLORS = {"ok": "#16a34a", "error": "#dc2626", "cancelled": "#64748b", "running": "#f59e0b"}
OUTCOME_BADGES = {"ok": "positive", "error": "negative", "cancelled": "blue-grey-6", "running": "warning"}
AGENT_PAGE = 25
TIMELINE_MAX_CALLS = 2000
RELOAD_SECONDS = 0.5


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def outcome_badge(outcome: str) -> ui.badge:
    badge = ui.badge(outcome, color=OUTCOME_BADGES.get(outcome, "grey"))
    badge.props["data-outcome"] = outcome
    return badge


class LlmCallInspector:
    """One dialog per page; `open(call_id)` loads the whole call and shows it."""

    def __init__(self, services: Services, scope: uuid.UUID) -> None:
        self.services = services
        self.scope = scope
        with ui.dialog() as self.dialog, ui.card().classes("w-full max-w-4xl p-5 gap-3 rounded-xl") as card:
            card.props["data-testid"] = "llm-call-inspector"
            self.body = ui.column().classes("w-full gap-3 min-w-0")

    async def open(self, call_id: uuid.UUID | str) -> None:
        try:
            ident = uuid.UUID(str(call_id))
        except ValueError:
            return
        call = await run.io_bound(self.services.llm_calls.get, ident, self.scope)
        if call is None:  # NiceGUI is shutting down
            return
        self.body.clear()
        with self.body:
            self._render(call)
        self.dialog.open()

    def _render(self, call: LlmCallPublic) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("psychology").classes("text-2xl text-slate-400")
            title = f"{call.agent_name or 'agent'} · {call.action or 'LLM call'}"
            ui.label(title).classes("text-lg font-semibold break-all")
            outcome_badge(call.outcome).classes("text-sm")
            ui.space()
            ui.button(icon="close", on_click=self.dialog.close).props("flat round dense").tooltip("Close")
        with ui.element("div").classes("w-full grid gap-x-6 gap-y-2 grid-cols-2 md:grid-cols-4 text-sm"):
            facts = [
                ("Model", call.model),
                ("Profile", call.profile),
                ("Round", "—" if call.round is None else str(call.round)),
                ("Started", full_time(call.started_at)),
                ("Latency", _ms(call.latency_ms)),
                ("First token", _ms(call.ttft_ms)),
                ("Tokens", f"{call.prompt_tokens:,} in · {call.completion_tokens:,} out"),
                ("Cost", money(call.cost)),
            ]
            for caption, value in facts:
                with ui.column().classes("gap-0 min-w-0"):
                    ui.label(caption).classes(f"text-xs uppercase tracking-wider {MUTED}")
                    ui.label(value).classes("font-medium break-all").props["data-fact"] = caption.lower()
        if call.error:
            ui.label(call.error).classes("w-full text-sm text-negative whitespace-pre-wrap break-words").mark(
                "llm-call-error"
            )
        with ui.row().classes("w-full items-center gap-2"):
            ui.label(f"Prompt · {len(call.request)} messages").classes("font-semibold")
            if call.request_truncated_from:
                ui.label(f"(truncated from {call.request_truncated_from:,} characters)").classes(f"text-xs {MUTED}")
            ui.space()
            prompt_text = "\n\n".join(f"[{m.get('role', '')}]\n{m.get('content', '')}" for m in call.request)
            _copy_button("Copy prompt", prompt_text, "copy-prompt")
        with ui.column().classes("w-full gap-2 max-h-[28rem] overflow-auto").mark("llm-call-prompt") as prompt:
            prompt.props["data-testid"] = "llm-call-prompt"
            for message in call.request:
                with ui.column().classes("w-full gap-1 rounded-lg border border-slate-200 dark:border-slate-700 p-2"):
                    ui.label(str(message.get("role", ""))).classes(f"text-xs uppercase tracking-wider {MUTED}")
                    ui.label(str(message.get("content", ""))).classes(
                        "text-sm font-mono whitespace-pre-wrap break-words"
                    )
        with ui.row().classes("w-full items-center gap-2"):
            ui.label("Response").classes("font-semibold")
            if call.response_truncated_from:
                ui.label(f"(truncated from {call.response_truncated_from:,} characters)").classes(f"text-xs {MUTED}")
            ui.space()
            _copy_button("Copy response", call.response, "copy-response")
        with ui.column().classes("w-full max-h-[28rem] overflow-auto rounded-lg bg-slate-50 dark:bg-slate-800 p-3"):
            if call.response:
                safe_markdown(call.response).classes("w-full text-sm").mark("llm-call-response")
            else:
                ui.label("(no response)" if call.outcome != "running" else "(waiting for the answer)").classes(
                    f"text-sm {MUTED}"
                )


def _copy_button(label: str, text: str, marker: str) -> None:
    def copy() -> None:
        ui.clipboard.write(text)
        ui.notify(f"{label.removeprefix('Copy ').capitalize()} copied", type="positive", timeout=1500)

    ui.button(label, icon="content_copy", on_click=copy).props("flat dense no-caps").mark(marker)


# -- the run's timeline --------------------------------------------------------------------------
def _parse_ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def timeline_figure(calls: list[LlmCallSummary], now: datetime | None = None, dark: bool = False) -> dict[str, Any]:
    """Bars per agent from each call's start for its duration (a running call: up to now), one
    trace per outcome (its colour), each bar carrying the call id; rounds shaded behind."""
    now = now or datetime.now(UTC)
    traces: dict[str, dict[str, Any]] = {}
    spans: dict[int, list[datetime]] = {}
    for call in calls:
        start = call.started_at
        end = call.finished_at or now
        ms = max(1.0, call.latency_ms if call.latency_ms is not None else (end - start).total_seconds() * 1000)
        trace = traces.setdefault(
            call.outcome,
            {
                "type": "bar",
                "orientation": "h",
                "name": call.outcome,
                "x": [],
                "base": [],
                "y": [],
                "customdata": [],
                "hovertext": [],
                "hoverinfo": "text",
                "marker": {"color": OUTCOME_COLORS.get(call.outcome, "#94a3b8")},
            },
        )
        trace["x"].append(ms)
        trace["base"].append(_iso(start))
        trace["y"].append(escape(call.agent_name or "agent"))
        trace["customdata"].append(str(call.id))
        trace["hovertext"].append(
            escape(
                f"{call.action or 'call'} · {_ms(call.latency_ms)} · {call.prompt_tokens + call.completion_tokens} tokens"
            )
        )
        if call.round is not None:
            bounds = spans.setdefault(call.round, [start, end])
            bounds[0], bounds[1] = min(bounds[0], start), max(bounds[1], end)
    shapes, annotations = [], []
    for round_no, (start, end) in sorted(spans.items()):
        fill = "rgba(148,163,184,0.12)" if round_no % 2 else "rgba(148,163,184,0.22)"
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": _iso(start),
                "x1": _iso(end),
                "y0": 0,
                "y1": 1,
                "fillcolor": fill,
                "line": {"width": 0},
                "layer": "below",
            }
        )
        annotations.append(
            {
                "x": _iso(start),
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "text": f"R{round_no}",
                "showarrow": False,
                "xanchor": "left",
                "yanchor": "bottom",
                "font": {"size": 10},
            }
        )
    agents = sorted({escape(c.agent_name or "agent") for c in calls})
    return {
        "data": list(traces.values()),
        "layout": {
            "barmode": "overlay",
            "xaxis": {"type": "date", "title": {"text": ""}},
            "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": agents, "automargin": True},
            "shapes": shapes,
            "annotations": annotations,
            "height": max(220, 70 + 48 * len(agents)),
            "margin": {"l": 10, "r": 10, "t": 24, "b": 30},
            "showlegend": True,
            "legend": {"orientation": "h", "y": -0.2},
            "template": {"layout": {"font": {"color": "#e2e8f0" if dark else "#334155"}}},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
        },
        "config": {"displayModeBar": False, "responsive": True},
    }


class RunTimeline:
    """A run's LLM calls on a time axis, per agent; live; click a bar to inspect the call."""

    def __init__(self, services: Services, run_id: uuid.UUID, scope: uuid.UUID) -> None:
        self.services = services
        self.run_id = run_id
        self.scope = scope
        self.calls: dict[uuid.UUID, LlmCallSummary] = {}
        self._reload: asyncio.TimerHandle | None = None

    def build(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            ui.icon("view_timeline").classes("text-xl text-slate-400")
            ui.label("Timeline").classes("text-lg font-semibold")
            self.summary = ui.label().classes(f"text-sm {MUTED}").mark("timeline-summary")
        with ui.card().classes("w-full p-2 rounded-xl shadow-sm") as card:
            card.props["data-testid"] = "run-timeline"
            self.empty = ui.label("No LLM calls yet: each call appears here as it starts.").classes(
                f"text-sm {MUTED} self-center py-4"
            )
            self.plot = ui.plotly(timeline_figure([])).classes("w-full").mark("timeline-plot")
            self.plot.on("plotly_click", self._clicked)
        self.inspector = LlmCallInspector(self.services, self.scope)
        self._show()

    async def load(self) -> None:
        calls = await run.io_bound(self.services.llm_calls.run_timeline, self.run_id, self.scope, TIMELINE_MAX_CALLS)
        if calls is None:
            return
        self.calls = {c.id: c for c in calls}
        self._show()

    def _show(self) -> None:
        calls = sorted(self.calls.values(), key=lambda c: (c.started_at, str(c.id)))
        # The plot stays displayed even while empty: Plotly cannot lay out (or resize) a hidden plot.
        self.empty.set_visibility(not calls)
        self.plot.figure = timeline_figure(calls)
        self.plot.update()
        errors = sum(1 for c in calls if c.outcome == "error")
        running = sum(1 for c in calls if c.outcome == "running")
        parts = (
            [f"{len(calls)} calls"]
            + ([f"{running} running"] if running else [])
            + ([f"{errors} failed"] if errors else [])
        )
        self.summary.set_text(" · ".join(parts) if calls else "")

    async def _clicked(self, event: Any) -> None:
        points = (event.args or {}).get("points") or []
        if points and points[0].get("customdata"):
            await self.inspector.open(str(points[0]["customdata"]))

    async def handle(self, event: EventOut) -> None:
        """An `llm_call` event: show a started call at once, complete it when it ends."""
        call = LlmCall.of(event)
        call_id = call.call_id
        if call.state == "started":
            self.calls[call_id] = LlmCallSummary(
                id=call_id,
                workspace_id=event.workspace_id or self.scope,
                agent_id=event.agent_id,
                agent_name=call.agent_name,
                run_id=event.run_id,
                round=call.round,
                action=call.action,
                profile="",
                model=call.model,
                stream=False,
                prompt_tokens=0,
                completion_tokens=0,
                cost=0.0,
                outcome="running",
                error="",
                started_at=_parse_ts(call.started_at or event.ts),
                finished_at=None,
                latency_ms=None,
                ttft_ms=None,
            )
            self._show()
        elif call_id in self.calls:
            ended = self.calls[call_id].model_copy(
                update={
                    "outcome": call.outcome or "ok",
                    "latency_ms": call.latency_ms,
                    "prompt_tokens": call.prompt_tokens or 0,
                    "completion_tokens": call.completion_tokens or 0,
                    "cost": call.cost or 0.0,
                    "finished_at": event.ts,
                }
            )
            self.calls[call_id] = ended
            self._show()
        else:  # finished before we saw it start (e.g. after a resume): read it
            await self.load()


# -- the agent page's tab ------------------------------------------------------------------------
class AgentLlmCalls:
    """The agent's calls, newest first, a page at a time; live; click one to inspect it."""

    def __init__(self, services: Services, agent_id: uuid.UUID, scope: uuid.UUID) -> None:
        self.services = services
        self.agent_id = agent_id
        self.scope = scope
        self.cursor: str | None = None
        self.rows: dict[uuid.UUID, ui.element] = {}

    def build(self) -> None:
        self.inspector = LlmCallInspector(self.services, self.scope)
        self.empty = ui.label("No LLM calls yet.").classes(f"text-sm {MUTED} py-2")
        self.list = ui.column().classes("w-full gap-2").mark("llm-calls")
        with ui.row().classes("w-full justify-center"):
            self.more = ui.button("Load more", icon="expand_more", on_click=self.load_more).props("outline no-caps")
            self.more.mark("llm-calls-more")
        self.more.set_visibility(False)

    async def load(self) -> None:
        page = await run.io_bound(self.services.llm_calls.list_agent, self.agent_id, self.scope, AGENT_PAGE, None)
        if page is None:
            return
        self.list.clear()
        self.rows.clear()
        for call in page.items:
            self._row(call)
        self.cursor = page.next_cursor
        self._chrome()

    async def load_more(self) -> None:
        if self.cursor is None:
            return
        page = await run.io_bound(
            self.services.llm_calls.list_agent, self.agent_id, self.scope, AGENT_PAGE, self.cursor
        )
        if page is None:
            return
        for call in page.items:
            if call.id not in self.rows:
                self._row(call)
        self.cursor = page.next_cursor
        self._chrome()

    def _chrome(self) -> None:
        self.empty.set_visibility(not self.rows)
        self.more.set_visibility(self.cursor is not None)

    def _row(self, call: LlmCallSummary, first: bool = False) -> None:
        with self.list:
            row = ui.card().classes("w-full px-4 py-2 rounded-lg shadow-sm cursor-pointer gap-1")
        row.props["data-call-id"] = str(call.id)
        row.mark(f"llm-call-{call.id}")
        row.on("click", lambda _=None, ident=call.id: self.inspector.open(ident))
        with row:
            self._fill(call)
        if first:
            row.move(self.list, target_index=0)
        self.rows[call.id] = row

    def _fill(self, call: LlmCallSummary) -> None:
        with ui.row().classes("w-full items-center gap-3 no-wrap"):
            outcome_badge(call.outcome)
            ui.label(call.action or "LLM call").classes("font-medium")
            ui.label(call.model).classes(f"text-xs {MUTED}")
            ui.space()
            ui.label(_ms(call.latency_ms)).classes("text-sm")
            ui.label(f"{call.prompt_tokens + call.completion_tokens:,} tok · {money(call.cost)}").classes(
                f"text-xs {MUTED}"
            )
            ui.label(when(call.started_at)).classes(f"text-xs {MUTED}").tooltip(full_time(call.started_at))
        if call.prompt_preview:
            ui.label(call.prompt_preview).classes(f"text-xs {MUTED} truncate w-full")

    async def handle(self, event: EventOut) -> None:
        call_id = LlmCall.of(event).call_id
        call = await run.io_bound(self.services.llm_calls.get, call_id, self.scope)
        if call is None:
            return
        summary = LlmCallSummary.model_validate(call.model_dump())
        row = self.rows.get(call_id)
        if row is None:
            self._row(summary, first=True)
        else:
            row.clear()
            with row:
                self._fill(summary)
        self._chrome()
