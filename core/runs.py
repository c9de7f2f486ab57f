"""Team runs as records: creation, lifecycle, costs. Execution lives in core/runtime/.

Rules (SPEC §9):
- A run belongs to one workspace; its members are distinct agents of that workspace (1..12).
- Lifecycle (`RunStatus`, core/status.py): queued → running → completed | failed | cancelled |
  interrupted, always with a reason. Creation and each move write their event in the same
  transaction (`run_created`, `run_started`, `run_round`, `run_finished`, `run_resumed`); a
  finished run never changes status again, but for one move: a person resuming an `interrupted`
  run (not resumed at a `--no-resume` start, or left without a workflow) queues it again.
- A run keeps the workspace's code-execution switch as it was at creation (`code_execution`).
- Costs and tokens are added per member and per run as the LLM reports them.
- Execution is durable (core/runtime/durable.py): a run interrupted by a restart or a dead
  process resumes at its next round; `attempts` counts executions, `resumed_at_round` says where
  it resumed, and a replayed round announces itself once (`current_round`).
- A fork copies rounds 1..fork_round of its parent (`parent_run_id`) and continues from there.
- A run may name one of its workspace's LLM profiles (`llm_profile`, checked at creation); its
  executions (the first, a resume, a fork's new rounds) use that profile, else the workspace's
  default one. `llm_label` records what the run actually used.
"""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator
from sqlmodel import Session, col, func, select

from core.db import Database
from core.errors import Conflict, InvalidInput, NotFound
from core.events import EventType, append_event
from core.pagination import clamp_limit, decode_time_id_cursor, encode_cursor
from core.run_inputs import close_pending_in
from core.schemas import Name, Page, Public
from core.status import RUN_FINISHED, RUN_UNFINISHED, AgentStatus, RunStatus
from core.validation import NoNul
from core.workspaces import code_execution_enabled
from storage.models import AgentDefinition, AgentInstance, LlmProfile, Project, Run, RunMember, Workspace
from storage.types import utcnow

FINISHED = RUN_FINISHED
MAX_MEMBERS = 12
MAX_IDEA_CHARS = 20_000


