"""Agent instances: the catalog, creation, listing, config, deletion and the status machine.

Rules (SPEC §2–§3):
- An agent belongs to one workspace; its name is unique there. Its definition comes from the
  catalog; its config is the definition's default_config overlaid with the given config and must
  satisfy the definition's config_schema (JSON Schema). Creating an agent also creates context
  version 1 and writes `agent_created`, in one transaction.
- Status changes follow core.status: a refused transition changes nothing and names the allowed
  targets; an accepted one bumps lock_version, writes an AgentStatusChange row and an
  `agent_status_changed` event in the same transaction. Every UPDATE checks lock_version in its
  WHERE clause, so of two concurrent writers from the same state exactly one wins.
- Deleting an agent removes its thread, context and audit rows (ON DELETE CASCADE) and writes
  `agent_deleted`; events and run records keep its id.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from sqlmodel import Session, col, select

from core.context import create_initial_context
from core.db import Database
from core.errors import Conflict, InvalidInput, NotFound, StaleVersion, TooLarge
from core.events import EventType, append_event
from core.pagination import clamp_limit, decode_time_id_cursor, encode_cursor
from core.schemas import (
    AgentCreate,
    AgentPublic,
    AgentUpdate,
    DefinitionPublic,
    Page,
    StatusChangePublic,
)
from core.status import AgentStatus, allowed_targets, check_transition, parse_status
from core.validation import check_storable_json, check_text
from storage.models import AgentDefinition, AgentInstance, AgentStatusChange, Project, Workspace
from storage.types import utcnow

MAX_CONFIG_BYTES = 64 * 1024


def get_agent_row(session: Session, agent_id: uuid.UUID, scope: uuid.UUID | None = None) -> AgentInstance:
    """The agent, or NotFound — also when it belongs to a workspace other than `scope`."""
    agent = session.get(AgentInstance, agent_id)
    if agent is None or (scope is not None and agent.workspace_id != scope):
        raise NotFound("agent", agent_id)
    return agent


def to_public(agent: AgentInstance, definition: AgentDefinition) -> AgentPublic:
    return AgentPublic(
        id=agent.id,
        workspace_id=agent.workspace_id,
        project_id=agent.project_id,
        definition_id=agent.definition_id,
        definition=definition.slug,
        role_kind=definition.role_kind,
        name=agent.name,
        status=agent.status,
        status_reason=agent.status_reason,
        allowed_transitions=allowed_targets(agent.status),
        config=agent.config,
        lock_version=agent.lock_version,
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def validate_config(definition: AgentDefinition, config: dict[str, Any]) -> dict[str, Any]:
    """default_config overlaid with `config`, checked against the definition's schema."""
    if not isinstance(config, dict):
        raise InvalidInput(f"config must be a JSON object, not {type(config).__name__}", field="config")
    merged: dict[str, Any] = {**definition.default_config, **config}
    # NaN, NUL or a non-JSON value would be stored by SQLite but refused by PostgreSQL (a 500).
    text = check_storable_json(merged, "config")
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise TooLarge(f"config is larger than {MAX_CONFIG_BYTES} bytes", limit=MAX_CONFIG_BYTES)
    merged = json.loads(text)
    if definition.config_schema:
        errors = sorted(Draft202012Validator(definition.config_schema).iter_errors(merged), key=str)
        if errors:
            details = [
                {"path": "/".join(str(p) for p in err.absolute_path) or "(root)", "message": err.message}
                for err in errors
            ]
            summary = "; ".join(f"{d['path']}: {d['message']}" for d in details)
            raise InvalidInput(
                f"config does not match {definition.slug}'s schema: {summary}", errors=details, field="config"
            )
    return merged


