"""Workspace bundles (issue 17): a workspace and its whole history in one versioned zip file.

A bundle is a zip of JSON Lines, one entry per table of `TABLES` (the one place that says what
travels), plus `agent_definitions.jsonl` (the catalog entries the agents use, matched by slug on
import), the runs' MetaGPT files under `files/<run id>/<path>`, and `manifest.json` (format
version, row counts). Rows are written column by column from the SQLModel table metadata
(storage/models.py): a column added to a table travels without a change here; a table is one line
in `TABLES`. Secrets never travel: `llm_profiles.api_key_encrypted` is blanked (the key only
decrypts with this install's secret anyway) and API tokens are not exported.

Events are not exported. The event log is the delivery outbox of SPEC §5 — a global `seq`, pruned
after `event_retention_days` — not the record: the record is in the exported tables (messages,
status changes, context versions, runs). Re-numbering another database's events into this one's
`seq` would replay a stale past to every live subscriber. An import appends one
`workspace_imported` event instead, in the import's own transaction, like any other change.

Both directions stream. Export reads each table in keyset batches (by primary key) inside one
read transaction (a consistent snapshot; REPEATABLE READ on PostgreSQL) and writes zip entries
incrementally to a non-seekable sink, so `export_chunks` is a generator of bytes that an HTTP
response or a file consumes as it goes. Import reads entries line by line.

Import is all or nothing: a validation pass reads the whole bundle first (format version, schema
of every row, sizes, references between rows, path safety of run files) and writes nothing; then
one write transaction inserts the rows in batches and stages the run files; any error rolls it
back and removes the staged files. Ids are kept when free and remapped consistently when taken
(foreign keys follow their parent's new id); ids inside JSON payloads are not rewritten.
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from core.config import Settings
from core.db import Database
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from core.events import EventType, append_event
from core.schemas import SLUG_RE
from core.validation import check_storable_json
from core.version import VERSION

if TYPE_CHECKING:
    from storage.models import Workspace

log = logging.getLogger(__name__)

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


def _table(name: str) -> sa.Table:
    return SQLModel.metadata.tables[name]


def _entry(name: str) -> str:
    return f"{name}.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _dump(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=_plain) + "\n").encode()


class _Sink:
    """A write-only, non-seekable file for zipfile: bytes accumulate until `take()`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # zipfile never closes a file it was given; here for the protocol it expects

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


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
class _TablePlan:
    spec: BundleTable
    table: sa.Table
    converters: dict[str, Callable[[Any], Any]]
    required: set[str]  # columns a row must give (no default, not nullable)
    fks: dict[str, str]  # column -> referenced table

    @classmethod
    def of(cls, spec: BundleTable) -> _TablePlan:
        table = _table(spec.name)
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


def _plans() -> list[_TablePlan]:
    plans = [_TablePlan.of(spec) for spec in TABLES]
    exported = {p.spec.name for p in plans}
    for plan in plans:
        for column, target in plan.fks.items():
            if target not in exported and target != CATALOG_TABLE:
                raise TypeError(f"{plan.spec.name}.{column} points at {target}, which bundles do not carry")
    return plans