class RunCreate(BaseModel):
    workspace_id: uuid.UUID
    agent_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_MEMBERS)
    idea: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_IDEA_CHARS), NoNul]
    n_rounds: int = Field(default=5, ge=1, le=100)
    investment: float = Field(default=3.0, gt=0, le=10_000)
    project_id: uuid.UUID | None = None
    # Human in the loop: members whose LLM calls a person answers; members whose messages wait
    # for a person's approval; seconds each request may wait (None: no deadline).
    human_agent_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_MEMBERS)
    approve_agent_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_MEMBERS)
    input_timeout: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)
    # A profile of the workspace (by name) for this run; None: the workspace's default profile, or
    # the offline demo model without one.
    llm_profile: Name | None = Field(default=None, description="an LLM profile of the workspace; null: its default")

    @field_validator("agent_ids")
    @classmethod
    def _distinct(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("agent_ids must be distinct")
        return value

    @model_validator(mode="after")
    def _people_are_members(self) -> RunCreate:
        for name in ("human_agent_ids", "approve_agent_ids"):
            if not set(getattr(self, name)) <= set(self.agent_ids):
                raise ValueError(f"{name} must be members of the run (agent_ids)")
        return self


class RunMemberPublic(Public):
    agent_id: uuid.UUID | None
    agent_name: str
    role_kind: str
    played_by_human: bool = False
    needs_approval: bool = False
    cost: float
    prompt_tokens: int
    completion_tokens: int


class RunPublic(Public):
    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None
    idea: str
    status: RunStatus
    stop_reason: str
    n_rounds: int
    investment: float
    cost: float
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    error: str
    llm_label: str
    llm_profile: str | None = None
    code_execution: bool
    current_round: int = 0
    attempts: int = 0
    resumed_at_round: int | None = None
    parent_run_id: uuid.UUID | None = None
    fork_round: int | None = None
    # Runs ahead of it in the execution queue (None unless queued and known; see Runtime.get_run).
    queue_position: int | None = None
    input_timeout: int | None = None
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

    def create(
        self,
        data: RunCreate,
        actor: str = "system",
        scope: uuid.UUID | None = None,
        parent_run_id: uuid.UUID | None = None,
        fork_round: int | None = None,
    ) -> RunPublic:
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
            if data.llm_profile is not None:
                _check_profile(session, data.workspace_id, data.llm_profile)
            self._check_capacity(session, data.workspace_id)
            members: list[RunMember] = []
            run = Run(
                workspace_id=data.workspace_id,
                project_id=data.project_id,
                idea=data.idea,
                n_rounds=data.n_rounds,
                investment=data.investment,
                code_execution=code_execution_enabled(workspace.settings),
                parent_run_id=parent_run_id,
                fork_round=fork_round,
                input_timeout=data.input_timeout,
                llm_profile=data.llm_profile,
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
                    RunMember(
                        run_id=run.id,
                        agent_id=agent.id,
                        agent_name=agent.name,
                        role_kind=definition.role_kind,
                        played_by_human=agent.id in data.human_agent_ids,
                        needs_approval=agent.id in data.approve_agent_ids,
                    )
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

    def _check_capacity(self, session: Session, workspace_id: uuid.UUID) -> None:
        active = session.exec(
            select(func.count())
            .select_from(Run)
            .where(Run.workspace_id == workspace_id, col(Run.status).in_(("queued", "running")))
        ).one()
        if active >= self.max_concurrent:
            raise Conflict(
                f"the workspace already has {active} runs queued or running (the limit is {self.max_concurrent})"
            )

    def reopen(
        self, run_id: uuid.UUID, round_no: int, actor: str = "system", scope: uuid.UUID | None = None
    ) -> RunPublic:
        """A person resumes an interrupted run: interrupted → queued, to continue at `round_no`.

        Only `interrupted` reopens (the one terminal status that means "not resumed"); its members
        must not be busy in another run, and the workspace's run limit holds as for a new run. The
        time it spent interrupted does not count against its time limit: `started_at` moves
        forward by it."""
        with self.db.write() as session:
            run = _run(session, run_id, scope)
            if run.status != RunStatus.INTERRUPTED:
                raise Conflict(f"the run is {run.status}; only an interrupted run can be resumed", status=run.status)
            busy = session.exec(
                select(AgentInstance.name)
                .join(RunMember, col(RunMember.agent_id) == col(AgentInstance.id))
                .where(RunMember.run_id == run_id, AgentInstance.status == AgentStatus.BUSY.value)
            ).first()
            if busy is not None:
                raise Conflict(f"agent {busy!r} is busy; wait until it is active again")
            self._check_capacity(session, run.workspace_id)
            now = utcnow()
            if run.started_at is not None and run.finished_at is not None:
                run.started_at = run.started_at + (now - run.finished_at)
            run.status, run.stop_reason, run.error, run.finished_at = RunStatus.QUEUED.value, "", "", None
            run.resumed_at_round = round_no
            session.add(run)
            session.flush()
            public = _public(run, _members(session, run.id))
            append_event(
                session,
                EventType.RUN_RESUMED,
                run.workspace_id,
                {"run": public.model_dump(mode="json"), "actor": actor, "round": round_no},
                run_id=run.id,
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

    def mark_running(self, run_id: uuid.UUID, llm_label: str, resumed_at_round: int | None = None) -> RunPublic:
        """An execution of the run begins: the first one moves it queued → running; a later one
        (after a restart or a takeover) counts an attempt and says where it resumed."""
        with self.db.write() as session:
            run = _run(session, run_id, None)
            if run.status in RUN_FINISHED:
                raise Conflict(f"run is {run.status}, not queued")
            if run.status == RunStatus.QUEUED:
                run.status = RunStatus.RUNNING.value
                run.started_at = run.started_at or utcnow()  # a resumed run keeps its first start
            run.llm_label = llm_label
            run.attempts += 1
            if resumed_at_round is not None:
                run.resumed_at_round = resumed_at_round
            session.add(run)
            session.flush()
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
        """Announce round `round_no` once: a round replayed after a restart is not announced again."""
        with self.db.write() as session:
            run = _run(session, run_id, None)
            if round_no <= run.current_round:
                return
            run.current_round = round_no
            session.add(run)
            append_event(
                session,
                EventType.RUN_ROUND,
                run.workspace_id,
                {"round": round_no, "n_rounds": run.n_rounds, **(detail or {})},
                run_id=run.id,
            )

    def skip_rounds(self, run_id: uuid.UUID, round_no: int) -> None:
        """A fork's rounds 1..k were copied, not played: it announces rounds from k+1 on."""
        with self.db.write() as session:
            run = _run(session, run_id, None)
            run.current_round = max(run.current_round, round_no)
            session.add(run)

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
        """The run's one terminal status, with its reason; a finished run keeps its first one."""
        if status not in RUN_FINISHED:
            raise InvalidInput(f"{status!r} is not a finished status")
        with self.db.write() as session:
            run = _run(session, run_id, None)
            if run.status in FINISHED:
                return _public(run, _members(session, run.id))
            session.refresh(run)
            run.status, run.stop_reason, run.error = RunStatus(status).value, stop_reason, error[:10_000]
            run.finished_at = utcnow()
            session.add(run)
            session.flush()
            close_pending_in(session, run.id)  # requests to people end with the run
            public = _public(run, _members(session, run.id))
            append_event(
                session,
                EventType.RUN_FINISHED,
                run.workspace_id,
                {"run": public.model_dump(mode="json")},
                run_id=run.id,
            )
            return public

    def unfinished(self, limit: int = 500) -> builtins.list[RunPublic]:
        """Runs still queued or running, oldest first (the startup and takeover sweeps)."""
        stmt = (
            select(Run)
            .where(col(Run.status).in_([s.value for s in RUN_UNFINISHED]))
            .order_by(col(Run.created_at), col(Run.id))
            .limit(limit)
        )
        with self.db.read() as session:
            rows = list(session.exec(stmt))
            members = _members_of(session, [r.id for r in rows])
        return [_public(r, members.get(r.id, [])) for r in rows]

    def busy_members(self, run_id: uuid.UUID) -> builtins.list[uuid.UUID]:
        with self.db.read() as session:
            stmt = (
                select(AgentInstance.id)
                .join(RunMember, col(RunMember.agent_id) == col(AgentInstance.id))
                .where(RunMember.run_id == run_id, AgentInstance.status == AgentStatus.BUSY.value)
            )
            return list(session.exec(stmt))


def _check_profile(session: Session, workspace_id: uuid.UUID, name: str) -> None:
    found = session.exec(
        select(LlmProfile.id).where(LlmProfile.workspace_id == workspace_id, LlmProfile.name == name)
    ).first()
    if found is None:
        raise InvalidInput(f"llm_profile: the workspace has no LLM profile named {name[:200]!r}", field="llm_profile")


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
