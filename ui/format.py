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


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def json_error_text(exc: json.JSONDecodeError) -> str:
    return f"Not valid JSON — line {exc.lineno}, column {exc.colno}: {exc.msg}"
