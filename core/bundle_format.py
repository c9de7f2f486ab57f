"""What a workspace bundle holds and how its rows are read (issue 17): the tables that travel
(`TABLES`), the format's names and limits, and the column-driven conversion of a JSON row back into
a row for its table. Export (core/bundle_export.py) and import (core/bundle_import.py) share it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from core.errors import InvalidInput

FORMAT = "agentdeck-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFINITIONS = "agent_definitions"
FILES_PREFIX = "files/"
BATCH = 1000
# One JSONL line (one row); a message is at most 100k characters, so this is generous.
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_RUN_FILE_BYTES = 256 * 1024 * 1024
MAX_RUN_FILES_TOTAL = 8 * 1024 * 1024 * 1024
SKIPPED_DIRS = {".git"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BundleTable:
    """One exported table. Rows of the workspace are those whose `workspace_id` is the workspace's
    (or, for a table without that column, whose `parent` foreign key points at such a row)."""

    name: str
    parent: str | None = None  # FK column leading to a table that is scoped to the workspace
    omit: frozenset[str] = frozenset()  # columns that never leave (secrets): imported as defaults
    blank: dict[str, Any] = field(default_factory=dict)  # values written instead of the real ones


# Parents before children: the import inserts in this order.
TABLES: tuple[BundleTable, ...] = (
    BundleTable("workspaces"),
    BundleTable("projects"),
    BundleTable("repository_links", parent="project_id"),
    BundleTable("agent_instances"),
    BundleTable("agent_status_changes"),
    BundleTable("agent_contexts", parent="agent_id"),
    BundleTable("agent_context_versions", parent="context_id"),
    BundleTable("runs"),
    BundleTable("run_members", parent="run_id"),
    BundleTable("run_inputs"),
    BundleTable("agent_messages"),
    BundleTable("llm_calls"),
    BundleTable("llm_profiles", blank={"api_key_encrypted": ""}),
    BundleTable("team_templates"),
)
# Global tables that agents point at: not exported as rows, matched by slug on import.
CATALOG_TABLE = "agent_definitions"


class BundleError(InvalidInput):
    """The bundle cannot be imported; the message says why. Nothing was written."""


def sql_table(name: str) -> sa.Table:
    return SQLModel.metadata.tables[name]


def entry_name(name: str) -> str:
    return f"{name}.jsonl"


# -- column-driven conversion ------------------------------------------------------------------
def _converter(column: sa.Column[Any]) -> Callable[[Any], Any]:
    """JSON value -> value for the column, raising ValueError with the reason."""
    kind = column.type
    while isinstance(kind, sa.types.TypeDecorator):  # UtcDateTime, SQLModel's AutoString...
        kind = kind.impl_instance
    nullable = bool(column.nullable)

    def check_null(value: Any) -> bool:
        if value is None:
            if not nullable:
                raise ValueError("must not be null")
            return True
        return False

    if isinstance(kind, sa.Uuid):

        def to_uuid(value: Any) -> Any:
            if check_null(value):
                return None
            if not isinstance(value, str):
                raise ValueError("must be a UUID string")
            return uuid.UUID(value)

        return to_uuid
    if isinstance(kind, sa.DateTime):

        def to_time(value: Any) -> Any:
            if check_null(value):
                return None
            if not isinstance(value, str):
                raise ValueError("must be an ISO 8601 time")
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

        return to_time
    if isinstance(kind, sa.JSON):

        def to_json(value: Any) -> Any:
            # NaN/Infinity and NUL characters are refused for the whole line when it is parsed.
            check_null(value)
            return value

        return to_json
    if isinstance(kind, sa.Boolean):

        def to_bool(value: Any) -> Any:
            if check_null(value):
                return None
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value

        return to_bool
    if isinstance(kind, sa.Integer):
        limit = 2**63 if isinstance(kind, sa.BigInteger) else 2**31

        def to_int(value: Any) -> Any:
            if check_null(value):
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not -limit <= value < limit:
                raise ValueError("must be an integer in range")
            return value

        return to_int
    if isinstance(kind, sa.Float | sa.Numeric):

        def to_float(value: Any) -> Any:
            if check_null(value):
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ValueError("must be a number")
            return value

        return to_float
    if isinstance(kind, sa.String):  # String, Text, AutoString
        length = getattr(kind, "length", None)

        def to_text(value: Any) -> Any:
            if check_null(value):
                return None
            if not isinstance(value, str):
                raise ValueError("must be a string")
            if length is not None and len(value) > length:
                raise ValueError(f"is longer than {length} characters")
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
            return value

        return to_text
    raise TypeError(f"bundles do not know how to carry column type {kind!r} ({column})")


@dataclass
class TablePlan:
    spec: BundleTable
    table: sa.Table
    converters: dict[str, Callable[[Any], Any]]
    required: set[str]  # columns a row must give (no default, not nullable)
    fks: dict[str, str]  # column -> referenced table

    @classmethod
    def of(cls, spec: BundleTable) -> TablePlan:
        table = sql_table(spec.name)
        converters = {c.name: _converter(c) for c in table.columns}
        required = {
            c.name
            for c in table.columns
            if not c.nullable and c.default is None and c.server_default is None and c.name not in spec.blank
        }
        fks = {}
        for column in table.columns:
            for fk in column.foreign_keys:
                fks[column.name] = fk.column.table.name
        return cls(spec, table, converters, required, fks)

    def row_from(self, data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise BundleError(f"{where}: a row must be a JSON object")
        unknown = set(data) - set(self.converters)
        if unknown:
            raise BundleError(
                f"{where}: unknown column(s) {', '.join(sorted(unknown))} — the bundle was made by a newer "
                "AgentDeck; upgrade this one to import it"
            )
        missing = self.required - set(data)
        if missing:
            raise BundleError(f"{where}: missing column(s) {', '.join(sorted(missing))}")
        row: dict[str, Any] = {}
        for name, value in data.items():
            try:
                row[name] = self.converters[name](value)
            except (ValueError, TypeError) as exc:
                raise BundleError(f"{where}: column {name} {exc}") from exc
        for name, value in self.spec.blank.items():
            row[name] = value
        return row


def table_plans() -> list[TablePlan]:
    plans = [TablePlan.of(spec) for spec in TABLES]
    exported = {p.spec.name for p in plans}
    for plan in plans:
        for column, target in plan.fks.items():
            if target not in exported and target != CATALOG_TABLE:
                raise TypeError(f"{plan.spec.name}.{column} points at {target}, which bundles do not carry")
    return plans