class AgentService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- catalog ---------------------------------------------------------------------------
    def definitions(self) -> list[DefinitionPublic]:
        with self.db.read() as session:
            rows = session.exec(select(AgentDefinition).order_by(col(AgentDefinition.slug)))
            return [DefinitionPublic.model_validate(d) for d in rows]

    def definition(self, slug: str) -> DefinitionPublic:
        with self.db.read() as session:
            return DefinitionPublic.model_validate(_definition_by_slug(session, slug))

    # -- instances -------------------------------------------------------------------------
    def create(self, data: AgentCreate, actor: str = "system", scope: uuid.UUID | None = None) -> AgentPublic:
        if scope is not None and data.workspace_id != scope:
            raise NotFound("workspace", data.workspace_id)
        check_text(data.name, "name")
        context = data.context if data.context is not None else {}
        with self.db.write() as session:
            if session.get(Workspace, data.workspace_id) is None:
                raise NotFound("workspace", data.workspace_id)
            definition = _definition_by_slug(session, data.definition)
            if data.project_id is not None:
                _check_project(session, data.workspace_id, data.project_id)
            _check_name_free(session, data.workspace_id, data.name)
            agent = AgentInstance(
                workspace_id=data.workspace_id,
                project_id=data.project_id,
                definition_id=definition.id,
                name=data.name,
                config=validate_config(definition, data.config or {}),
            )
            session.add(agent)
            session.flush()
            session.add(
                AgentStatusChange(
                    workspace_id=agent.workspace_id,
                    agent_id=agent.id,
                    from_status=None,
                    to_status=agent.status,
                    reason="created",
                    actor=actor,
                )
            )
            create_initial_context(session, agent, context, actor)
            public = to_public(agent, definition)
            append_event(
                session,
                EventType.AGENT_CREATED,
                agent.workspace_id,
                {"agent": public.model_dump(mode="json"), "actor": actor},
                agent_id=agent.id,
            )
            return public

    def get(self, agent_id: uuid.UUID, scope: uuid.UUID | None = None) -> AgentPublic:
        with self.db.read() as session:
            agent = get_agent_row(session, agent_id, scope)
            return to_public(agent, session.get_one(AgentDefinition, agent.definition_id))

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        status: str | None = None,
        project_id: uuid.UUID | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[AgentPublic]:
        """Agents of a workspace, oldest first, keyset-paginated on (created_at, id)."""
        limit = clamp_limit(limit)
        stmt = (
            select(AgentInstance, AgentDefinition)
            .join(AgentDefinition, col(AgentDefinition.id) == col(AgentInstance.definition_id))
            .where(AgentInstance.workspace_id == workspace_id)
        )
        if status:
            stmt = stmt.where(AgentInstance.status == parse_status(status).value)
        if project_id is not None:
            stmt = stmt.where(AgentInstance.project_id == project_id)
        if name:
            check_text(name, "name")
            pattern = "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            stmt = stmt.where(col(AgentInstance.name).ilike(pattern, escape="\\"))
        if cursor:
            after, after_id = decode_time_id_cursor(cursor)
            # A row value bounds the index range on both columns; the OR form would scan from the start.
            stmt = stmt.where(sa.tuple_(col(AgentInstance.created_at), col(AgentInstance.id)) > (after, after_id))
        stmt = stmt.order_by(col(AgentInstance.created_at), col(AgentInstance.id)).limit(limit + 1)
        with self.db.read() as session:
            rows = list(session.exec(stmt))
        items = [to_public(agent, definition) for agent, definition in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1][0]
            next_cursor = encode_cursor(last.created_at.isoformat(), last.id)
        return Page[AgentPublic](items=items, next_cursor=next_cursor)

    def update(
        self, agent_id: uuid.UUID, data: AgentUpdate, actor: str = "system", scope: uuid.UUID | None = None
    ) -> AgentPublic:
        changes = data.model_dump(exclude_unset=True, exclude={"expected_lock_version"})
        with self.db.write() as session:
            agent = get_agent_row(session, agent_id, scope)
            definition = session.get_one(AgentDefinition, agent.definition_id)
            if data.expected_lock_version is not None and data.expected_lock_version != agent.lock_version:
                raise StaleVersion(data.expected_lock_version, agent.lock_version, what="agent")
            values: dict[str, Any] = {}
            if data.name is not None and data.name != agent.name:
                check_text(data.name, "name")
                _check_name_free(session, agent.workspace_id, data.name)
                values["name"] = data.name
            if data.config is not None:
                # The config given replaces the stored one; defaults fill what it leaves out.
                values["config"] = validate_config(definition, data.config)
            if "project_id" in changes:
                if data.project_id is not None:
                    _check_project(session, agent.workspace_id, data.project_id)
                values["project_id"] = data.project_id
            if not values:
                return to_public(agent, definition)
            _guarded_update(session, agent, values)
            public = to_public(agent, definition)
            append_event(
                session,
                EventType.AGENT_UPDATED,
                agent.workspace_id,
                {"agent": public.model_dump(mode="json"), "changed": sorted(values), "actor": actor},
                agent_id=agent.id,
            )
            return public

    def delete(self, agent_id: uuid.UUID, actor: str = "system", scope: uuid.UUID | None = None) -> None:
        with self.db.write() as session:
            agent = get_agent_row(session, agent_id, scope)
            append_event(
                session,
                EventType.AGENT_DELETED,
                agent.workspace_id,
                {"agent_id": str(agent.id), "name": agent.name, "actor": actor},
                agent_id=agent.id,
            )
            session.delete(agent)

    # -- status machine --------------------------------------------------------------------
    def set_status(
        self,
        agent_id: uuid.UUID,
        target: str,
        *,
        reason: str = "",
        actor: str = "system",
        scope: uuid.UUID | None = None,
        expected_lock_version: int | None = None,
    ) -> AgentPublic:
        """Move the agent to `target` if the status machine allows it from its current status."""
        with self.db.write() as session:
            agent = get_agent_row(session, agent_id, scope)
            if expected_lock_version is not None and expected_lock_version != agent.lock_version:
                raise StaleVersion(expected_lock_version, agent.lock_version, what="agent")
            return self._transition(session, agent, target, reason, actor)

    def activate(self, agent_id: uuid.UUID, actor: str = "system", scope: uuid.UUID | None = None) -> AgentPublic:
        return self.set_status(agent_id, AgentStatus.ACTIVE, reason="activated", actor=actor, scope=scope)

    def transition_in(
        self, session: Session, agent_id: uuid.UUID, target: str, reason: str = "", actor: str = "system"
    ) -> AgentPublic:
        """A transition inside the caller's write transaction (the runtime records a message
        and the agent's status together)."""
        return self._transition(session, get_agent_row(session, agent_id), target, reason, actor)

    def _transition(self, session: Session, agent: AgentInstance, target: str, reason: str, actor: str) -> AgentPublic:
        previous = agent.status
        new_status = check_transition(previous, target)
        check_text(reason, "reason")
        _guarded_update(session, agent, {"status": new_status.value, "status_reason": reason})
        change = AgentStatusChange(
            workspace_id=agent.workspace_id,
            agent_id=agent.id,
            from_status=previous,
            to_status=new_status.value,
            reason=reason,
            actor=actor,
        )
        session.add(change)
        definition = session.get_one(AgentDefinition, agent.definition_id)
        public = to_public(agent, definition)
        append_event(
            session,
            EventType.AGENT_STATUS_CHANGED,
            agent.workspace_id,
            {
                "from": previous,
                "to": new_status.value,
                "reason": reason,
                "actor": actor,
                "lock_version": agent.lock_version,
                "allowed_transitions": public.allowed_transitions,
            },
            agent_id=agent.id,
        )
        return public

    def status_history(
        self, agent_id: uuid.UUID, scope: uuid.UUID | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[StatusChangePublic]:
        """The audit trail, newest first, keyset-paginated on (at, id)."""
        limit = clamp_limit(limit)
        with self.db.read() as session:
            get_agent_row(session, agent_id, scope)
            stmt = select(AgentStatusChange).where(AgentStatusChange.agent_id == agent_id)
            if cursor:
                before, before_id = decode_time_id_cursor(cursor)
                stmt = stmt.where(sa.tuple_(col(AgentStatusChange.at), col(AgentStatusChange.id)) < (before, before_id))
            stmt = stmt.order_by(col(AgentStatusChange.at).desc(), col(AgentStatusChange.id).desc()).limit(limit + 1)
            rows = list(session.exec(stmt))
        items = [StatusChangePublic.model_validate(r) for r in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1].at.isoformat(), rows[limit - 1].id) if len(rows) > limit else None
        return Page[StatusChangePublic](items=items, next_cursor=next_cursor)