def _order_column(table: sa.Table, scope: str) -> sa.Column[Any] | None:
    """The column that follows `scope` in an index of the table, if any: keyset batches ordered by
    (that column, id) walk that index's range for one scope value instead of sorting all of it
    for every batch (e.g. messages by (workspace_id, created_at), status changes by (.., at))."""
    candidates = [list(i.columns) for i in sorted(table.indexes, key=lambda i: i.name or "")]
    candidates += [list(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    for columns in candidates:
        if len(columns) >= 2 and columns[0].name == scope:
            return columns[1]
    return None


def _safe_member_path(name: str) -> tuple[str, PurePosixPath]:
    """`files/<run id>/<relative path>` -> (run id, relative path), or BundleError if unsafe."""
    rest = name[len(FILES_PREFIX) :]
    if "\\" in rest or "\x00" in rest:
        raise BundleError(f"run file {name!r}: backslashes and NUL are not allowed in paths")
    path = PurePosixPath(rest)
    if path.is_absolute() or rest.startswith("/"):
        raise BundleError(f"run file {name!r}: absolute paths are not allowed")
    if any(part in {"..", "."} for part in rest.split("/")) or "" in rest.split("/"):
        raise BundleError(f"run file {name!r}: '..', '.' and empty path parts are not allowed")
    parts = path.parts
    if len(parts) < 2:
        raise BundleError(f"run file {name!r}: expected files/<run id>/<path>")
    return parts[0], PurePosixPath(*parts[1:])


@dataclass
class ImportResult:
    workspace_id: uuid.UUID
    slug: str
    rows: dict[str, int]
    files: int
    remapped: int


class BundleService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def runs_dir(self) -> Path:
        return self.settings.data_dir / "runs"

    # -- export --------------------------------------------------------------------------------
    def export_chunks(self, workspace_id: uuid.UUID) -> Iterator[bytes]:
        """The bundle of a workspace as a stream of byte chunks (memory bounded by one batch)."""
        plans = _plans()
        with self.db.read() as session:
            workspace = session.get(_workspace_model(), workspace_id)
            if workspace is None:
                raise NotFound("workspace", workspace_id)
        sink = _Sink()
        counts: dict[str, int] = {}
        run_ids: list[uuid.UUID] = []
        definition_ids: set[uuid.UUID] = set()
        catalog_columns = {p.spec.name: [c for c, t in p.fks.items() if t == CATALOG_TABLE] for p in plans}
        # Ids of the tables that parent-scoped tables hang from (projects, agents, contexts, runs).
        parent_tables = {p.fks[p.spec.parent] for p in plans if p.spec.parent}
        parent_ids: dict[str, list[uuid.UUID]] = {name: [] for name in parent_tables}
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            with self.db.engine.connect() as conn:
                if self.db.dialect == "postgresql":
                    # One snapshot for every table: no message without its agent, however long it takes.
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    for plan in plans:
                        counts[plan.spec.name] = 0
                        with zf.open(_entry(plan.spec.name), "w", force_zip64=True) as out:
                            for rows in self._batches(conn, plan, workspace_id, parent_ids):
                                for row in rows:
                                    row.update(plan.spec.blank)
                                    for column in catalog_columns[plan.spec.name]:
                                        definition_ids.add(row[column])
                                    out.write(_dump(row))
                                if plan.spec.name == "runs":
                                    run_ids.extend(r["id"] for r in rows)
                                if plan.spec.name in parent_ids:
                                    parent_ids[plan.spec.name].extend(r["id"] for r in rows)
                                counts[plan.spec.name] += len(rows)
                                chunk = sink.take()
                                if chunk:
                                    yield chunk
                    definitions = _table(CATALOG_TABLE)
                    with zf.open(_entry(DEFINITIONS), "w") as out:
                        ids = sorted(definition_ids)
                        for start in range(0, len(ids), BATCH):
                            stmt = sa.select(
                                definitions.c.id, definitions.c.slug, definitions.c.name, definitions.c.role_kind
                            ).where(definitions.c.id.in_(ids[start : start + BATCH]))
                            for d in conn.execute(stmt).mappings():
                                out.write(_dump(dict(d)))
            # Run files: read after the database snapshot is released (they are not in it).
            files = 0
            for run_id in run_ids:
                root = self.runs_dir() / str(run_id) / "workspace"
                for path in _walk_files(root):
                    zf.write(path, f"{FILES_PREFIX}{run_id}/{path.relative_to(root).as_posix()}")
                    files += 1
                    chunk = sink.take()
                    if chunk:
                        yield chunk
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "app_version": VERSION,
                "created_at": datetime.now(UTC).isoformat(),
                "workspace": {"id": str(workspace_id), "slug": workspace.slug, "name": workspace.name},
                "tables": [{"name": p.spec.name, "rows": counts[p.spec.name]} for p in plans],
                "definitions": len(definition_ids),
                "files": files,
                "events": "not exported: the event log is a delivery outbox; an import appends workspace_imported",
            }
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2))
        yield sink.take()

    def export_to(self, workspace_id: uuid.UUID, target: Path) -> int:
        """Write the bundle to `target` (via a temporary file, renamed at the end). Returns bytes."""
        partial = target.with_name(target.name + ".partial")
        size = 0
        try:
            with partial.open("wb") as out:
                for chunk in self.export_chunks(workspace_id):
                    out.write(chunk)
                    size += len(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return size

    def _batches(
        self,
        conn: sa.Connection,
        plan: _TablePlan,
        workspace_id: uuid.UUID,
        parent_ids: dict[str, list[uuid.UUID]],
    ) -> Iterator[list[dict[str, Any]]]:
        """The workspace's rows of one table, BATCH at a time, by keyset: on (an indexed column
        after workspace_id, id) for a workspace's table, on id per parent row for a child table."""
        table = plan.table
        if plan.spec.name == "workspaces":
            yield [dict(r) for r in conn.execute(sa.select(table).where(table.c.id == workspace_id)).mappings()]
            return
        if "workspace_id" in table.c:
            yield from self._keyset(
                conn, table, table.c.workspace_id == workspace_id, _order_column(table, "workspace_id")
            )
            return
        if plan.spec.parent is None:
            raise TypeError(f"{plan.spec.name} has no workspace_id: declare its parent column in TABLES")
        fk = table.c[plan.spec.parent]
        for parent in parent_ids[plan.fks[plan.spec.parent]]:
            yield from self._keyset(conn, table, fk == parent, None)

    @staticmethod
    def _keyset(
        conn: sa.Connection, table: sa.Table, scope: Any, order: sa.Column[Any] | None
    ) -> Iterator[list[dict[str, Any]]]:
        key = [order, table.c.id] if order is not None else [table.c.id]
        last: tuple[Any, ...] | None = None
        while True:
            stmt = sa.select(table).where(scope)
            if last is not None:
                stmt = stmt.where(sa.tuple_(*key) > sa.tuple_(*last) if len(key) > 1 else table.c.id > last[0])
            rows = [dict(r) for r in conn.execute(stmt.order_by(*key).limit(BATCH)).mappings()]
            if rows:
                yield rows
            if len(rows) < BATCH:
                return
            last = tuple(rows[-1][c.name] for c in key)

    # -- import --------------------------------------------------------------------------------
    def import_file(
        self, path: Path, new_slug: str | None = None, actor: str = "system", progress: Progress | None = None
    ) -> ImportResult:
        """Validate the whole bundle, then write it in one transaction. Raises BundleError /
        Conflict with the reason; on any error nothing is written."""
        if new_slug is not None and not SLUG_RE.match(new_slug):
            raise InvalidInput(f"{new_slug!r} is not a slug (lowercase letters, digits and dashes)")
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise BundleError(f"not a bundle, or truncated: the zip's directory is missing or damaged ({exc})") from exc
        except OSError as exc:
            raise BundleError(f"cannot read the bundle: {exc}") from exc
        with zf:
            try:
                checked = self._validate(zf)
                return self._write(zf, checked, new_slug, actor, progress)
            except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
                raise BundleError(f"the bundle is damaged or truncated: {exc}") from exc

    def _validate(self, zf: zipfile.ZipFile) -> _Checked:
        manifest = _read_manifest(zf)
        plans = _plans()
        names = set(zf.namelist())
        listed = {t.get("name") for t in manifest.get("tables", []) if isinstance(t, dict)}
        known = {p.spec.name for p in plans}
        if listed - known:
            raise BundleError(
                f"the bundle has table(s) {', '.join(sorted(str(n) for n in listed - known))} that this AgentDeck "
                "does not know: it was made by a newer version"
            )
        expected_rows = {t["name"]: t.get("rows") for t in manifest["tables"] if isinstance(t, dict)}
        checked = _Checked(manifest=manifest, plans=plans)
        # Definitions: the catalog entries the agents use, to be matched by slug here.
        if _entry(DEFINITIONS) not in names:
            raise BundleError(f"the bundle has no {_entry(DEFINITIONS)} entry: truncated or not made by AgentDeck")
        bundle_defs: dict[uuid.UUID, str] = {}
        for lineno, data in _lines(zf, _entry(DEFINITIONS)):
            if not isinstance(data, dict) or not isinstance(data.get("slug"), str):
                raise BundleError(f"{_entry(DEFINITIONS)} line {lineno}: expected an object with id and slug")
            try:
                bundle_defs[uuid.UUID(str(data.get("id")))] = data["slug"]
            except ValueError as exc:
                raise BundleError(f"{_entry(DEFINITIONS)} line {lineno}: bad id") from exc
        definitions = _table(CATALOG_TABLE)
        with self.db.read() as session:
            here = dict(
                session.execute(
                    sa.select(definitions.c.slug, definitions.c.id).where(
                        definitions.c.slug.in_(sorted(set(bundle_defs.values())))
                    )
                ).all()
            )
        missing = sorted(set(bundle_defs.values()) - set(here))
        if missing:
            raise BundleError(
                f"agent definition(s) {', '.join(missing)} are not installed here: install the plugin(s) first"
            )
        checked.definitions = {old: here[slug] for old, slug in bundle_defs.items()}

        referenced = {t for p in plans for t in p.fks.values()}
        for plan in plans:
            name = plan.spec.name
            entry = _entry(name)
            if entry not in names:
                raise BundleError(f"the bundle has no {entry} entry: truncated or not made by AgentDeck")
            ids: set[uuid.UUID] | None = set() if name in referenced else None
            later: list[tuple[str, str, uuid.UUID]] = []  # references within the table, checked at its end
            count = 0
            for lineno, data in _lines(zf, entry):
                where = f"{entry} line {lineno}"
                row = plan.row_from(data, where)
                for column, target in plan.fks.items():
                    value = row.get(column)
                    if value is None:
                        continue
                    if target == name:
                        later.append((where, column, value))
                    elif target == CATALOG_TABLE:
                        if value not in checked.definitions:
                            raise BundleError(f"{where}: {column} {value} is not in {_entry(DEFINITIONS)}")
                    elif value not in checked.ids[target]:
                        raise BundleError(
                            f"{where}: {column} {value} points to a {target} row that is not in the bundle"
                        )
                if ids is not None:
                    ids.add(row["id"])
                if name == "workspaces":
                    checked.workspace = row
                count += 1
            for where, column, value in later:
                if ids is None or value not in ids:
                    raise BundleError(f"{where}: {column} {value} points to a {name} row that is not in the bundle")
            if expected_rows.get(name) is not None and expected_rows[name] != count:
                raise BundleError(f"{entry} has {count} rows but the manifest says {expected_rows[name]}: truncated")
            checked.counts[name] = count
            checked.ids[name] = ids or set()
        if checked.workspace is None or checked.counts["workspaces"] != 1:
            raise BundleError("the bundle must hold exactly one workspace")
        # Run files: inside their run's folder, regular files, within the size limits.
        total = 0
        for info in zf.infolist():
            if not info.filename.startswith(FILES_PREFIX) or info.is_dir():
                continue
            run_id, relative = _safe_member_path(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)  # 0: made without Unix modes
            if kind and kind != stat.S_IFREG:
                raise BundleError(f"run file {info.filename!r}: only regular files are allowed (no symlinks)")
            try:
                run_uuid = uuid.UUID(run_id)
            except ValueError as exc:
                raise BundleError(f"run file {info.filename!r}: {run_id!r} is not a run id") from exc
            if run_uuid not in checked.ids["runs"]:
                raise BundleError(f"run file {info.filename!r}: run {run_id} is not in the bundle")
            if info.file_size > MAX_RUN_FILE_BYTES:
                raise BundleError(f"run file {info.filename!r} is larger than {MAX_RUN_FILE_BYTES} bytes")
            total += info.file_size
            if total > MAX_RUN_FILES_TOTAL:
                raise BundleError(f"the run files add up to more than {MAX_RUN_FILES_TOTAL} bytes")
            checked.files.append((info, run_uuid, relative))
        for entry in names:
            if entry.endswith(".jsonl") and entry.removesuffix(".jsonl") not in known | {DEFINITIONS}:
                raise BundleError(f"the bundle has an entry {entry} that this AgentDeck does not know: newer version")
        return checked

    def _write(
        self, zf: zipfile.ZipFile, checked: _Checked, new_slug: str | None, actor: str, progress: Progress | None
    ) -> ImportResult:
        workspace = checked.workspace
        assert workspace is not None
        slug = new_slug or workspace["slug"]
        total = sum(checked.counts.values()) + len(checked.files)
        done = 0
        staging = self.runs_dir() / f".import-{uuid.uuid4().hex}"
        maps: dict[str, dict[uuid.UUID, uuid.UUID]] = {p.spec.name: {} for p in checked.plans}
        referenced = {t for p in checked.plans for t in p.fks.values()}
        remapped = 0
        try:
            with self.db.write() as session:
                conn = session.connection()
                ws_table = _table("workspaces")
                taken = conn.execute(sa.select(ws_table.c.id).where(ws_table.c.slug == slug)).first()
                if taken is not None:
                    hint = "" if new_slug else " (was this bundle imported already?): import it with --as NEW_SLUG"
                    raise Conflict(f"a workspace with slug {slug!r} already exists{hint}")
                if new_slug is None:
                    same = conn.execute(sa.select(ws_table.c.slug).where(ws_table.c.id == workspace["id"])).first()
                    if same is not None:
                        raise Conflict(
                            f"this bundle's workspace is already here as {same[0]!r}: import it with --as NEW_SLUG"
                        )
                for plan in checked.plans:
                    name = plan.spec.name
                    mapping = maps[name]
                    batch: list[dict[str, Any]] = []
                    # A row may point at a row of its own table that comes later: such columns are
                    # inserted empty and set once the whole table is in (the tables holding them are small).
                    own_refs: list[tuple[dict[str, Any], str, uuid.UUID]] = []
                    for lineno, data in _lines(zf, _entry(name)):
                        row = plan.row_from(data, f"{_entry(name)} line {lineno}")
                        if name == "workspaces":
                            row["slug"] = slug
                        for column, target in plan.fks.items():
                            value = row.get(column)
                            if value is None:
                                continue
                            if target == name:
                                own_refs.append((row, column, value))
                                row[column] = None
                            elif target == CATALOG_TABLE:
                                row[column] = checked.definitions[value]
                            else:
                                row[column] = maps[target].get(value, value)
                        batch.append(row)
                        if len(batch) >= BATCH:
                            remapped += self._insert(conn, plan, batch, mapping if name in referenced else None)
                            done += len(batch)
                            batch = []
                            if progress:
                                progress(done, total)
                    if batch:
                        remapped += self._insert(conn, plan, batch, mapping if name in referenced else None)
                        done += len(batch)
                        if progress:
                            progress(done, total)
                    for row, column, value in own_refs:
                        conn.execute(
                            plan.table.update()
                            .where(plan.table.c.id == row["id"])
                            .values({column: mapping.get(value, value)})
                        )
                new_workspace_id = maps["workspaces"].get(workspace["id"], workspace["id"])
                for info, run_id, relative in checked.files:
                    new_run = maps["runs"].get(run_id, run_id)
                    destination = staging / str(new_run) / "workspace" / Path(*relative.parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as source, destination.open("wb") as out:
                        shutil.copyfileobj(source, out, 1024 * 1024)
                    done += 1
                    if progress and done % 100 == 0:
                        progress(done, total)
                append_event(
                    session,
                    EventType.WORKSPACE_IMPORTED,
                    new_workspace_id,
                    {
                        "slug": slug,
                        "rows": dict(checked.counts),
                        "files": len(checked.files),
                        "remapped_ids": remapped,
                        "actor": actor,
                        "bundle_app_version": checked.manifest.get("app_version"),
                    },
                )
            # Committed: move the staged run folders into place.
            if staging.exists():
                for run_dir in staging.iterdir():
                    run_dir.replace(self.runs_dir() / run_dir.name)
        except DomainError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise BundleError(
                f"the database refused the bundle, nothing was imported: {getattr(exc, 'orig', None) or exc}"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if progress:
            progress(total, total)
        return ImportResult(
            workspace_id=new_workspace_id,
            slug=slug,
            rows=dict(checked.counts),
            files=len(checked.files),
            remapped=remapped,
        )

    def _insert(
        self,
        conn: sa.Connection,
        plan: _TablePlan,
        rows: list[dict[str, Any]],
        mapping: dict[uuid.UUID, uuid.UUID] | None,
    ) -> int:
        """Insert a batch; rows whose id is taken get a new one (recorded in `mapping` when others
        refer to this table). Returns how many ids were changed."""
        table = plan.table
        ids = [r["id"] for r in rows]
        taken = set(conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids))).scalars())
        if plan.spec.name == "runs":  # a folder of that id on disk is taken too
            taken |= {i for i in ids if (self.runs_dir() / str(i)).exists()}
        for row in rows:
            if row["id"] in taken:
                new = uuid.uuid4()
                if mapping is not None:
                    mapping[row["id"]] = new
                row["id"] = new
        conn.execute(table.insert(), rows)
        return len(taken)


