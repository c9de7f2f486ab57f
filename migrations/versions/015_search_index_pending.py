"""SQLite: a new message is queued for the full-text index instead of indexed in its own transaction.

Indexing a message with FTS5 in the transaction that writes it made each message write its own
index segment (and FTS5 then merges them). Now the insert trigger only records the message's rowid
in `agent_messages_fts_pending`; core.messages indexes the queue in batches (every few hundred
messages, at the end of a bundle import), and a search also matches the queued messages through a
temporary index of its own read, so it finds every committed message without writing.

The delete and update triggers keep the index exact either way: a row still pending is only taken
off the queue (FTS5 must never be told to delete what it never indexed), an indexed row is deleted
from the index as before. A rowid that SQLite reuses after the newest rows were deleted is queued
again by the insert trigger, so it is indexed with its new content.

PostgreSQL is unchanged: its GIN index has a pending list of its own (fastupdate).

Caveats. A batch rebuild of agent_messages (as in 006) drops these triggers and may renumber rowids:
such a revision must create this revision's triggers again, empty the queue and then index
everything afresh ('rebuild'). FTS5's 'integrity-check' against the table fails while messages are
queued: index the queue first (core.messages.index_pending_messages).

Revision ID: 015
Revises: 014
"""

from collections.abc import Sequence

from alembic import op

revision: str = "015"
down_revision: str | None = "014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS_TABLE = "agent_messages_fts"
PENDING_TABLE = "agent_messages_fts_pending"
NOT_PENDING = f"NOT EXISTS (SELECT 1 FROM {PENDING_TABLE} WHERE rowid = old.rowid)"

SQLITE_UPGRADE = [
    f"CREATE TABLE {PENDING_TABLE} (rowid INTEGER PRIMARY KEY)",
    f"DROP TRIGGER {FTS_TABLE}_ai",
    f"DROP TRIGGER {FTS_TABLE}_ad",
    f"DROP TRIGGER {FTS_TABLE}_au",
    f"""
    CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON agent_messages BEGIN
        INSERT INTO {PENDING_TABLE}(rowid) VALUES (new.rowid);
    END
    """,
    f"""
    CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON agent_messages BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)
            SELECT 'delete', old.rowid, old.content WHERE {NOT_PENDING};
        DELETE FROM {PENDING_TABLE} WHERE rowid = old.rowid;
    END
    """,
    f"""
    CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE OF content ON agent_messages BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)
            SELECT 'delete', old.rowid, old.content WHERE {NOT_PENDING};
        INSERT INTO {FTS_TABLE}(rowid, content)
            SELECT new.rowid, new.content WHERE {NOT_PENDING};
    END
    """,
]

# Back to 006's triggers, with whatever is still pending indexed first. Written out here rather than
# imported from 006: a revision is a snapshot, and must not change when another one is edited.
SQLITE_DOWNGRADE = [
    f"""
    INSERT INTO {FTS_TABLE}(rowid, content)
        SELECT m.rowid, m.content FROM {PENDING_TABLE} p JOIN agent_messages m ON m.rowid = p.rowid
    """,
    f"DROP TRIGGER {FTS_TABLE}_ai",
    f"DROP TRIGGER {FTS_TABLE}_ad",
    f"DROP TRIGGER {FTS_TABLE}_au",
    f"DROP TABLE {PENDING_TABLE}",
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
]


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
