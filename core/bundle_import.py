"""Import of a workspace bundle (issue 17): all or nothing.

A validation pass reads the whole bundle first (format version, schema of every row, sizes,
references between rows, path safety of run files) and writes nothing; then one write transaction
inserts the rows in batches and stages the run files; any error rolls it back and removes the
staged files. Entries are read line by line. Ids are kept when free and remapped consistently when
taken (foreign keys follow their parent's new id); ids inside JSON payloads are not rewritten.
"""

from __future__ import annotations

import json
import shutil
import stat
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import sqlalchemy as sa

from core.bundle_format import (
    BATCH,
    CATALOG_TABLE,
    DEFINITIONS,
    FILES_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MAX_LINE_BYTES,
    MAX_RUN_FILE_BYTES,
    MAX_RUN_FILES_TOTAL,
    BundleError,
    Progress,
    TablePlan,
    entry_name,
    sql_table,
    table_plans,
)
from core.db import Database
from core.errors import Conflict, DomainError, InvalidInput
from core.events import EventType, append_event
from core.messages import index_pending_messages
from core.schemas import SLUG_RE
from core.validation import check_storable_json


@dataclass
class ImportResult:
    workspace_id: uuid.UUID
    slug: str
    rows: dict[str, int]
    files: int
    remapped: int


def import_bundle(
    db: Database,
    runs_dir: Path,
    path: Path,
    new_slug: str | None = None,
    actor: str = "system",
    progress: Progress | None = None,
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
            checked = _validate(db, zf)
            return _write(db, runs_dir, zf, checked, new_slug, actor, progress)
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
            raise BundleError(f"the bundle is damaged or truncated: {exc}") from exc


def _validate(db: Database, zf: zipfile.ZipFile) -> _Checked:
    manifest = _read_manifest(zf)
    plans = table_plans()
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
    if entry_name(DEFINITIONS) not in names:
        raise BundleError(f"the bundle has no {entry_name(DEFINITIONS)} entry: truncated or not made by AgentDeck")
    bundle_defs: dict[uuid.UUID, str] = {}
    for lineno, data in _lines(zf, entry_name(DEFINITIONS)):
        if not isinstance(data, dict) or not isinstance(data.get("slug"), str):
            raise BundleError(f"{entry_name(DEFINITIONS)} line {lineno}: expected an object with id and slug")
        try:
            bundle_defs[uuid.UUID(str(data.get("id")))] = data["slug"]
        except ValueError as exc:
            raise BundleError(f"{entry_name(DEFINITIONS)} line {lineno}: bad id") from exc
    definitions = sql_table(CATALOG_TABLE)
    with db.read() as session:
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
        entry = entry_name(name)
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
                        raise BundleError(f"{where}: {column} {value} is not in {entry_name(DEFINITIONS)}")
                elif value not in checked.ids[target]:
                    raise BundleError(f"{where}: {column} {value} points to a {target} row that is not in the bundle")
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
    db: Database,
    runs_dir: Path,
    zf: zipfile.ZipFile,
    checked: _Checked,
    new_slug: str | None,
    actor: str,
    progress: Progress | None,
) -> ImportResult:
    workspace = checked.workspace
    assert workspace is not None
    slug = new_slug or workspace["slug"]
    total = sum(checked.counts.values()) + len(checked.files)
    done = 0
    staging = runs_dir / f".import-{uuid.uuid4().hex}"
    maps: dict[str, dict[uuid.UUID, uuid.UUID]] = {p.spec.name: {} for p in checked.plans}
    referenced = {t for p in checked.plans for t in p.fks.values()}
    remapped = 0
    try:
        # One transaction, so all or nothing. On SQLite its pages stay in the WAL until the commit:
        # the only memory that grows with the bundle is the WAL's index (the -shm mapping, 8 bytes a
        # frame, ~2 MiB for a million messages); SQLite's page cache is bounded (cache_size).
        with db.write() as session:
            conn = session.connection()
            ws_table = sql_table("workspaces")
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
                for lineno, data in _lines(zf, entry_name(name)):
                    row = plan.row_from(data, f"{entry_name(name)} line {lineno}")
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
                        remapped += _insert(conn, plan, batch, mapping if name in referenced else None, runs_dir)
                        done += len(batch)
                        batch = []
                        if progress:
                            progress(done, total)
                if batch:
                    remapped += _insert(conn, plan, batch, mapping if name in referenced else None, runs_dir)
                    done += len(batch)
                    if progress:
                        progress(done, total)
                for row, column, value in own_refs:
                    conn.execute(
                        plan.table.update()
                        .where(plan.table.c.id == row["id"])
                        .values({column: mapping.get(value, value)})
                    )
            # SQLite queues new messages for the search index (core.messages): index them here, in the
            # import's transaction, rather than in the first search after it.
            index_pending_messages(conn)
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
                run_dir.replace(runs_dir / run_dir.name)
    except DomainError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        # Only errors from the driver carry `orig` (CompileError, InvalidRequestError do not).
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
    conn: sa.Connection,
    plan: TablePlan,
    rows: list[dict[str, Any]],
    mapping: dict[uuid.UUID, uuid.UUID] | None,
    runs_dir: Path,
) -> int:
    """Insert a batch; rows whose id is taken get a new one (recorded in `mapping` when others
    refer to this table). Returns how many ids were changed."""
    table = plan.table
    ids = [r["id"] for r in rows]
    taken = set(conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids))).scalars())
    if plan.spec.name == "runs":  # a folder of that id on disk is taken too
        taken |= {i for i in ids if (runs_dir / str(i)).exists()}
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
    plans: list[TablePlan]
    definitions: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    ids: dict[str, set[uuid.UUID]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    workspace: dict[str, Any] | None = None
    files: list[tuple[zipfile.ZipInfo, uuid.UUID, PurePosixPath]] = field(default_factory=list)


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