@dataclass
class _Checked:
    manifest: dict[str, Any]
    plans: list[_TablePlan]
    definitions: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    ids: dict[str, set[uuid.UUID]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    workspace: dict[str, Any] | None = None
    files: list[tuple[zipfile.ZipInfo, uuid.UUID, PurePosixPath]] = field(default_factory=list)


def _workspace_model() -> type[Workspace]:
    from storage.models import Workspace

    return Workspace


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        raw = zf.read(MANIFEST)
    except KeyError as exc:
        raise BundleError(f"the bundle has no {MANIFEST}: not an AgentDeck bundle") from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"not an AgentDeck bundle ({MANIFEST} does not say format {FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{MANIFEST}: format_version must be a positive integer")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {version} is newer than this AgentDeck reads (up to {FORMAT_VERSION}): "
            "upgrade AgentDeck to import it"
        )
    if not isinstance(manifest.get("tables"), list):
        raise BundleError(f"{MANIFEST}: tables must be a list")
    return manifest


def _lines(zf: zipfile.ZipFile, entry: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of one JSONL entry, a line at a time."""
    with zf.open(entry) as raw:
        source: IO[bytes] = raw
        lineno = 0
        while True:
            line = source.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            lineno += 1
            if len(line) > MAX_LINE_BYTES:
                raise BundleError(f"{entry} line {lineno} is longer than {MAX_LINE_BYTES} bytes")
            if not line.endswith(b"\n"):
                raise BundleError(f"{entry} line {lineno} is cut off: the bundle is truncated")
            try:
                data = json.loads(line, parse_constant=_no_constant)
            except ValueError as exc:
                raise BundleError(f"{entry} line {lineno} is not valid JSON: {exc}") from exc
            # Only a line with this escape can hold a NUL (a slow look at the values only then).
            if b"\\u0000" in line:
                try:
                    check_storable_json(data, f"{entry} line {lineno}")
                except InvalidInput as exc:
                    raise BundleError(str(exc)) from exc
            yield lineno, data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _walk_files(root: Path) -> Iterator[Path]:
    """Regular files under `root`, sorted, without following symlinks, skipping .git."""
    if not root.is_dir() or root.is_symlink():
        return
    for path in sorted(root.iterdir()):
        if path.is_symlink():
            continue
        if path.is_dir():
            if path.name not in SKIPPED_DIRS:
                yield from _walk_files(path)
        elif path.is_file():
            yield path
