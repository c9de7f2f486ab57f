"""Agent context: a JSON object with an append-only version history (SPEC §4).

Rules:
- Every agent has exactly one context; version 1 is written with the agent.
- An update is a full replacement (`data`) or an RFC 7396 merge patch (`patch`), optionally with
  `expected_version`: if that is not the current version nothing changes (StaleVersion, 409).
  The result must be a JSON object within MAX_CONTEXT_BYTES that every database stores as given
  (no NaN, no NUL character).
- Each accepted update writes version n+1 as a full snapshot with author and reason; rollback to
  k writes version n+1 whose data equals version k. No version is ever modified or deleted.
- Every new version writes an `agent_context_updated` event in the same transaction.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import json_merge_patch
import jsonpatch
import sqlalchemy as sa
from pydantic import BaseModel, Field, StringConstraints, model_validator
from sqlmodel import Session, col, select

from core.db import Database
from core.errors import InvalidInput, NotFound, StaleVersion, TooLarge
from core.events import EventType, append_event
from core.pagination import clamp_limit, decode_seq_cursor, encode_cursor
from core.schemas import Page, Public
from core.validation import MAX_INT32, NoNul, check_storable_json, check_text
from storage.models import AgentContext, AgentContextVersion, AgentInstance
from storage.types import utcnow

MAX_CONTEXT_BYTES = 1024 * 1024

Reason = Annotated[str, StringConstraints(max_length=2000), NoNul]


class ContextPublic(BaseModel):
    agent_id: uuid.UUID
    version: int
    data: dict[str, Any]
    updated_at: datetime


class ContextUpdate(BaseModel):
    """Exactly one of `data` (replace) or `patch` (RFC 7396 merge patch)."""

    data: dict[str, Any] | None = None
    patch: dict[str, Any] | None = None
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT32)
    reason: Reason = ""

    @model_validator(mode="after")
    def _one_of(self) -> ContextUpdate:
        if (self.data is None) == (self.patch is None):
            raise ValueError("give exactly one of 'data' (replace) or 'patch' (merge patch)")
        return self


class ContextRollback(BaseModel):
    version: int = Field(ge=1, le=MAX_INT32)
    reason: Reason = ""
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT32)


class ContextVersionSummary(Public):
    version: int
    author: str
    reason: str
    created_at: datetime


class ContextVersionPublic(ContextVersionSummary):
    data: dict[str, Any]


class ContextDiff(BaseModel):
    from_version: int
    to_version: int
    # RFC 6902 operations that turn `from_version`'s data into `to_version`'s.
    operations: list[dict[str, Any]]
    from_data: dict[str, Any]
    to_data: dict[str, Any]


UpdateKind = Literal["created", "replace", "patch", "rollback"]


def _check_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput(f"context must be a JSON object, not {type(data).__name__}")
    text = check_storable_json(data, "context")
    size = len(text.encode())
    if size > MAX_CONTEXT_BYTES:
        raise TooLarge(f"context is {size} bytes; the limit is {MAX_CONTEXT_BYTES}", size=size)
    # What is stored is the JSON round trip (tuples become lists, keys strings): return that, so
    # the reply to a write equals every later read of the version.
    result: dict[str, Any] = json.loads(text)
    return result


def create_initial_context(session: Session, agent: AgentInstance, data: Any, actor: str) -> AgentContext:
    """Version 1 of a new agent's context, inside the agent's creation transaction."""
    data = _check_object(data)
    context = AgentContext(agent_id=agent.id, current_version=1, data=data)
    session.add(context)
    session.flush()
    session.add(AgentContextVersion(context_id=context.id, version=1, data=data, author=actor, reason="created"))
    return context


class ContextService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, agent_id: uuid.UUID, scope: uuid.UUID | None = None) -> ContextPublic:
        with self.db.read() as session:
            context = _context(session, agent_id, scope)
            return ContextPublic(
                agent_id=agent_id, version=context.current_version, data=context.data, updated_at=context.updated_at
            )

    def update(
        self, agent_id: uuid.UUID, change: ContextUpdate, actor: str = "system", scope: uuid.UUID | None = None
    ) -> ContextPublic:
        with self.db.write() as session:
            context = _context(session, agent_id, scope)
            _check_expected(context, change.expected_version)
            if change.patch is not None:
                new_data = json_merge_patch.merge(json.loads(json.dumps(context.data)), change.patch)
                kind: UpdateKind = "patch"
            else:
                new_data, kind = change.data, "replace"
            return self._write_version(session, context, new_data, actor, change.reason, kind)

    def rollback(
        self, agent_id: uuid.UUID, request: ContextRollback, actor: str = "system", scope: uuid.UUID | None = None
    ) -> ContextPublic:
        with self.db.write() as session:
            context = _context(session, agent_id, scope)
            _check_expected(context, request.expected_version)
            target = _version(session, context, request.version)
            reason = request.reason or f"rollback to version {request.version}"
            return self._write_version(
                session, context, target.data, actor, reason, "rollback", rolled_back_to=request.version
            )

    def versions(
        self, agent_id: uuid.UUID, scope: uuid.UUID | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[ContextVersionSummary]:
        """Version list, newest first, keyset on version (the unique (context, version) index)."""
        limit = clamp_limit(limit)
        with self.db.read() as session:
            context = _context(session, agent_id, scope)
            stmt = select(AgentContextVersion).where(AgentContextVersion.context_id == context.id)
            if cursor:
                before = decode_seq_cursor(cursor, MAX_INT32)
                stmt = stmt.where(AgentContextVersion.version < before)
            stmt = stmt.order_by(col(AgentContextVersion.version).desc()).limit(limit + 1)
            rows = list(session.exec(stmt))
        items = [ContextVersionSummary.model_validate(r) for r in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1].version) if len(rows) > limit else None
        return Page[ContextVersionSummary](items=items, next_cursor=next_cursor)

    def version(self, agent_id: uuid.UUID, version: int, scope: uuid.UUID | None = None) -> ContextVersionPublic:
        with self.db.read() as session:
            context = _context(session, agent_id, scope)
            return ContextVersionPublic.model_validate(_version(session, context, version))

    def diff(
        self, agent_id: uuid.UUID, from_version: int, to_version: int, scope: uuid.UUID | None = None
    ) -> ContextDiff:
        with self.db.read() as session:
            context = _context(session, agent_id, scope)
            old = _version(session, context, from_version).data
            new = _version(session, context, to_version).data
        return ContextDiff(
            from_version=from_version,
            to_version=to_version,
            operations=list(jsonpatch.make_patch(old, new)),
            from_data=old,
            to_data=new,
        )

    def _write_version(
        self,
        session: Session,
        context: AgentContext,
        data: Any,
        actor: str,
        reason: str,
        kind: UpdateKind,
        rolled_back_to: int | None = None,
    ) -> ContextPublic:
        data = _check_object(data)
        check_text(reason, "reason")
        current = context.current_version
        new_version = current + 1
        now = utcnow()
        # Guarded like lock_version: only the writer that read `current` can move it forward.
        result = session.exec(
            sa.update(AgentContext)
            .where(col(AgentContext.id) == context.id, col(AgentContext.current_version) == current)
            .values(current_version=new_version, data=data, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise StaleVersion(current, current + 1)
        session.add(
            AgentContextVersion(context_id=context.id, version=new_version, data=data, author=actor, reason=reason)
        )
        agent = session.get_one(AgentInstance, context.agent_id)
        payload: dict[str, Any] = {
            "version": new_version,
            "previous_version": current,
            "kind": kind,
            "author": actor,
            "reason": reason,
        }
        if rolled_back_to is not None:
            payload["rolled_back_to"] = rolled_back_to
        append_event(session, EventType.AGENT_CONTEXT_UPDATED, agent.workspace_id, payload, agent_id=agent.id)
        return ContextPublic(agent_id=agent.id, version=new_version, data=data, updated_at=now)


def _context(session: Session, agent_id: uuid.UUID, scope: uuid.UUID | None) -> AgentContext:
    agent = session.get(AgentInstance, agent_id)
    if agent is None or (scope is not None and agent.workspace_id != scope):
        raise NotFound("agent", agent_id)
    context = session.exec(select(AgentContext).where(AgentContext.agent_id == agent_id)).first()
    if context is None:  # every agent is created with one; absence means a broken database
        raise NotFound("context of agent", agent_id)
    return context


def _version(session: Session, context: AgentContext, version: int) -> AgentContextVersion:
    if not 1 <= version <= MAX_INT32:  # no such version can exist (and PostgreSQL would refuse the number)
        raise NotFound("context version", version)
    row = session.exec(
        select(AgentContextVersion).where(
            AgentContextVersion.context_id == context.id, AgentContextVersion.version == version
        )
    ).first()
    if row is None:
        raise NotFound("context version", version)
    return row


def _check_expected(context: AgentContext, expected: int | None) -> None:
    if expected is not None and expected != context.current_version:
        raise StaleVersion(expected, context.current_version)
