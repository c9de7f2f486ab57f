"""Agent message threads: append, keyset pages both ways, a run's transcript, full-text search.

Rules (SPEC §2, §5, §6):
- A message belongs to one agent (and its workspace), optionally to a run of that workspace.
  `seq` numbers an agent's thread 1, 2, 3...: max+1 taken under the database-wide write lock
  (storage/db.py), so two writers can never take the same number.
- Content is non-blank text of at most `max_content_chars`; metadata is a JSON object of at
  most MAX_METADATA_BYTES. Everything is checked before anything is written.
- Appending writes an `agent_message` event (payload {"message": <MessagePublic>, "actor": ...})
  in the same transaction: the message and its event exist together or not at all.
- A thread is paged on the unique (agent_id, seq) index: newest first with `before`, oldest
  first with `after`; a run's transcript on (run_id, created_at, id). Never OFFSET.
- Search is per workspace, over the FTS objects of migration 006 (SQLite FTS5 / PostgreSQL
  GIN on to_tsvector('simple', content)). A query is a list of words that must all appear; the
  user's text is never parsed as query syntax, so operators or stray quotes cannot break it.
  SQLite indexes new messages in batches, not each in its own transaction (migration 015): a
  search also matches the messages still queued (indexed for that read only, in a temporary
  table), so it finds every committed message without ever writing or waiting for a writer.
"""

from __future__ import annotations

import builtins
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pydantic_core
import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op
from sqlmodel import Session, col, func, select

from core.agents import get_agent_row
from core.db import Database
from core.errors import InvalidInput, NotFound, TooLarge
from core.events import LOG_HEAD, EventType, append_event, log_head_read
from core.pagination import clamp_limit, decode_seq_cursor, decode_time_id_cursor, encode_cursor
from core.schemas import Page
from core.validation import MAX_INT32, check_storable_json
from storage.db import load_json
from storage.models import AgentInstance, AgentMessage, Run, Workspace
from storage.types import utcnow

DEFAULT_MAX_CONTENT_CHARS = 100_000
MAX_METADATA_BYTES = 64 * 1024
MAX_QUERY_CHARS = 1000
MAX_QUERY_TERMS = 32
FTS_TABLE = "agent_messages_fts"  # created by migrations/versions/006_message_search.py
# SQLite: rowids of messages not yet in FTS_TABLE (migrations/versions/015_search_index_pending.py).
FTS_PENDING_TABLE = "agent_messages_fts_pending"
# Messages a process writes before it indexes the pending ones (one FTS5 segment per batch).
DEFAULT_SEARCH_INDEX_BATCH = 256
# SQLite: a read connection's own temporary index of the pending messages, for one search.
FTS_UNINDEXED_TABLE = "agent_messages_fts_unindexed"