def _guarded_update(session: Session, agent: AgentInstance, values: dict[str, Any]) -> None:
    """UPDATE ... WHERE lock_version = <read value>; losing the race is a Conflict."""
    now = utcnow()
    result = session.exec(
        sa.update(AgentInstance)
        .where(col(AgentInstance.id) == agent.id, col(AgentInstance.lock_version) == agent.lock_version)
        .values(**values, lock_version=agent.lock_version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict("the agent was changed by someone else; reload and retry", agent_id=str(agent.id))
    for key, value in values.items():
        setattr(agent, key, value)
    agent.lock_version += 1
    agent.updated_at = now
    # The row in the identity map now matches the database; don't let a later flush re-write it.
    session.expunge(agent)


def _definition_by_slug(session: Session, slug: str) -> AgentDefinition:
    definition = session.exec(select(AgentDefinition).where(AgentDefinition.slug == slug)).first()
    if definition is None:
        raise NotFound("agent definition", slug)
    return definition


def _check_project(session: Session, workspace_id: uuid.UUID, project_id: uuid.UUID) -> None:
    project = session.get(Project, project_id)
    if project is None or project.workspace_id != workspace_id:
        raise NotFound("project", project_id)


def _check_name_free(session: Session, workspace_id: uuid.UUID, name: str) -> None:
    taken = session.exec(
        select(AgentInstance.id).where(AgentInstance.workspace_id == workspace_id, AgentInstance.name == name)
    ).first()
    if taken is not None:
        raise Conflict(f"an agent named {name!r} already exists in this workspace", name=name)
