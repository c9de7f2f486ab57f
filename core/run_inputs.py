"""Requests put to a person during a run or a chat: write a role's answer, or approve a message.

Rules (issue #13):
- A request is created by the runtime with a `key` naming the point of execution that asked
  (run, round, agent, call): asking again with the same key returns the same request, so a round
  replayed after a restart finds its answer instead of asking twice.
- While a run has a pending request its status is `waiting`; answering the last one puts it back
  to `running`. Each move writes its event (`run_input_requested`, `run_input_answered`) in the
  same transaction, with the run's status in the payload.
- A request is answered once: a second answer (or one after it expired or was cancelled) is a
  Conflict and changes nothing. Kind `answer` takes text; kind `approval` takes a decision:
  `approve` (text ignored), `edit` (text = the message to publish instead), `reject` (text = the
  feedback the role redoes its work with).
- A request may carry a deadline (`expires_at`, from the run's `input_timeout`); the runtime
  expires it and fails the run with "no answer".
"""

from __future__ import annotations

import builtins
import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, StringConstraints, computed_field, model_validator
from sqlmodel import Session, col, select

from core.db import Database
from core.errors import Conflict, InvalidInput, NotFound
from core.events import EventType, append_event
from core.pagination import clamp_limit, decode_cursor, encode_cursor
from core.schemas import Page, Public
from core.validation import NoNul
from storage.models import Run, RunInput
from storage.types import utcnow

InputKind = Literal["answer", "approval"]
InputStatus = Literal["pending", "answered", "expired", "cancelled"]
Decision = Literal["approve", "edit", "reject"]

MAX_ANSWER_CHARS = 100_000
MAX_PROMPT_CHARS = 200_000
# How the runtime introduces a person's feedback in the prompts of a role redoing rejected work.
FEEDBACK_HEADING = "## Feedback from a person who reviewed your previous answer"


FORMAT_EXAMPLE = re.compile(r"## format example\s*(\[CONTENT\].*?\[/CONTENT\])", re.DOTALL)


def format_example(prompt: list[dict[str, Any]]) -> str:
    """The output example a MetaGPT action put in its prompt (an ActionNode's `[CONTENT]` block),
    or "": a person answering for a role starts from it."""
    for message in reversed(prompt):
        match = FORMAT_EXAMPLE.search(str(message.get("content", "")))
        if match:
            return match.group(1).strip()
    return ""


class RunInputPublic(Public):
    id: uuid.UUID
    workspace_id: uuid.UUID
    run_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    agent_name: str
    kind: InputKind
    round: int
    action: str
    prompt: list[dict[str, Any]]
    proposed: str
    status: InputStatus
    decision: Decision | None
    answer: str
    answered_by: str
    created_at: datetime
    answered_at: datetime | None
    expires_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def format_example(self) -> str:
        """The answer format the role's prompt asks for (kind answer), to start from."""
        return format_example(self.prompt) if self.kind == "answer" else ""


class InputAnswer(BaseModel):
    """`{"text": ...}` answers kind `answer`; `{"decision": ..., "text": ...}` kind `approval`."""

    text: Annotated[str, StringConstraints(max_length=MAX_ANSWER_CHARS), NoNul] | None = None
    decision: Decision | None = None

    @model_validator(mode="after")
    def _text_where_needed(self) -> InputAnswer:
        if self.decision in (None, "edit") and not (self.text or "").strip():
            raise ValueError("text is required (the answer, or the edited message)")
        return self


class InputRequest(BaseModel):
    """What the runtime asks (see RunInputService.request)."""

    workspace_id: uuid.UUID
    run_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    agent_name: str
    key: str
    kind: InputKind
    round: int = 0
    action: str = ""
    prompt: list[dict[str, Any]] = []
    proposed: str = ""
    timeout_seconds: int | None = None


