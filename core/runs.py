"""Team runs as records: creation, lifecycle, costs. Execution lives in core/runtime/.

Rules (SPEC §9):
- A run belongs to one workspace; its members are distinct agents of that workspace (1..12).
- Lifecycle: queued → running → completed | failed | cancelled | interrupted. Creation and each
  move write their event in the same transaction (`run_created`, `run_started`, `run_round`,
  `run_finished`); a finished run never changes status again.
- A run keeps the workspace's code-execution switch as it was at creation (`code_execution`).
- Costs and tokens are added per member and per run as the LLM reports them.
- On startup every run still queued or running belonged to a process that died: it becomes
  `interrupted`, and members left `busy` go back to `active`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlmodel import Session, col, func, select

from core.db import Database
from core.errors import Conflict, InvalidInput, NotFound
from core.events import EventType, append_event
from core.pagination import clamp_limit, decode_time_id_cursor, encode_cursor
from core.schemas import Page, Public
from core.status import AgentStatus
from core.validation import NoNul
from core.workspaces import code_execution_enabled
from storage.models import AgentDefinition, AgentInstance, AgentStatusChange, Project, Run, RunMember, Workspace
from storage.types import utcnow

FINISHED = frozenset({"completed", "failed", "cancelled", "interrupted"})
MAX_MEMBERS = 12


class RunCreate(BaseModel):
    workspace_id: uuid.UUID
    agent_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_MEMBERS)
    idea: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000), NoNul]
    n_rounds: int = Field(default=5, ge=1, le=100)
    investment: float = Field(default=3.0, gt=0, le=10_000)
    project_id: uuid.UUID | None = None

    @field_validator("agent_ids")
    @classmethod
    def _distinct(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("agent_ids must be distinct")
        return value


class RunMemberPublic(Public):
    agent_id: uuid.UUID | None
    agent_name: str
    role_kind: str
    cost: float
    prompt_tokens: int
    completion_tokens: int


class RunPublic(Public):
    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None
    idea: str
    status: str
    stop_reason: str
    n_rounds: int
    investment: float
    cost: float
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    error: str
    llm_label: str
    code_execution: bool
    sandbox: str = ""
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    members: list[RunMemberPublic] = Field(default_factory=list)


class RunService:
    # Runs of one workspace queued or running at once (AGENTDECK_MAX_CONCURRENT_RUNS).
    max_concurrent: int = 4

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, data: RunCreate, actor: str = "system", scope: uuid.UUID | None = None) -> RunPublic:
        if scope is not None and data.workspace_id != scope:
            raise NotFound("workspace", data.workspace_id)
        with self.db.write() as session:
            workspace = session.get(Workspace, data.workspace_id)
            if workspace is None:
                raise NotFound("workspace", data.workspace_id)
            if data.project_id is not None:
                project = session.get(Project, data.project_id)
                if project is None or project.workspace_id != data.workspace_id:
                    raise NotFound("project", data.project_id)
            active = session.exec(
                select(func.count())
                .select_from(Run)
                .where(Run.workspace_id == data.workspace_id, col(Run.status).in_(("queued", "running")))
            ).one()
            if active >= self.max_concurrent:
                raise Conflict(
                    f"the workspace already has {active} runs queued or running (the limit is {self.max_concurrent})"
                )
            members: list[RunMember] = []
            run = Run(
                workspace_id=data.workspace_id,
                project_id=data.project_id,
                idea=data.idea,
                n_rounds=data.n_rounds,
                investment=data.investment,
                code_execution=code_execution_enabled(workspace.settings),
            )
            for agent_id in data.agent_ids:
                agent = session.get(AgentInstance, agent_id)
                if agent is None or agent.workspace_id != data.workspace_id:
                    raise NotFound("agent", agent_id)
                if agent.status == AgentStatus.BUSY:
                    raise Conflict(
                        f"agent {agent.name!r} is busy; wait until it is active again", agent_id=str(agent_id)
                    )
                definition = session.get_one(AgentDefinition, agent.definition_id)
                members.append(
                    RunMember(run_id=run.id, agent_id=agent.id, agent_name=agent.name, role_kind=definition.role_kind)
                )
            kinds = [m.role_kind for m in members if m.role_kind != "assistant"]
            if len(kinds) != len(set(kinds)):
                # MetaGPT keys an environment's roles by profile: two of one kind would overwrite each other.
                raise InvalidInput("a run can have at most one agent of each MetaGPT role kind")
            session.add(run)
            session.flush()
            session.add_all(members)
            session.flush()
            public = _public(run, members)
            append_event(
                session, EventType.RUN_CREATED, run.workspace_id, {"run": public.model_dump(mode="json")}, run_id=run.id
            )
            return public

    def get(self, run_id: uuid.UUID, scope: uuid.UUID | None = None) -> RunPublic:
        with self.db.read() as session:
            run = _run(session, run_id, scope)
            return _public(run, _members(session, run.id))

    def list(
        self, workspace_id: uuid.UUID, limit: int | None = None, cursor: str | None = None, status: str | None = None
    ) -> Page[RunPublic]:
        """Runs of a workspace, newest first, keyset on (created_at, id)."""
        limit = clamp_limit(limit)
        stmt = select(Run).where(Run.workspace_id == workspace_id)
        if status:
            stmt = stmt.where(Run.status == status)
        if cursor:
            before, before_id = decode_time_id_cursor(cursor)
            # A row-value comparison bounds the index range on both columns (an OR form would not).
            stmt = stmt.where(sa.tuple_(col(Run.created_at), col(Run.id)) < (before, before_id))
        stmt = stmt.order_by(col(Run.created_at).desc(), col(Run.id).desc()).limit(limit + 1)
        with self.db.read() as session:
            rows = list(session.exec(stmt))
            members = _members_of(session, [r.id for r in rows[:limit]])
        items = [_public(r, members.get(r.id, [])) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
        return Page[RunPublic](items=items, next_cursor=next_cursor)

    # -- lifecycle (called by the runtime) -------------------------------------------------
    def set_sandbox(self, run_id: uuid.UUID, mode: str) -> None:
        """Record how the run's generated code runs (core/runtime/sandbox.py's modes)."""
        with self.db.write() as session:
            run = _run(session, run_id, None)
            run.sandbox = mode
            session.add(run)

    def mark_running(self, run_id: uuid.UUID, llm_label: str) -> RunPublic:
        with self.db.write() as session:
            run = _run(session, run_id, None)
            if run.status != "queued":
                raise Conflict(f"run is {run.status}, not queued")
            run.status, run.started_at, run.llm_label = "running", utcnow(), llm_label
            session.add(run)
            members = _members(session, run.id)
            public = _public(run, members)
            append_event(
                session,
                EventType.RUN_STARTED,
                run.workspace_id,
                {"run": public.model_dump(mode="json")},
                run_id=run.id,
            )
            return public

    def record_round(self, run_id: uuid.UUID, round_no: int, detail: dict[str, Any] | None = None) -> None:
        with self.db.write() as session:
            run = _run(session, run_id, None)
            append_event(
                session,
                EventType.RUN_ROUND,
                run.workspace_id,
                {"round": round_no, "n_rounds": run.n_rounds, **(detail or {})},
                run_id=run.id,
            )

    def add_usage_in(
        self,
        session: Session,
        run_id: uuid.UUID,
        agent_id: uuid.UUID,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
    ) -> None:
        """Add LLM usage to the run and the member, inside the caller's transaction."""
        session.execute(
            sa.update(Run)
            .where(col(Run.id) == run_id)
            .values(
                prompt_tokens=Run.prompt_tokens + prompt_tokens,
                completion_tokens=Run.completion_tokens + completion_tokens,
                tokens=Run.tokens + prompt_tokens + completion_tokens,
                cost=Run.cost + cost,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        session.execute(
            sa.update(RunMember)
            .where(col(RunMember.run_id) == run_id, col(RunMember.agent_id) == agent_id)
            .values(
                prompt_tokens=RunMember.prompt_tokens + prompt_tokens,
                completion_tokens=RunMember.completion_tokens + completion_tokens,
                cost=RunMember.cost + cost,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )

    def finish(self, run_id: uuid.UUID, status: str, stop_reason: str = "", error: str = "") -> RunPublic:
        if status not in FINISHED:
            raise InvalidInput(f"{status!r} is not a finished status")
        with self.db.write() as session:
            run = _run(session, run_id, None)
            if run.status in FINISHED:
                return _public(run, _members(session, run.id))
            session.refresh(run)
            run.status, run.stop_reason, run.error, run.finished_at = status, stop_reason, error[:10_000], utcnow()
            session.add(run)
            session.flush()
            public = _public(run, _members(session, run.id))
            append_event(
                session,
                EventType.RUN_FINISHED,
                run.workspace_id,
                {"run": public.model_dump(mode="json")},
                run_id=run.id,
            )
            return public

    def interrupt_unfinished(self) -> int:
        """Startup sweep: runs left queued/running by a dead process become `interrupted`, and
        their members stuck in `busy` return to `active`. Returns the number of runs marked."""
        with self.db.write() as session:
            runs = list(session.exec(select(Run).where(col(Run.status).in_(["queued", "running"]))))
            for run in runs:
                run.status, run.finished_at = "interrupted", utcnow()
                run.stop_reason = "the server stopped while the run was in progress"
                session.add(run)
                members = _members(session, run.id)
                for member in members:
                    agent = session.get(AgentInstance, member.agent_id) if member.agent_id else None
                    if agent is not None and agent.status == AgentStatus.BUSY:
                        _force_status(session, agent, AgentStatus.ACTIVE, "run interrupted by a restart")
                session.flush()
                append_event(
                    session,
                    EventType.RUN_FINISHED,
                    run.workspace_id,
                    {"run": _public(run, members).model_dump(mode="json")},
                    run_id=run.id,
                )
            return len(runs)


def _force_status(session: Session, agent: AgentInstance, status: AgentStatus, reason: str) -> None:
    # busy -> active is an allowed transition; written here directly because the sweep runs
    # before any other writer and must not fail on a lock_version race it cannot have.
    previous = agent.status
    agent.status, agent.status_reason, agent.lock_version = status.value, reason, agent.lock_version + 1
    session.add(agent)
    session.add(
        AgentStatusChange(
            workspace_id=agent.workspace_id,
            agent_id=agent.id,
            from_status=previous,
            to_status=status.value,
            reason=reason,
            actor="system",
        )
    )
    append_event(
        session,
        EventType.AGENT_STATUS_CHANGED,
        agent.workspace_id,
        {"from": previous, "to": status.value, "reason": reason, "actor": "system", "lock_version": agent.lock_version},
        agent_id=agent.id,
    )


def _run(session: Session, run_id: uuid.UUID, scope: uuid.UUID | None) -> Run:
    run = session.get(Run, run_id)
    if run is None or (scope is not None and run.workspace_id != scope):
        raise NotFound("run", run_id)
    return run


def _members(session: Session, run_id: uuid.UUID) -> list[RunMember]:
    return list(session.exec(select(RunMember).where(RunMember.run_id == run_id).order_by(col(RunMember.created_at))))


def _members_of(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[RunMember]]:
    out: dict[uuid.UUID, list[RunMember]] = {}
    if not run_ids:
        return out
    for member in session.exec(
        select(RunMember).where(col(RunMember.run_id).in_(run_ids)).order_by(col(RunMember.created_at))
    ):
        out.setdefault(member.run_id, []).append(member)
    return out


def _public(run: Run, members: list[RunMember]) -> RunPublic:
    public = RunPublic.model_validate(run)
    public.members = [RunMemberPublic.model_validate(m) for m in members]
    return public
