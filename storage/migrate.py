"""Bring a database to the code's schema at startup, safely.

- A SQLite file is copied to a timestamped backup before any pending revision runs.
- A database stamped with a revision this code does not know (written by a newer AgentDeck) is
  refused: running old code on it could corrupt data the new code relies on.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseTooNew(RuntimeError):
    """The database was migrated by a newer AgentDeck than this one."""


@dataclass(frozen=True)
class MigrationResult:
    from_revision: str | None
    to_revision: str
    backup: Path | None

    @property
    def migrated(self) -> bool:
        return self.from_revision != self.to_revision


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logging"] = False
    return cfg


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, url: str, sqlite_path: Path | None = None) -> MigrationResult:
    """Migrate to head; back up a SQLite file first when something is pending."""
    cfg = alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    assert head is not None
    current = current_revision(engine)
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        raise DatabaseTooNew(
            f"The database is at schema revision {current!r}, which this version of AgentDeck "
            f"does not know (its newest is {head!r}). It was written by a newer AgentDeck: "
            "upgrade AgentDeck, or point it at another database."
        )
    if current == head:
        return MigrationResult(current, head, None)
    backup = None
    if sqlite_path is not None and sqlite_path.exists() and current is not None:
        backup = _backup_sqlite(sqlite_path, current)
        log.info("backed up %s to %s before migrating", sqlite_path, backup)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("migrated database from %s to %s", current or "empty", head)
    return MigrationResult(current, head, backup)


def _backup_sqlite(path: Path, revision: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.stem}.{revision}.{stamp}.bak{path.suffix}")
    # The backup API copies a consistent snapshot even with WAL content not yet checkpointed.
    with sqlite3.connect(path) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


def downgrade(engine: Engine, url: str, revision: str = "base") -> None:
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
