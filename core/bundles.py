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

Both directions stream (core/bundle_export.py, core/bundle_import.py; what travels and the row
format are core/bundle_format.py). Export reads each table in keyset batches (by primary key) inside one
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

import uuid
from collections.abc import Iterator
from pathlib import Path

from core.bundle_export import export_chunks
from core.bundle_format import FORMAT, FORMAT_VERSION, MANIFEST, TABLES, BundleError, BundleTable, Progress
from core.bundle_import import ImportResult, import_bundle
from core.config import Settings
from core.db import Database

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "TABLES",
    "BundleError",
    "BundleService",
    "BundleTable",
    "ImportResult",
]


class BundleService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def runs_dir(self) -> Path:
        return self.settings.data_dir / "runs"

    def export_chunks(self, workspace_id: uuid.UUID) -> Iterator[bytes]:
        """The bundle of a workspace as a stream of byte chunks (memory bounded by one batch)."""
        return export_chunks(self.db, self.runs_dir(), workspace_id)

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

    def import_file(
        self, path: Path, new_slug: str | None = None, actor: str = "system", progress: Progress | None = None
    ) -> ImportResult:
        """Validate the whole bundle, then write it in one transaction. Raises BundleError /
        Conflict with the reason; on any error nothing is written."""
        return import_bundle(self.db, self.runs_dir(), path, new_slug, actor, progress)
