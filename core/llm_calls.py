"""Every LLM call, inspectable (SPEC §9): the prompt a role sent, the answer it got, what it took.

The runtime's hook (core/runtime/observe.py) calls `start` when a request leaves and `finish` when
it ends; each is one short write transaction that also appends an `llm_call` event, so dashboards
show a call live as it starts and complete it when it ends, in every process. Bodies are capped
(`llm_call_max_chars` each for the request and the response; a cut one is marked and keeps its
original size), API keys never reach a row (only the messages are stored, and error texts are
scrubbed of the profile's key and of anything shaped like a bearer secret). Rows older than the
event retention period are deleted with the events.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from core.db import Database
from core.errors import InvalidInput, NotFound
from core.events import EventType, append_event
from core.pagination import clamp_limit, decode_cursor, encode_cursor
from core.schemas import Page, Public
from storage.models import AgentInstance, LlmCall, Run
from storage.types import utcnow

OUTCOMES = ("running", "ok", "error", "cancelled")
TRUNCATION_MARK = "\n\n[… truncated by AgentDeck: {n} more characters]"
PREVIEW_CHARS = 200
MAX_ERROR_CHARS = 4000
# Secrets that may appear in a provider's error text: bearer tokens, OpenAI/Anthropic-style keys.
_SECRET_SHAPES = re.compile(r"(?i)(bearer\s+)[^\s\"']+|\b(sk|pk|rk)-[A-Za-z0-9_\-]{8,}")


class LlmCallSummary(Public):
    """A call as lists and the timeline show it (no bodies; a short preview of the last prompt)."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    agent_id: uuid.UUID | None
    agent_name: str
    run_id: uuid.UUID | None
    round: int | None
    action: str
    profile: str
    model: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cost: float
    outcome: str
    error: str
    started_at: datetime
    finished_at: datetime | None
    latency_ms: float | None
    ttft_ms: float | None
    prompt_preview: str = ""