class RunInputService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def request(self, data: InputRequest) -> RunInputPublic:
        """The request with this key: created (pending, run `waiting`) unless it exists already."""
        with self.db.write() as session:
            existing = session.exec(select(RunInput).where(RunInput.key == data.key)).first()
            if existing is not None:
                # A replayed round (after a restart) asks again: the run waits again if still pending.
                public = RunInputPublic.model_validate(existing)
                if existing.status == "pending" and _set_run_waiting(session, data.run_id, waiting=True) == "waiting":
                    _announce(session, EventType.RUN_INPUT_REQUESTED, existing, "waiting")
                return public
            row = RunInput(
                workspace_id=data.workspace_id,
                run_id=data.run_id,
                agent_id=data.agent_id,
                agent_name=data.agent_name[:200],
                key=data.key[:300],
                kind=data.kind,
                round=data.round,
                action=data.action[:200],
                prompt=_capped_prompt(data.prompt),
                proposed=data.proposed[:MAX_PROMPT_CHARS],
                expires_at=utcnow() + timedelta(seconds=data.timeout_seconds) if data.timeout_seconds else None,
            )
            session.add(row)
            session.flush()
            run_status = _set_run_waiting(session, data.run_id, waiting=True)
            public = RunInputPublic.model_validate(row)
            _announce(session, EventType.RUN_INPUT_REQUESTED, row, run_status)
            return public

    def get(self, input_id: uuid.UUID, scope: uuid.UUID | None = None) -> RunInputPublic:
        with self.db.read() as session:
            return RunInputPublic.model_validate(_input(session, input_id, scope))

    def list(
        self,
        run_id: uuid.UUID,
        status: InputStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        scope: uuid.UUID | None = None,
    ) -> Page[RunInputPublic]:
        """A run's requests in the order they were asked, keyset on (created_at, id)."""
        limit = clamp_limit(limit)
        stmt = select(RunInput).where(RunInput.run_id == run_id)
        if status:
            stmt = stmt.where(RunInput.status == status)
        if cursor:
            after, after_id = _decode(cursor)
            stmt = stmt.where(sa.tuple_(col(RunInput.created_at), col(RunInput.id)) > (after, after_id))
        stmt = stmt.order_by(col(RunInput.created_at), col(RunInput.id)).limit(limit + 1)
        with self.db.read() as session:
            run = session.get(Run, run_id)
            if run is None or (scope is not None and run.workspace_id != scope):
                raise NotFound("run", run_id)
            rows = list(session.exec(stmt))
        items = [RunInputPublic.model_validate(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
        return Page[RunInputPublic](items=items, next_cursor=next_cursor)

    def pending(
        self,
        workspace_id: uuid.UUID,
        limit: int | None = None,
        *,
        run_id: uuid.UUID | None = None,
        agent_id: uuid.UUID | None = None,
    ) -> builtins.list[RunInputPublic]:
        """The oldest pending requests of a workspace (the dashboard's inbox), of one run or agent."""
        stmt = select(RunInput).where(RunInput.workspace_id == workspace_id, RunInput.status == "pending")
        if run_id is not None:
            stmt = stmt.where(RunInput.run_id == run_id)
        if agent_id is not None:
            stmt = stmt.where(RunInput.agent_id == agent_id)
        stmt = stmt.order_by(col(RunInput.created_at), col(RunInput.id)).limit(clamp_limit(limit))
        with self.db.read() as session:
            return [RunInputPublic.model_validate(r) for r in session.exec(stmt)]

    def pending_count(self, workspace_id: uuid.UUID) -> int:
        stmt = select(sa.func.count()).where(
            col(RunInput.workspace_id) == workspace_id, col(RunInput.status) == "pending"
        )
        with self.db.read() as session:
            return int(session.exec(stmt).one())

    def answer(
        self,
        run_id: uuid.UUID | None,
        input_id: uuid.UUID,
        data: InputAnswer,
        actor: str = "user",
        scope: uuid.UUID | None = None,
    ) -> RunInputPublic:
        with self.db.write() as session:
            row = _input(session, input_id, scope)
            if run_id is not None and row.run_id != run_id:
                raise NotFound("input", input_id)
            if row.kind == "answer" and data.decision is not None:
                raise InvalidInput("this request asks for an answer: send {'text': ...}, not a decision")
            if row.kind == "approval" and data.decision is None:
                raise InvalidInput("this request asks for a decision: approve, edit or reject")
            if row.status != "pending":
                raise Conflict(f"this request is already {row.status}", status=row.status)
            row.status, row.decision, row.answer = "answered", data.decision, data.text or ""
            row.answered_by, row.answered_at = actor[:200], utcnow()
            session.add(row)
            session.flush()
            run_status = _set_run_waiting(session, row.run_id, waiting=_has_pending(session, row.run_id))
            public = RunInputPublic.model_validate(row)
            _announce(session, EventType.RUN_INPUT_ANSWERED, row, run_status)
            return public

    def close(self, input_id: uuid.UUID, status: Literal["expired", "cancelled"]) -> RunInputPublic:
        """A pending request nobody will answer any more (deadline passed, run or chat ended)."""
        with self.db.write() as session:
            row = _input(session, input_id, None)
            if row.status == "pending":
                row.status = status
                session.add(row)
                session.flush()
                run_status = _set_run_waiting(session, row.run_id, waiting=_has_pending(session, row.run_id))
                _announce(session, EventType.RUN_INPUT_ANSWERED, row, run_status)
            return RunInputPublic.model_validate(row)


def close_pending_in(session: Session, run_id: uuid.UUID) -> int:
    """Cancel the pending requests of a run that just finished, inside the caller's transaction
    (RunService.finish): nobody can answer them any more. Returns how many."""
    rows = list(session.exec(select(RunInput).where(RunInput.run_id == run_id, RunInput.status == "pending")))
    for row in rows:
        row.status = "cancelled"
        session.add(row)
        session.flush()
        _announce(session, EventType.RUN_INPUT_ANSWERED, row, None)
    return len(rows)


def _announce(session: Session, type: EventType, row: RunInput, run_status: str | None) -> None:
    """The request's event, with the run's status after the change (watchers show both)."""
    append_event(
        session,
        type,
        row.workspace_id,
        {"input": RunInputPublic.model_validate(row).model_dump(mode="json"), "run_status": run_status},
        agent_id=row.agent_id,
        run_id=row.run_id,
    )


def _input(session: Session, input_id: uuid.UUID, scope: uuid.UUID | None) -> RunInput:
    row = session.get(RunInput, input_id)
    if row is None or (scope is not None and row.workspace_id != scope):
        raise NotFound("input", input_id)
    return row


def _has_pending(session: Session, run_id: uuid.UUID | None) -> bool:
    if run_id is None:
        return False
    stmt = select(RunInput.id).where(RunInput.run_id == run_id, RunInput.status == "pending").limit(1)
    return session.exec(stmt).first() is not None


def _set_run_waiting(session: Session, run_id: uuid.UUID | None, *, waiting: bool) -> str | None:
    """running <-> waiting as requests open and close; any other status is left alone."""
    if run_id is None:
        return None
    run = session.get(Run, run_id)
    if run is None:
        return None
    if waiting and run.status == "running":
        run.status = "waiting"
    elif not waiting and run.status == "waiting":
        run.status = "running"
    session.add(run)
    return run.status


def _capped_prompt(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, budget = [], MAX_PROMPT_CHARS
    for message in messages:
        content = str(message.get("content", ""))
        if len(content) > budget:
            content = content[:budget] + "\n\n[… truncated by AgentDeck]"
        budget = max(0, budget - len(content))
        out.append({"role": str(message.get("role", "user"))[:32], "content": content})
    return out


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    created, ident = decode_cursor(cursor, 2)
    try:
        at, at_id = datetime.fromisoformat(str(created)), uuid.UUID(str(ident))
    except (TypeError, ValueError) as exc:
        raise InvalidInput("malformed cursor") from exc
    if at.tzinfo is None:
        raise InvalidInput("malformed cursor")
    return at, at_id
