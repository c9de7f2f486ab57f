"""Export of a workspace bundle (issue 17), streamed.

Each table is read in keyset batches (by an indexed order, see `_order_column`) inside one read
transaction (a consistent snapshot; REPEATABLE READ on PostgreSQL), and zip entries are written
incrementally to a non-seekable sink, so `export_chunks` is a generator of bytes that an HTTP
response or a file consumes as it goes: memory holds one batch, never a table.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core.bundle_format import (
    BATCH,
    CATALOG_TABLE,
    DEFINITIONS,
    FILES_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SKIPPED_DIRS,
    TablePlan,
    entry_name,
    sql_table,
    table_plans,
)
from core.db import Database
from core.errors import NotFound
from core.version import VERSION

if TYPE_CHECKING:
    from storage.models import Workspace


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


def export_chunks(db: Database, runs_dir: Path, workspace_id: uuid.UUID) -> Iterator[bytes]:
    """The bundle of a workspace as a stream of byte chunks (memory bounded by one batch)."""
    plans = table_plans()
    with db.read() as session:
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
        with db.engine.connect() as conn:
            if db.dialect == "postgresql":
                # One snapshot for every table: no message without its agent, however long it takes.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                for plan in plans:
                    counts[plan.spec.name] = 0
                    with zf.open(entry_name(plan.spec.name), "w", force_zip64=True) as out:
                        for rows in _batches(conn, plan, workspace_id, parent_ids):
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
                definitions = sql_table(CATALOG_TABLE)
                with zf.open(entry_name(DEFINITIONS), "w") as out:
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
            root = runs_dir / str(run_id) / "workspace"
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


def _batches(
    conn: sa.Connection,
    plan: TablePlan,
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
        yield from _keyset(conn, table, table.c.workspace_id == workspace_id, _order_column(table, "workspace_id"))
        return
    if plan.spec.parent is None:
        raise TypeError(f"{plan.spec.name} has no workspace_id: declare its parent column in TABLES")
    fk = table.c[plan.spec.parent]
    for parent in parent_ids[plan.fks[plan.spec.parent]]:
        yield from _keyset(conn, table, fk == parent, None)


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


def _order_column(table: sa.Table, scope: str) -> sa.Column[Any] | None:
    """The column that follows `scope` in an index of the table, if any: keyset batches ordered by
    (that column, id) walk that index's range for one scope value instead of sorting all of it
    for every batch (e.g. messages by (workspace_id, created_at), status changes by (.., at)). SQLite
    then sorts only the rows that tie on that column, so a batch costs the same at any depth."""
    candidates = [list(i.columns) for i in sorted(table.indexes, key=lambda i: i.name or "")]
    candidates += [list(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    for columns in candidates:
        if len(columns) >= 2 and columns[0].name == scope:
            return columns[1]
    return None


def _workspace_model() -> type[Workspace]:
    from storage.models import Workspace

    return Workspace


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