class LlmCallPublic(LlmCallSummary):
    """The whole call: the messages as sent and the response text."""

    request: list[dict[str, Any]]
    response: str
    request_truncated_from: int | None
    response_truncated_from: int | None


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` without the given secrets and without anything shaped like a key or bearer token."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _SECRET_SHAPES.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


def cap_text(text: str, limit: int) -> tuple[str, int | None]:
    """(text cut to `limit` characters with a mark, original length) or (text, None)."""
    if len(text) <= limit:
        return text, None
    mark = TRUNCATION_MARK.format(n=len(text) - limit)
    return text[:limit] + mark, len(text)


def cap_messages(messages: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Only role/name/content of each message, the contents together capped at `limit` characters.

    A message that crosses the budget is cut with a mark; later ones keep their role and an empty,
    marked content, so the shape of the conversation stays visible.
    """
    total = sum(len(_content_text(m.get("content"))) for m in messages)
    kept: list[dict[str, Any]] = []
    budget = limit
    for message in messages:
        text = _content_text(message.get("content"))
        item: dict[str, Any] = {"role": str(message.get("role", ""))[:50]}
        if message.get("name"):
            item["name"] = str(message["name"])[:200]
        if len(text) <= budget:
            item["content"] = text
            budget -= len(text)
        else:
            item["content"] = text[:budget] + TRUNCATION_MARK.format(n=len(text) - budget)
            budget = 0
        kept.append(item)
    return kept, (total if total > limit else None)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text, name the rest
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict):
                parts.append(f"[{part.get('type', 'part')}]")
        return "\n".join(parts)
    return "" if content is None else str(content)


def _preview(request: list[dict[str, Any]]) -> str:
    for message in reversed(request):
        if message.get("role") == "user":
            return " ".join(str(message.get("content", "")).split())[:PREVIEW_CHARS]
    return ""


def _summary(row: LlmCall) -> LlmCallSummary:
    summary = LlmCallSummary.model_validate(row)
    summary.prompt_preview = _preview(row.request)
    return summary


class LlmCallService:
    def __init__(self, db: Database, max_chars: int = 200_000, enabled: bool = True) -> None:
        self.db = db
        self.max_chars = max_chars
        self.enabled = enabled

    # -- recording (called by the runtime) ---------------------------------------------------
    def start(
        self,
        workspace_id: uuid.UUID,
        messages: list[dict[str, Any]],
        *,
        agent_id: uuid.UUID | None = None,
        agent_name: str = "",
        run_id: uuid.UUID | None = None,
        round: int | None = None,
        action: str = "",
        profile: str = "",
        model: str = "",
        stream: bool = False,
        started_at: datetime | None = None,
        activity: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        """Store a call that has just been sent (outcome `running`); returns its id.

        With `activity`, the agent's `agent_activity` event (payload `activity`) is appended in the
        same transaction: the runtime's "calling the LLM" costs no write of its own when recording."""
        request, truncated_from = cap_messages(messages, self.max_chars)
        started_at = started_at or utcnow()
        row = LlmCall(
            workspace_id=workspace_id,
            agent_id=agent_id,
            agent_name=agent_name[:200],
            run_id=run_id,
            round=round,
            action=action[:300],
            profile=profile[:300],
            model=model[:200],
            stream=stream,
            request=request,
            request_truncated_from=truncated_from,
            started_at=started_at,
            created_at=started_at,
        )
        with self.db.write() as session:
            session.add(row)
            if activity is not None:
                append_event(
                    session, EventType.AGENT_ACTIVITY, workspace_id, activity, agent_id=agent_id, run_id=run_id
                )
            append_event(
                session,
                EventType.LLM_CALL,
                workspace_id,
                {
                    "call_id": str(row.id),
                    "state": "started",
                    "agent_name": row.agent_name,
                    "round": round,
                    "action": row.action,
                    "model": row.model,
                    "started_at": started_at.isoformat(),
                },
                agent_id=agent_id,
                run_id=run_id,
            )
        return row.id

    def finish(
        self,
        call_id: uuid.UUID,
        outcome: str,
        *,
        response: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        error: str = "",
        secrets: tuple[str, ...] = (),
    ) -> None:
        """Complete a started call with what came back (or why nothing did)."""
        if outcome not in OUTCOMES[1:]:
            raise InvalidInput(f"unknown outcome {outcome!r}", allowed=list(OUTCOMES[1:]))
        text, truncated_from = cap_text(response, self.max_chars)
        error = redact(error, secrets)[:MAX_ERROR_CHARS]
        with self.db.write() as session:
            row = session.get(LlmCall, call_id)
            if row is None:
                raise NotFound("LLM call", call_id)
            row.outcome = outcome
            row.response = text
            row.response_truncated_from = truncated_from
            row.prompt_tokens = prompt_tokens
            row.completion_tokens = completion_tokens
            row.cost = cost
            row.finished_at = utcnow()
            row.latency_ms = latency_ms
            row.ttft_ms = ttft_ms
            row.error = error
            session.add(row)
            append_event(
                session,
                EventType.LLM_CALL,
                row.workspace_id,
                {
                    "call_id": str(row.id),
                    "state": "finished",
                    "agent_name": row.agent_name,
                    "round": row.round,
                    "action": row.action,
                    "model": row.model,
                    "outcome": outcome,
                    "latency_ms": latency_ms,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "cost": cost,
                },
                agent_id=row.agent_id,
                run_id=row.run_id,
            )

    # -- reading ---------------------------------------------------------------------------
    def get(self, call_id: uuid.UUID, scope: uuid.UUID | None = None) -> LlmCallPublic:
        with self.db.read() as session:
            row = session.get(LlmCall, call_id)
            if row is None or (scope is not None and row.workspace_id != scope):
                raise NotFound("LLM call", call_id)
            public = LlmCallPublic.model_validate(row)
            public.prompt_preview = _preview(row.request)
            return public

    def list_agent(
        self, agent_id: uuid.UUID, scope: uuid.UUID | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[LlmCallSummary]:
        """An agent's calls, newest first."""
        with self.db.read() as session:
            agent = session.get(AgentInstance, agent_id)
            if agent is None or (scope is not None and agent.workspace_id != scope):
                raise NotFound("agent", agent_id)
        return self._page(LlmCall.agent_id == agent_id, limit, cursor)

    def list_run(
        self, run_id: uuid.UUID, scope: uuid.UUID | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[LlmCallSummary]:
        """A run's calls, newest first."""
        with self.db.read() as session:
            run = session.get(Run, run_id)
            if run is None or (scope is not None and run.workspace_id != scope):
                raise NotFound("run", run_id)
        return self._page(LlmCall.run_id == run_id, limit, cursor)

    def run_timeline(
        self, run_id: uuid.UUID, scope: uuid.UUID | None = None, max_calls: int = 2000
    ) -> list[LlmCallSummary]:
        """Up to `max_calls` of a run's newest calls, oldest first, read page by page."""
        calls: list[LlmCallSummary] = []
        cursor: str | None = None
        while len(calls) < max_calls:
            page = self.list_run(run_id, scope=scope, limit=min(500, max_calls - len(calls)), cursor=cursor)
            calls.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return list(reversed(calls))

    def _page(self, where: Any, limit: int | None, cursor: str | None) -> Page[LlmCallSummary]:
        limit = clamp_limit(limit)
        stmt = select(LlmCall).where(where)
        if cursor:
            created, ident = decode_cursor(cursor, 2)
            try:
                before, before_id = datetime.fromisoformat(str(created)), uuid.UUID(str(ident))
            except (TypeError, ValueError) as exc:
                raise InvalidInput("malformed cursor") from exc
            stmt = stmt.where(sa.tuple_(col(LlmCall.created_at), col(LlmCall.id)) < (before, before_id))
        stmt = stmt.order_by(col(LlmCall.created_at).desc(), col(LlmCall.id).desc()).limit(limit + 1)
        with self.db.read() as session:
            rows = list(session.exec(stmt))
        items = [_summary(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
        return Page[LlmCallSummary](items=items, next_cursor=next_cursor)

    # -- retention -------------------------------------------------------------------------
    def purge_older_than(self, days: int) -> int:
        """Delete calls started more than `days` ago (0 keeps everything). Returns rows deleted."""
        if days <= 0:
            return 0
        cutoff = utcnow() - timedelta(days=days)
        with self.db.write() as session:
            result = session.exec(sa.delete(LlmCall).where(col(LlmCall.created_at) < cutoff))
            return int(result.rowcount or 0)
