"""Input checks every aggregate shares: what a database (and a JSON reply) can hold as given.

The same input must be a clear 422 on SQLite and PostgreSQL alike, never stored on one and a 500
on the other, and never stored in a form a later read cannot render.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator

from core.errors import InvalidInput

# JSON replies are rendered with orjson, which refuses integers outside 64 bits; jsonb too.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
# Version numbers, lock versions and thread positions are INTEGER columns (32-bit on PostgreSQL).
MAX_INT32 = 2**31 - 1
# Deepest nesting of stored JSON: orjson (every JSON reply) refuses more than 255 levels, and
# nobody's context or config needs more than a few.
MAX_JSON_DEPTH = 64


def check_storable_json(value: Any, what: str) -> str:
    """`value` as JSON text, or InvalidInput if it could not be stored and read back as it is:
    NaN/Infinity, NUL characters (PostgreSQL's jsonb and text cannot hold them), integers beyond
    64 bits, nesting deeper than MAX_JSON_DEPTH, or anything that is not JSON at all."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    checked: list[Any] = []
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidInput(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep", field=what)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                checked.extend(item.keys())
        else:
            checked.append(item)
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}", field=what) from exc
    for item in checked:
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput(f"{what} must not contain NUL characters", field=what)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                raise InvalidInput(f"{what} holds an integer outside the 64-bit range", field=what)
        # PostgreSQL's jsonb keeps numbers as exact decimals and hands 1e300 back as a
        # 301-digit integer, which no JSON reply can then carry.
        elif isinstance(item, float) and not MIN_INT <= item <= MAX_INT:
            raise InvalidInput(f"{what} holds a number outside the 64-bit range", field=what)
    return text


def check_text(value: str, what: str) -> str:
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL characters", field=what)
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# For pydantic request models: plain text that every database can store.
NoNul = AfterValidator(_no_nul)
SafeStr = Annotated[str, NoNul]