class MessageCreate(BaseModel):
    """What a person or client sends to an agent (the content limit is the service's)."""

    content: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessagePublic(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    agent_id: uuid.UUID
    run_id: uuid.UUID | None
    seq: int
    sender: str
    role: str
    content: str
    cause_by: str
    send_to: list[str]
    metadata: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    cost: float
    created_at: datetime

    @classmethod
    def from_row(cls, row: AgentMessage) -> MessagePublic:
        return cls(
            id=row.id,
            workspace_id=row.workspace_id,
            agent_id=row.agent_id,
            run_id=row.run_id,
            seq=row.seq,
            sender=row.sender,
            role=row.role,
            content=row.content,
            cause_by=row.cause_by,
            send_to=row.send_to,
            metadata=row.meta,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cost=row.cost,
            created_at=row.created_at,
        )


# The columns of a MessagePublic, named as its fields (the table's `metadata` column is `meta` on
# the ORM class only because SQLAlchemy reserves that attribute name).
_MESSAGES: sa.Table = AgentMessage.__table__  # type: ignore[attr-defined]
# `id` first, then the fields after workspace_id and agent_id (which every row of a page shares).
_ROW_NAMES = [name for name in MessagePublic.model_fields if name not in ("workspace_id", "agent_id")]
assert _ROW_NAMES[0] == "id" and list(MessagePublic.model_fields)[1:3] == ["workspace_id", "agent_id"]
_ROW_COLUMNS = [_MESSAGES.c[name] for name in _ROW_NAMES]
# On SQLite these are stored as text (32 hex digits, JSON, "YYYY-MM-DD HH:MM:SS.ffffff" in UTC): a page
# reads them as that text, not converted into UUIDs, dicts and datetimes only to be encoded again.
_STORED_AS_TEXT = {"id", "run_id", "send_to", "metadata", "created_at"}
_STORED_TEXT_COLUMNS = [
    sa.type_coerce(column, sa.String).label(column.name) if column.name in _STORED_AS_TEXT else column
    for column in _ROW_COLUMNS
]


def _encode_stored_rows(agent: _AgentKey, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """SQLite rows of `_STORED_TEXT_COLUMNS` as MessagePublic's JSON values: the JSON columns are
    embedded as stored (orjson.Fragment), ids and times reformatted as pydantic writes them. A
    test holds this equal to the validated page (tests/test_write_path.py)."""
    workspace_id, agent_id = str(agent.workspace_id), str(agent.id)
    return [
        {
            "id": _dashed(id_hex),
            "workspace_id": workspace_id,
            "agent_id": agent_id,
            "run_id": None if run_hex is None else _dashed(run_hex),
            "seq": seq,
            "sender": sender,
            "role": role,
            "content": content,
            "cause_by": cause_by,
            "send_to": _stored_json(send_to),
            "metadata": _stored_json(metadata),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost": cost,
            "created_at": _utc_iso(created_at),
        }
        for (
            id_hex,
            run_hex,
            seq,
            sender,
            role,
            content,
            cause_by,
            send_to,
            metadata,
            prompt_tokens,
            completion_tokens,
            cost,
            created_at,
        ) in rows
    ]


def _stored_json(text: str) -> orjson.Fragment:
    """A JSON column's stored text, to embed as it is. Rows imported before bundle lines were
    checked may hold NaN or Infinity, which JSON has not: those (and any text merely mentioning
    them) are read and written again with null in their place, so a page is always JSON."""
    if "NaN" in text or "Infinity" in text:
        return orjson.Fragment(pydantic_core.to_json(load_json(text), inf_nan_mode="null"))
    return orjson.Fragment(text)


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _utc_iso(stored: str) -> str:
    """'2026-01-02 03:04:05.120000' (naive UTC, as stored) as pydantic writes the aware datetime:
    '2026-01-02T03:04:05.120000Z', without a fraction of zero."""
    text = stored.replace(" ", "T", 1)
    return (text[:-7] if text.endswith(".000000") else text) + "Z"


def thread_cursor(seq: int) -> str:
    """The cursor of a thread position: `after=thread_cursor(0)` walks from the first message,
    `after=thread_cursor(m.seq)` resumes after a message already shown (e.g. from an event)."""
    return encode_cursor(seq)


class MessageService:
    def __init__(
        self,
        db: Database,
        max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
        search_index_batch: int = DEFAULT_SEARCH_INDEX_BATCH,
    ) -> None:
        self.db = db
        self.max_content_chars = max_content_chars
        self.search_index_batch = search_index_batch
        # Messages this process wrote since it last indexed. Only touched inside write
        # transactions, which SQLite serializes per process (storage/db.py): no lock of its own.
        self._unindexed = 0

    # -- writing ---------------------------------------------------------------------------
    def append(
        self,
        agent_id: uuid.UUID,
        content: str,
        *,
        sender: str = "user",
        role: str = "user",
        metadata: Any = None,
        run_id: uuid.UUID | None = None,
        cause_by: str = "",
        send_to: Any = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        actor: str = "user",
        scope: uuid.UUID | None = None,
    ) -> MessagePublic:
        """Append a message to the agent's thread in its own write transaction."""
        return self.append_with_status(
            agent_id,
            content,
            sender=sender,
            role=role,
            metadata=metadata,
            run_id=run_id,
            cause_by=cause_by,
            send_to=send_to,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            actor=actor,
            scope=scope,
        )[0]

    def append_with_status(
        self,
        agent_id: uuid.UUID,
        content: str,
        *,
        sender: str = "user",
        role: str = "user",
        metadata: Any = None,
        run_id: uuid.UUID | None = None,
        cause_by: str = "",
        send_to: Any = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        actor: str = "user",
        scope: uuid.UUID | None = None,
    ) -> tuple[MessagePublic, str]:
        """`append`, and the agent's status as the same transaction saw it (the runtime decides
        whether the agent answers without reading the agent again)."""
        fields = self._check(content, sender, role, metadata, cause_by, send_to, prompt_tokens, completion_tokens, cost)
        with self.db.write() as session:
            agent = _agent_key(session, agent_id, scope, with_thread_head=True)
            message = _insert(session, agent, fields, run_id, actor)
            self._index_in_batches(session)
            return message, agent.status

    def append_in(
        self,
        session: Session,
        agent: AgentInstance | uuid.UUID,
        content: str,
        *,
        sender: str = "user",
        role: str = "user",
        metadata: Any = None,
        run_id: uuid.UUID | None = None,
        cause_by: str = "",
        send_to: Any = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        actor: str = "user",
        scope: uuid.UUID | None = None,
        message_id: uuid.UUID | None = None,
    ) -> MessagePublic:
        """`append` inside the caller's write transaction (the runtime records a reply and a
        status change together). `agent` is the agent's row or id. `message_id`: the runtime's
        deterministic id, so a replayed round stores each message once (see `exists_in`)."""
        fields = self._check(content, sender, role, metadata, cause_by, send_to, prompt_tokens, completion_tokens, cost)
        if isinstance(agent, AgentInstance):
            if scope is not None and agent.workspace_id != scope:
                raise NotFound("agent", agent.id)
        else:
            agent = get_agent_row(session, agent, scope)
        message = _insert(session, agent, fields, run_id, actor, message_id)
        self._index_in_batches(session)
        return message

    def _index_in_batches(self, session: Session) -> None:
        """SQLite: after every `search_index_batch` messages, index the pending ones in this
        transaction (a search matches what is left on its own, see `search`)."""
        if self.db.dialect != "sqlite":
            return
        self._unindexed += 1
        if self._unindexed >= self.search_index_batch:
            index_pending_messages(session.connection())
            self._unindexed = 0

    def exists_in(self, session: Session, message_id: uuid.UUID) -> bool:
        return session.get(AgentMessage, message_id) is not None

    def _check(
        self,
        content: Any,
        sender: Any,
        role: Any,
        metadata: Any,
        cause_by: Any,
        send_to: Any,
        prompt_tokens: Any,
        completion_tokens: Any,
        cost: Any,
    ) -> dict[str, Any]:
        """Every field of a new message, validated; raises before anything is written."""
        if not isinstance(content, str) or not content.strip():
            raise InvalidInput("message content must not be empty")
        if len(content) > self.max_content_chars:
            raise TooLarge(
                f"message is {len(content)} characters; the limit is {self.max_content_chars}",
                size=len(content),
                limit=self.max_content_chars,
            )
        if "\x00" in content:  # PostgreSQL text cannot hold NUL; refuse it on every database
            raise InvalidInput("message content must not contain NUL characters")
        return {
            "content": content,
            "sender": _short_text("sender", sender, 200, required=True),
            "role": _short_text("role", role, 32, required=True),
            "cause_by": _short_text("cause_by", cause_by, 300, required=False),
            "meta": _check_metadata({} if metadata is None else metadata),
            "send_to": _check_send_to([] if send_to is None else send_to),
            "prompt_tokens": _count("prompt_tokens", prompt_tokens),
            "completion_tokens": _count("completion_tokens", completion_tokens),
            "cost": _cost(cost),
        }

    # -- reading ---------------------------------------------------------------------------
    def get(self, message_id: uuid.UUID, scope: uuid.UUID | None = None) -> MessagePublic:
        with self.db.read() as session:
            row = session.get(AgentMessage, message_id)
            if row is None or (scope is not None and row.workspace_id != scope):
                raise NotFound("message", message_id)
            return MessagePublic.from_row(row)

    def count(self, agent_id: uuid.UUID, scope: uuid.UUID | None = None) -> int:
        with self.db.read() as session:
            get_agent_row(session, agent_id, scope)
            stmt = select(func.count()).select_from(AgentMessage).where(AgentMessage.agent_id == agent_id)
            return int(session.exec(stmt).one())

    def list(
        self,
        agent_id: uuid.UUID,
        scope: uuid.UUID | None = None,
        limit: int | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> Page[MessagePublic]:
        """One page of the agent's thread: newest first (pass `next_cursor` back as `before` for
        older messages), or with `after` oldest first from that point (pass `next_cursor` back
        as `after`). A range scan of the unique (agent_id, seq) index at any depth."""
        items, next_cursor = self._thread_page(agent_id, scope, limit, before, after)
        # The rows come from our own table, already typed: no second validation.
        return Page[MessagePublic](
            items=[MessagePublic.model_construct(**item) for item in items], next_cursor=next_cursor
        )

    def list_json(
        self,
        agent_id: uuid.UUID,
        scope: uuid.UUID | None = None,
        limit: int | None = None,
        before: str | None = None,
        after: str | None = None,
    ) -> bytes:
        """`list`, already encoded as the JSON of a Page[MessagePublic] (the API's answer), without
        building a model per message. On SQLite the page is written from the stored text itself
        (see `_encode_stored_rows`); elsewhere the typed rows go straight to pydantic's encoder."""
        if self.db.dialect == "sqlite":
            agent, rows, next_cursor = self._thread_rows(agent_id, scope, limit, before, after, _STORED_TEXT_COLUMNS)
            return orjson.dumps({"items": _encode_stored_rows(agent, rows), "next_cursor": next_cursor})
        items, next_cursor = self._thread_page(agent_id, scope, limit, before, after)
        return pydantic_core.to_json({"items": items, "next_cursor": next_cursor})

    def _thread_page(
        self,
        agent_id: uuid.UUID,
        scope: uuid.UUID | None,
        limit: int | None,
        before: str | None,
        after: str | None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        agent, rows, next_cursor = self._thread_rows(agent_id, scope, limit, before, after, _ROW_COLUMNS)
        # The agent and workspace are the page's, not read (and converted) again for every row.
        # (Keys in the model's field order: the JSON is the same, byte for byte.)
        ws, ag, rest = agent.workspace_id, agent.id, _ROW_NAMES[1:]
        items = [
            {"id": row[0], "workspace_id": ws, "agent_id": ag, **dict(zip(rest, row[1:], strict=True))} for row in rows
        ]
        return items, next_cursor

    def _thread_rows(
        self,
        agent_id: uuid.UUID,
        scope: uuid.UUID | None,
        limit: int | None,
        before: str | None,
        after: str | None,
        columns: builtins.list[Any],
    ) -> tuple[_AgentKey, Sequence[sa.Row[Any]], str | None]:
        """The agent's key, a page of the thread's rows of `columns` (which must include `seq`),
        and the cursor of the next page (None at the end)."""
        if before is not None and after is not None:
            raise InvalidInput("give either 'before' or 'after', not both")
        limit = clamp_limit(limit)
        seq = _MESSAGES.c.seq
        stmt = sa.select(*columns).where(_MESSAGES.c.agent_id == agent_id)
        if after is not None:
            stmt = stmt.where(seq > _seq_cursor(after)).order_by(seq)
        else:
            if before is not None:
                stmt = stmt.where(seq < _seq_cursor(before))
            stmt = stmt.order_by(seq.desc())
        with self.db.read() as session:
            agent = _agent_key(session, agent_id, scope)
            rows = session.connection().execute(stmt.limit(limit + 1)).all()
        # One row more than asked for says whether another page follows.
        next_cursor = encode_cursor(rows[limit - 1].seq) if len(rows) > limit else None
        return agent, rows[:limit], next_cursor

    def list_run(
        self,
        run_id: uuid.UUID,
        scope: uuid.UUID | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[MessagePublic]:
        """A run's messages across its agents, oldest first, keyset on (created_at, id)."""
        limit = clamp_limit(limit)
        stmt = select(AgentMessage).where(AgentMessage.run_id == run_id)
        if cursor:
            stmt = stmt.where(_time_key() > _time_id_cursor(cursor))
        stmt = stmt.order_by(col(AgentMessage.created_at), col(AgentMessage.id)).limit(limit + 1)
        with self.db.read() as session:
            run = session.get(Run, run_id)
            if run is None or (scope is not None and run.workspace_id != scope):
                raise NotFound("run", run_id)
            rows = list(session.exec(stmt))
        return _time_page(rows, limit)

    def search(
        self,
        workspace_id: uuid.UUID,
        query: str,
        limit: int | None = None,
        cursor: str | None = None,
        scope: uuid.UUID | None = None,
    ) -> Page[MessagePublic]:
        """Messages of the workspace containing every word of `query`, newest first, keyset on
        (created_at, id). A query without any word finds nothing."""
        limit = clamp_limit(limit)
        if scope is not None and workspace_id != scope:
            raise NotFound("workspace", workspace_id)
        terms = _search_terms(query)
        after = _time_id_cursor(cursor) if cursor else None  # a malformed cursor is 422 in any case
        with self.db.read() as session:
            if session.get(Workspace, workspace_id) is None:
                raise NotFound("workspace", workspace_id)
            if not terms:
                return Page[MessagePublic](items=[], next_cursor=None)
            if self.db.dialect == "sqlite":
                _index_queued_for_this_read(session.connection())
            stmt = select(AgentMessage).where(*_search_where(self.db.dialect, workspace_id, terms))
            if after is not None:
                stmt = stmt.where(_time_key() < after)
            stmt = stmt.order_by(col(AgentMessage.created_at).desc(), col(AgentMessage.id).desc()).limit(limit + 1)
            rows = list(session.exec(stmt))
        return _time_page(rows, limit)


def index_pending_messages(connection: sa.Connection) -> int:
    """SQLite: put the messages queued by migration 015's insert trigger into the full-text index,
    in the caller's write transaction; the number indexed. No-op on other databases."""
    if connection.dialect.name != "sqlite":
        return 0
    indexed = connection.execute(_INDEX_PENDING).rowcount
    connection.execute(_CLEAR_PENDING)
    return int(indexed or 0)


def _index_queued_for_this_read(connection: sa.Connection) -> None:
    """SQLite: the messages still queued for the index, indexed in this connection's own temporary
    FTS5 table (same tokenizer) for the search that follows in the same read transaction. A search
    never writes the database, so it never waits for a writer; it sees the same snapshot as the
    index, in which every message is either indexed or queued."""
    connection.execute(_CREATE_UNINDEXED)
    connection.execute(_CLEAR_UNINDEXED)
    connection.execute(_FILL_UNINDEXED)


_QUEUED = f"SELECT m.rowid, m.content FROM {FTS_PENDING_TABLE} p JOIN agent_messages m ON m.rowid = p.rowid"
_INDEX_PENDING = sa.text(f"INSERT INTO {FTS_TABLE}(rowid, content) {_QUEUED}")
_CLEAR_PENDING = sa.text(f"DELETE FROM {FTS_PENDING_TABLE}")
_CREATE_UNINDEXED = sa.text(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{FTS_UNINDEXED_TABLE} USING fts5(content)")
_CLEAR_UNINDEXED = sa.text(f"DELETE FROM temp.{FTS_UNINDEXED_TABLE}")
_FILL_UNINDEXED = sa.text(f"INSERT INTO temp.{FTS_UNINDEXED_TABLE}(rowid, content) {_QUEUED}")


# -- writing helpers -------------------------------------------------------------------------
def _insert(
    session: Session,
    agent: AgentInstance | _AgentKey,
    fields: dict[str, Any],
    run_id: uuid.UUID | None,
    actor: str,
    message_id: uuid.UUID | None = None,
) -> MessagePublic:
    # Prepared statements and plain rows, not ORM objects: this runs for every message an agent
    # or a client writes, and the unit of work cost more than the SQL.
    if run_id is not None:
        run = session.get(Run, run_id)
        if run is None or run.workspace_id != agent.workspace_id:
            raise NotFound("run", run_id)
    # Safe as max+1: writers are serialized database-wide (storage/db.py); a lookup of the last
    # entry of the unique (agent_id, seq) index, whatever the thread's length.
    current = None
    if isinstance(agent, _AgentKey):  # read with the agent, in this transaction
        current = agent.thread_head
        if agent.log_head is not None:
            log_head_read(session, agent.log_head)
    if current is None:
        current = session.connection().execute(_THREAD_HEAD, {"agent_id": agent.id}).scalar()
    now = utcnow()
    values = {
        # A replayed round writes its messages with the same ids (core/runtime/durable.py).
        "id": message_id or uuid.uuid4(),
        "workspace_id": agent.workspace_id,
        "agent_id": agent.id,
        "run_id": run_id,
        "seq": (current or 0) + 1,
        "created_at": now,
        "updated_at": now,
        "content": fields["content"],
        "sender": fields["sender"],
        "role": fields["role"],
        "cause_by": fields["cause_by"],
        "send_to": fields["send_to"],
        "metadata": fields["meta"],
        "prompt_tokens": fields["prompt_tokens"],
        "completion_tokens": fields["completion_tokens"],
        "cost": fields["cost"],
    }
    session.flush()  # anything the caller added first (e.g. the run) goes in before the message
    session.connection().execute(_MESSAGES.insert(), values)
    # Every field was checked by MessageService._check: no second validation.
    public = MessagePublic.model_construct(**{name: values[name] for name in MessagePublic.model_fields})
    append_event(
        session,
        EventType.AGENT_MESSAGE,
        agent.workspace_id,
        {"message": public.model_dump(mode="json"), "actor": actor},
        agent_id=agent.id,
        run_id=run_id,
    )
    return public


@dataclass(frozen=True)
class _AgentKey:
    """What writing a message needs of its agent, read without loading the ORM row."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    status: str
    # When read with the agent in a write: the last seq of the agent's thread (0: empty), and of
    # the event log.
    thread_head: int | None = None
    log_head: int | None = None


def _agent_key(
    session: Session, agent_id: uuid.UUID, scope: uuid.UUID | None, *, with_thread_head: bool = False
) -> _AgentKey:
    """The agent's key; `with_thread_head`: and the last seq of its thread and of the event log, in
    the same statement (a message write needs all three: two statements fewer per message)."""
    statement = _AGENT_KEY_AND_HEADS if with_thread_head else _AGENT_KEY
    row = session.connection().execute(statement, {"id": agent_id}).first()
    if row is None or (scope is not None and row.workspace_id != scope):
        raise NotFound("agent", agent_id)
    if with_thread_head:
        return _AgentKey(agent_id, row.workspace_id, row.status, thread_head=row[2], log_head=row[3])
    return _AgentKey(agent_id, row.workspace_id, row.status)


_AGENTS: sa.Table = AgentInstance.__table__  # type: ignore[attr-defined]
_AGENT_KEY = sa.select(_AGENTS.c.workspace_id, _AGENTS.c.status).where(_AGENTS.c.id == sa.bindparam("id"))
_THREAD_HEAD = sa.select(sa.func.max(_MESSAGES.c.seq)).where(_MESSAGES.c.agent_id == sa.bindparam("agent_id"))
_AGENT_KEY_AND_HEADS = _AGENT_KEY.add_columns(
    sa.select(sa.func.coalesce(sa.func.max(_MESSAGES.c.seq), 0))
    .where(_MESSAGES.c.agent_id == _AGENTS.c.id)
    .scalar_subquery(),
    LOG_HEAD.scalar_subquery(),
)


def _short_text(name: str, value: Any, max_chars: int, *, required: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if required and not value.strip():
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > max_chars:
        raise InvalidInput(f"{name} is longer than {max_chars} characters")
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters")
    return value


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise InvalidInput(f"metadata must be a JSON object, not {type(metadata).__name__}")
    encoded = check_storable_json(metadata, "metadata")
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise TooLarge(f"metadata is larger than {MAX_METADATA_BYTES} bytes", limit=MAX_METADATA_BYTES)
    # The JSON round trip is what is stored: return it, so the reply equals a later read.
    result: dict[str, Any] = json.loads(encoded)
    return result


def _check_send_to(send_to: Any) -> list[str]:
    if isinstance(send_to, set | frozenset):  # MetaGPT's Message.send_to is a set
        send_to = sorted(send_to, key=str)
    if not isinstance(send_to, list | tuple) or not all(isinstance(s, str) for s in send_to):
        raise InvalidInput("send_to must be a list of names")
    return [_short_text("send_to entry", s, 300, required=True) for s in send_to]


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative integer")
    return value


def _cost(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInput("cost must be a non-negative number")
    return float(value)


# -- reading helpers -------------------------------------------------------------------------
def _seq_cursor(cursor: str) -> int:
    return decode_seq_cursor(cursor, MAX_INT32)


def _time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    return decode_time_id_cursor(cursor)


def _time_key() -> Any:
    # A row value, not `a > x OR (a = x AND b > y)`: both databases turn a row-value comparison
    # into an index range bound, while the OR form scans the run's rows from its first message.
    return sa.tuple_(col(AgentMessage.created_at), col(AgentMessage.id))


def _time_page(rows: list[AgentMessage], limit: int) -> Page[MessagePublic]:
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
    return Page[MessagePublic](items=[MessagePublic.from_row(r) for r in rows[:limit]], next_cursor=next_cursor)


def _search_terms(query: Any) -> list[str]:
    """The words of a user's query: whitespace-separated pieces that hold a letter or digit."""
    if not isinstance(query, str):
        raise InvalidInput("search query must be text")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"search query is longer than {MAX_QUERY_CHARS} characters")
    terms = [t for t in query.replace("\x00", " ").split() if any(ch.isalnum() for ch in t)]
    if len(terms) > MAX_QUERY_TERMS:
        raise InvalidInput(f"search query has more than {MAX_QUERY_TERMS} words")
    return terms


def _search_where(dialect: str, workspace_id: uuid.UUID, terms: list[str]) -> list[Any]:
    """WHERE clauses: in the workspace, and the content contains every term (via migration 006)."""
    workspace = col(AgentMessage.workspace_id)
    if dialect == "sqlite":
        # Each term becomes an FTS5 string ("..." with quotes doubled), so nothing the user types
        # is read as an operator (OR, NEAR, *, ^, column filters); juxtaposed strings mean AND.
        match: sa.BindParameter[str] = sa.bindparam(
            "fts_query", " ".join('"' + term.replace('"', '""') + '"' for term in terms)
        )
        # The index, and the messages still queued for it (see _index_queued_for_this_read).
        hits: sa.CompoundSelect[Any] = sa.union_all(
            sa.select(sa.literal_column("rowid"))
            .select_from(sa.table(FTS_TABLE))
            .where(sa.literal_column(FTS_TABLE).op("MATCH")(match)),
            sa.select(sa.literal_column("rowid"))
            .select_from(sa.table(FTS_UNINDEXED_TABLE, schema="temp"))
            .where(sa.literal_column(FTS_UNINDEXED_TABLE).op("MATCH")(match)),
        )
        # Without statistics SQLite would walk the workspace's whole index and probe the hits;
        # a unary + makes the column unindexable, so the hits drive (one rowid lookup each).
        column = _MESSAGES.c.workspace_id
        unindexed = UnaryExpression(column, operator=custom_op("+"), type_=column.type)
        return [sa.literal_column("agent_messages.rowid").in_(hits), unindexed == workspace_id]
    if dialect == "postgresql":
        # The config is a literal, not a parameter: the expression must equal the index's.
        config: sa.ColumnClause[Any] = sa.literal_column("'simple'::regconfig")
        document = sa.func.to_tsvector(config, col(AgentMessage.content))
        query = sa.func.plainto_tsquery(config, sa.bindparam("fts_query", " ".join(terms)))
        return [workspace == workspace_id, document.bool_op("@@")(query)]
    raise InvalidInput(f"message search is not available on {dialect}")
