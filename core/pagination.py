"""Keyset pagination: opaque cursors and the limit rule shared by every list.

A cursor encodes the sort key of the last item of a page (e.g. `(created_at, id)` or a `seq`),
so the next page is an index range scan that costs the same at any depth — never an OFFSET.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from core.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1:
        raise InvalidInput("limit must be at least 1", limit=limit)
    return min(limit, MAX_LIMIT)


def encode_cursor(*key: Any) -> str:
    raw = json.dumps([str(part) if not isinstance(part, int | float) else part for part in key])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key parts of a cursor made by `encode_cursor`; a malformed cursor is InvalidInput."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", cursor=cursor) from exc
    if not isinstance(parts, list) or len(parts) != arity:
        raise InvalidInput("malformed cursor", cursor=cursor)
    return parts
