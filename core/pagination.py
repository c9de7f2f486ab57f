"""Keyset pagination: opaque cursors and the limit rule shared by every list.

A cursor encodes the sort key of the last item of a page (e.g. `(created_at, id)` or a `seq`),
so the next page is an index range scan that costs the same at any depth — never an OFFSET.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from core.errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR_CHARS = 1000


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
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidInput("malformed cursor", cursor=str(cursor)[:100])
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeError, binascii.Error, RecursionError) as exc:
        raise InvalidInput("malformed cursor", cursor=cursor[:100]) from exc
    if not isinstance(parts, list) or len(parts) != arity:
        raise InvalidInput("malformed cursor", cursor=cursor[:100])
    return parts


# The one codec for the two kinds of keys every list uses. A cursor that is not one of ours —
# wrong shape, a naive or out-of-range time, a bad id, a number out of range — is InvalidInput
# (422) everywhere, never a database error.
MAX_SEQ = 2**63 - 1
MIN_YEAR, MAX_YEAR = 1970, 9998


def decode_seq_cursor(cursor: str, maximum: int = MAX_SEQ) -> int:
    """A cursor made by `encode_cursor(n)` for an integer key 0..maximum."""
    (seq,) = decode_cursor(cursor, 1)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= maximum:
        raise InvalidInput("malformed cursor", cursor=cursor[:100])
    return seq


def decode_time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A cursor made by `encode_cursor(aware_datetime, uuid)`: the time in UTC and the id."""
    when, ident = decode_cursor(cursor, 2)
    try:
        parsed = datetime.fromisoformat(when) if isinstance(when, str) else None
        if parsed is None or parsed.tzinfo is None:  # ours carry UTC; a naive time fails in SQL
            raise ValueError("not an aware time")
        parsed = parsed.astimezone(UTC)
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            raise ValueError("time out of range")
        return parsed, uuid.UUID(str(ident))
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput("malformed cursor", cursor=cursor[:100]) from exc
