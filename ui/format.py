"""Small formatting helpers of the agent page: times, pretty JSON and escaped markup.

`markup()` is for our own small HTML snippets (a message header, a history row): every value is
escaped with `esc()` before it goes in, and the result is still cleaned server-side, keeping only
layout tags and `class`/`title`. One `ui.html` instead of a row of labels keeps long lists cheap
(each element costs server memory per client).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

import nh3
from nicegui import ui

from core.messages import MessagePublic
from core.runtime_labels import DEMO_MODEL_LABEL

_TAGS = {"div", "span", "b", "i", "pre", "code", "br"}
_ATTRIBUTES = {"*": {"class", "title"}}


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def clean_markup(html: str) -> str:
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, link_rel=None)


def markup(html: str, *, tag: str = "div") -> ui.html:
    """Our own snippet (values already passed through `esc`), cleaned once more on the server."""
    return ui.html(html, sanitize=clean_markup, tag=tag)


def when(moment: datetime, *, now: datetime | None = None) -> str:
    """`14:03` today, `May 1, 14:03` this year, `2023-05-01 14:03` before (UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    now = now or datetime.now(UTC)
    if moment.date() == now.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == now.year:
        return moment.strftime("%b %d, %H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def full_time(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def money(value: float) -> str:
    """`$0`, `$0.0042` below a cent (LLM calls cost fractions of one), `$1,234.50` above."""
    if not value:
        return "$0"
    return f"${value:.4f}" if value < 0.01 else f"${value:,.2f}"


DEMO_TAG = (
    '<span class="text-xs rounded px-1.5 bg-amber-200 text-amber-900" '
    'title="The offline demo model: canned, deterministic answers, no network, no cost.">'
    f"{esc(DEMO_MODEL_LABEL)}</span>"
)
CAUSE_CHIP = (
    "text-xs font-medium rounded px-1.5 py-0.5 bg-indigo-50 text-indigo-700 dark:bg-indigo-500/20 dark:text-indigo-200"
)


def message_header(m: MessagePublic, *, with_role: bool = False) -> str:
    """A message's header, in a thread and on a run page: sender (and its role, where `with_role`
    and it differs), the action that wrote it, time, tokens, cost and the demo-model label."""
    parts = [f'<b class="text-sm">{esc(m.sender)}</b>']
    if with_role and m.role != m.sender:
        parts.append(f'<span class="text-xs text-slate-500">{esc(m.role)}</span>')
    if m.cause_by:
        parts.append(f'<span class="{CAUSE_CHIP}">{esc(m.cause_by)}</span>')
    parts.append(
        f'<span class="text-xs text-slate-400" title="{esc(full_time(m.created_at))}">{esc(when(m.created_at))}</span>'
    )
    if m.prompt_tokens or m.completion_tokens:
        tokens = f"{m.prompt_tokens:,} + {m.completion_tokens:,} tokens"
        parts.append(f'<span class="text-xs text-slate-400" title="prompt + completion">{esc(tokens)}</span>')
    if m.cost:
        parts.append(f'<span class="text-xs text-slate-400">{esc(money(m.cost))}</span>')
    if m.metadata.get("demo_model") and m.role != "user":
        parts.append(DEMO_TAG)
    return f'<div class="flex flex-wrap items-center gap-x-2 gap-y-1">{"".join(parts)}</div>'


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def json_error_text(exc: json.JSONDecodeError) -> str:
    return f"Not valid JSON — line {exc.lineno}, column {exc.colno}: {exc.msg}"
