"""Full-text search over message content (core.messages.MessageService.search).

SQLite: an FTS5 external-content table `agent_messages_fts` over agent_messages.content, keyed
by the message row's rowid and kept in sync by triggers, so every write path (services, raw SQL,
ON DELETE CASCADE from an agent or workspace) updates the index in the same transaction.
PostgreSQL: a GIN index on to_tsvector('simple', content); the query repeats that expression.

Autogenerate ignores both (migrations/env.py skips names starting with agent_messages_fts /
ix_agent_messages_fts), which is why they are raw SQL here.

Caveat for later revisions: a SQLite batch rebuild of agent_messages (batch_alter_table with
recreate) drops these triggers and may renumber rowids; such a revision must create the
three triggers again after the rebuild and then run the FTS 'rebuild' command (SQLITE_UPGRADE[1:]).

Revision ID: 006
Revises: 005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "006"
down_revision: str | None = "005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS_TABLE = "agent_messages_fts"
PG_INDEX = "ix_agent_messages_fts"

SQLITE_UPGRADE = [
    f"""
    CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(
        content, content='agent_messages', content_rowid='rowid'
    )
    """,
    f"""
    CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON agent_messages BEGIN
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.rowid, new.content);
    END
    """,
    f"""
    CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON agent_messages BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.rowid, old.content);
    END
    """,
    f"""
    CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE OF content ON agent_messages BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content) VALUES ('delete', old.rowid, old.content);
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.rowid, new.content);
    END
    """,
    # Index the messages that already exist.
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
]

SQLITE_DOWNGRADE = [
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_au",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ad",
    f"DROP TRIGGER IF EXISTS {FTS_TABLE}_ai",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]

# 'simple': no stemming or stop words, so any word people typed can be found, in any language.
POSTGRES_UPGRADE = [
    f"CREATE INDEX {PG_INDEX} ON agent_messages USING gin (to_tsvector('simple'::regconfig, content))",
]

POSTGRES_DOWNGRADE = [f"DROP INDEX IF EXISTS {PG_INDEX}"]


def _statements(upgrading: bool) -> list[str]:
    # The migration context's dialect also works offline (`alembic upgrade --sql`).
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        return SQLITE_UPGRADE if upgrading else SQLITE_DOWNGRADE
    if dialect == "postgresql":
        return POSTGRES_UPGRADE if upgrading else POSTGRES_DOWNGRADE
    raise NotImplementedError(f"message search supports SQLite and PostgreSQL, not {dialect}")


def upgrade() -> None:
    for statement in _statements(upgrading=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(upgrading=False):
        op.execute(statement)
