"""The tables of SPEC §2.

Every table has a UUID primary key and created_at/updated_at. Everything that belongs to a
workspace is removed with it (ON DELETE CASCADE); the catalog of definitions is global and an
agent definition in use cannot be deleted (RESTRICT). Events and audit rows keep plain ids of
agents and runs (no foreign key) so the log outlives what it describes.

Each index here serves a list or aggregate query of core; the query that uses it is named beside
it so an index without a reader is easy to spot.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.types import JsonType, UtcDateTime, utcnow

AGENT_STATUSES = ("idle", "initializing", "active", "busy", "error", "offline")
RUN_STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled", "interrupted")
RUN_INPUT_KINDS = ("answer", "approval")
RUN_INPUT_STATUSES = ("pending", "answered", "expired", "cancelled")

# Alembic and the database agree on constraint names only if they are deterministic.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The ON DELETE actions SQLModel's Field accepts.
OnDelete = Literal["CASCADE", "SET NULL", "RESTRICT"]


def _fk(target: str, ondelete: OnDelete, *, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None if nullable else ...,
        foreign_key=target,
        ondelete=ondelete,
        nullable=nullable,
        index=index,
    )


def _created_at() -> Any:
    return Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


def _updated_at() -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=UtcDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )


def _json(default: Any = dict) -> Any:
    return Field(default_factory=default, sa_type=JsonType, nullable=False)


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    # Per-workspace switches, e.g. {"code_execution": false}; read through core's settings.
    settings: dict[str, Any] = _json()
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "slug"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    slug: str = Field(max_length=64)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class RepositoryLink(SQLModel, table=True):
    __tablename__ = "repository_links"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = _fk("projects.id", "CASCADE", index=True)
    url: str = Field(max_length=2000)
    default_branch: str = Field(default="main", max_length=200)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class AgentDefinition(SQLModel, table=True):
    __tablename__ = "agent_definitions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    role_kind: str = Field(max_length=64)
    default_config: dict[str, Any] = _json()
    # JSON Schema that an instance's config must satisfy; empty means "any object".
    config_schema: dict[str, Any] = _json()
    version: int = Field(default=1)
    # Where the definition came from: "builtin" or the entry point's distribution name.
    source: str = Field(default="builtin", max_length=200)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class AgentInstance(SQLModel, table=True):
    __tablename__ = "agent_instances"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "name"),
        sa.CheckConstraint("status IN ('" + "','".join(AGENT_STATUSES) + "')", name="status_known"),
        # Agents board: keyset page over (created_at, id) within a workspace.
        sa.Index("ix_agent_instances_workspace_created", "workspace_id", "created_at", "id"),
        # Agents board filtered by status.
        sa.Index("ix_agent_instances_workspace_status", "workspace_id", "status", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    project_id: uuid.UUID | None = _fk("projects.id", "SET NULL", nullable=True, index=True)
    definition_id: uuid.UUID = _fk("agent_definitions.id", "RESTRICT", index=True)
    name: str = Field(max_length=200)
    status: str = Field(default="idle", max_length=32)
    status_reason: str = Field(default="", sa_type=sa.Text)
    config: dict[str, Any] = _json()
    # Optimistic lock: every UPDATE checks and bumps it, so two writers cannot both win.
    lock_version: int = Field(default=1)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class AgentStatusChange(SQLModel, table=True):
    __tablename__ = "agent_status_changes"
    __table_args__ = (
        # Status history of one agent, newest first.
        sa.Index("ix_agent_status_changes_agent_at", "agent_id", "at", "id"),
        # Analytics (core/analytics.py): time in status and errors per workspace over a range,
        # covering, so a range of status changes is read from the index alone (migration 007).
        sa.Index("ix_agent_status_changes_analytics", "workspace_id", "at", "agent_id", "to_status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    agent_id: uuid.UUID = _fk("agent_instances.id", "CASCADE")
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str = Field(max_length=32)
    reason: str = Field(default="", sa_type=sa.Text)
    actor: str = Field(default="system", max_length=200)
    at: datetime = _created_at()
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class AgentContext(SQLModel, table=True):
    __tablename__ = "agent_contexts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    agent_id: uuid.UUID = Field(foreign_key="agent_instances.id", ondelete="CASCADE", unique=True)
    current_version: int = Field(default=1)
    data: dict[str, Any] = _json()
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class AgentContextVersion(SQLModel, table=True):
    __tablename__ = "agent_context_versions"
    # The unique constraint doubles as the index of the version list (keyset on version).
    __table_args__ = (sa.UniqueConstraint("context_id", "version"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    context_id: uuid.UUID = _fk("agent_contexts.id", "CASCADE")
    version: int
    data: dict[str, Any] = _json()
    author: str = Field(default="system", max_length=200)
    reason: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        sa.CheckConstraint("status IN ('" + "','".join(RUN_STATUSES) + "')", name="status_known"),
        # Runs list: keyset page over (created_at, id) within a workspace.
        sa.Index("ix_runs_workspace_created", "workspace_id", "created_at", "id"),
        # Startup sweep of unfinished runs; analytics by outcome.
        sa.Index("ix_runs_status", "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    project_id: uuid.UUID | None = _fk("projects.id", "SET NULL", nullable=True, index=True)
    idea: str = Field(sa_type=sa.Text)
    status: str = Field(default="queued", max_length=32)
    # Why it stopped: "n_rounds", "budget", "idle", "cancelled", an error summary...
    stop_reason: str = Field(default="", sa_type=sa.Text)
    n_rounds: int = Field(default=5)
    investment: float = Field(default=3.0)
    cost: float = Field(default=0.0)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    tokens: int = Field(default=0)
    error: str = Field(default="", sa_type=sa.Text)
    # The LLM the run used, as shown to people (e.g. "demo model" or "openai gpt-4o").
    llm_label: str = Field(default="", max_length=300)
    # The workspace's LLM profile (by name) chosen for this run; None: the workspace's default
    # profile (or the demo model) when it starts. A resume uses it again.
    llm_profile: str | None = Field(default=None, max_length=200)
    # The workspace's code-execution switch when the run was created: what this run may do, and
    # what its page says, whatever the switch says later.
    code_execution: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    # Durable execution (core/runtime/durable.py): the last round announced (a replayed round is
    # not announced twice), how many times a process started executing the run, and the round it
    # resumed at after a restart or a takeover (None: never resumed).
    current_round: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    resumed_at_round: int | None = Field(default=None)
    # A fork ("re-run from here") copies rounds 1..fork_round of its parent without LLM calls.
    parent_run_id: uuid.UUID | None = _fk("runs.id", "SET NULL", nullable=True, index=True)
    fork_round: int | None = Field(default=None)
    # Seconds a person has to answer each request of this run; None waits for ever.
    input_timeout: int | None = Field(default=None)
    # How generated code ran: bubblewrap | unsandboxed | unavailable | off ("" before it started).
    sandbox: str = Field(default="", max_length=20, sa_column_kwargs={"server_default": ""})
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class RunMember(SQLModel, table=True):
    __tablename__ = "run_members"
    __table_args__ = (sa.UniqueConstraint("run_id", "agent_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    run_id: uuid.UUID = _fk("runs.id", "CASCADE")
    # SET NULL: deleting an agent later must not erase the run's record of its costs.
    agent_id: uuid.UUID | None = _fk("agent_instances.id", "SET NULL", nullable=True, index=True)
    agent_name: str = Field(default="", max_length=200)
    role_kind: str = Field(max_length=64)
    # Human in the loop: a person writes this member's LLM answers; or approves what it publishes.
    played_by_human: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    needs_approval: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    cost: float = Field(default=0.0)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class RunInput(SQLModel, table=True):
    """A question the runtime put to a person: write a role's answer, or approve a message.

    The row is the durable record of the wait: a run replaying a round after a restart finds its
    request by `key` (answered: the answer is used; pending: the wait goes on).
    """

    __tablename__ = "run_inputs"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('" + "','".join(RUN_INPUT_KINDS) + "')", name="kind_known"),
        sa.CheckConstraint("status IN ('" + "','".join(RUN_INPUT_STATUSES) + "')", name="status_known"),
        # One request per point of a run's (or chat's) execution: replays find it again.
        sa.UniqueConstraint("key"),
        # A run's requests in order, filtered by status (GET /api/runs/{id}/inputs).
        sa.Index("ix_run_inputs_run_status_created", "run_id", "status", "created_at", "id"),
        # The header badge: pending requests of a workspace.
        sa.Index("ix_run_inputs_workspace_status", "workspace_id", "status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    # None for a chat reply held for approval.
    run_id: uuid.UUID | None = _fk("runs.id", "CASCADE", nullable=True)
    agent_id: uuid.UUID | None = _fk("agent_instances.id", "SET NULL", nullable=True, index=True)
    agent_name: str = Field(default="", max_length=200)
    key: str = Field(max_length=300)
    kind: str = Field(max_length=16)
    round: int = Field(default=0)
    action: str = Field(default="", max_length=200)
    # What the person is shown: the prompt the role would have sent (kind answer) or the message
    # about to be published (kind approval, `proposed`).
    prompt: list[dict[str, Any]] = _json(list)
    proposed: str = Field(default="", sa_type=sa.Text)
    status: str = Field(default="pending", max_length=16)
    decision: str | None = Field(default=None, max_length=16)
    answer: str = Field(default="", sa_type=sa.Text)
    answered_by: str = Field(default="", max_length=200)
    answered_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class AgentMessage(SQLModel, table=True):
    __tablename__ = "agent_messages"
    __table_args__ = (
        # A thread is keyset-paginated on seq, both directions.
        sa.UniqueConstraint("agent_id", "seq"),
        # A run's transcript in order.
        sa.Index("ix_agent_messages_run_created", "run_id", "created_at", "id"),
        # Analytics (core/analytics.py): messages, tokens and cost per workspace over a range,
        # covering, so a million messages are an index-only scan (migration 007).
        sa.Index(
            "ix_agent_messages_analytics",
            "workspace_id",
            "created_at",
            "agent_id",
            "prompt_tokens",
            "completion_tokens",
            "cost",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    agent_id: uuid.UUID = _fk("agent_instances.id", "CASCADE")
    run_id: uuid.UUID | None = _fk("runs.id", "SET NULL", nullable=True)
    seq: int
    sender: str = Field(max_length=200)
    role: str = Field(max_length=32)
    content: str = Field(sa_type=sa.Text)
    cause_by: str = Field(default="", max_length=300)
    send_to: list[str] = _json(list)
    # "metadata" is reserved by SQLAlchemy's declarative base, hence the attribute name.
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_type=JsonType, nullable=False, sa_column_kwargs={"name": "metadata"}
    )
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    cost: float = Field(default=0.0)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        # Resume of a workspace stream: WHERE workspace_id = ? AND seq > ? ORDER BY seq.
        sa.Index("ix_events_workspace_seq", "workspace_id", "seq"),
        sa.Index("ix_events_agent_seq", "agent_id", "seq"),
        sa.Index("ix_events_run_seq", "run_id", "seq"),
        # Retention sweep.
        sa.Index("ix_events_created_at", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Strictly increasing in commit order: assigned under the database-wide write lock.
    seq: int = Field(sa_type=sa.BigInteger, unique=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    agent_id: uuid.UUID | None = Field(default=None)
    run_id: uuid.UUID | None = Field(default=None)
    type: str = Field(max_length=64)
    payload: dict[str, Any] = _json()
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE", index=True)
    name: str = Field(max_length=200)
    # SHA-256 of the secret: tokens are high-entropy, so a slow hash buys nothing here.
    token_hash: str = Field(max_length=128, unique=True)
    # First characters of the secret, shown in lists so people can tell tokens apart.
    prefix: str = Field(default="", max_length=16)
    # Admin tokens may also create workspaces (`token create --admin`).
    admin: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    last_used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class LlmProfile(SQLModel, table=True):
    __tablename__ = "llm_profiles"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    name: str = Field(max_length=200)
    api_type: str = Field(max_length=64)
    model: str = Field(max_length=200)
    base_url: str = Field(default="", max_length=2000)
    # Fernet token of the API key; the plain key never touches the database.
    api_key_encrypted: str = Field(default="", sa_type=sa.Text)
    is_default: bool = Field(default=False)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class LlmCall(SQLModel, table=True):
    """One LLM request made for a chat answer or a team run: what was sent, what came back, what it
    took (core/llm_calls.py). Agent and run are plain ids, like events', so the record of a call
    outlives the agent; retention follows the event retention setting."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        # An agent's calls, newest first: keyset on (created_at, id).
        sa.Index("ix_llm_calls_agent_created", "agent_id", "created_at", "id"),
        # A run's calls (timeline and list): keyset on (created_at, id).
        sa.Index("ix_llm_calls_run_created", "run_id", "created_at", "id"),
        # Analytics: latency per model and error rate per profile over a range, covering.
        sa.Index("ix_llm_calls_analytics", "workspace_id", "created_at", "model", "profile", "outcome", "latency_ms"),
        # Retention sweep.
        sa.Index("ix_llm_calls_created_at", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    agent_id: uuid.UUID | None = Field(default=None)
    agent_name: str = Field(default="", max_length=200)
    run_id: uuid.UUID | None = Field(default=None)
    round: int | None = Field(default=None)
    # The MetaGPT action the call was made for (its cause), e.g. "WritePRD" or "Respond".
    action: str = Field(default="", max_length=300)
    # The LLM profile's label ("demo model" for the offline model) and the model name sent.
    profile: str = Field(default="", max_length=300)
    model: str = Field(default="", max_length=200)
    stream: bool = Field(default=False)
    # The messages as sent (role/content objects), size-capped; never any header or key.
    request: list[dict[str, Any]] = _json(list)
    response: str = Field(default="", sa_type=sa.Text)
    # Characters before truncation, when the request or the response was cut to the size cap.
    request_truncated_from: int | None = Field(default=None)
    response_truncated_from: int | None = Field(default=None)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    cost: float = Field(default=0.0)
    # "running" until it ends; then "ok", "error" or "cancelled".
    outcome: str = Field(default="running", max_length=16)
    error: str = Field(default="", sa_type=sa.Text)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    latency_ms: float | None = Field(default=None)
    # Time to the first streamed chunk (streaming calls only).
    ttft_ms: float | None = Field(default=None)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()


class TeamTemplate(SQLModel, table=True):
    """A user's saved team (issue 17): members (definition, name, config, context), default rounds,
    budget and an example idea. Built-in templates live in code (core/templates.py), not here."""

    __tablename__ = "team_templates"
    __table_args__ = (
        # Templates of a workspace by slug (list and instantiate).
        sa.UniqueConstraint("workspace_id", "slug"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    workspace_id: uuid.UUID = _fk("workspaces.id", "CASCADE")
    slug: str = Field(max_length=64)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    # [{"definition": slug, "name": str, "config": {...}, "context": {...}}, ...]
    members: list[dict[str, Any]] = _json(list)
    n_rounds: int = Field(default=5)
    investment: float = Field(default=3.0)
    idea: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = _created_at()
    updated_at: datetime = _updated_at()
