"""Covering indexes for analytics (core/analytics.py).

Every analytics aggregate reads a (workspace, time) range of agent_messages or
agent_status_changes. The old two-column indexes found the range but then fetched each row from
the table (one lookup per message); these indexes carry every column the aggregates read, so a
range of a million messages is an index-only scan on SQLite and PostgreSQL alike. They keep the
old leading columns, so every query the old indexes served is served as well, and they replace
them (one index per table to maintain on insert, not two).

Plain CREATE/DROP INDEX: no table rebuild, so migration 006's FTS triggers are untouched.

Revision ID: 007
Revises: 006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "007"
down_revision: str | None = "006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGES_COLUMNS = ["workspace_id", "created_at", "agent_id", "prompt_tokens", "completion_tokens", "cost"]
STATUS_COLUMNS = ["workspace_id", "at", "agent_id", "to_status"]


def upgrade() -> None:
    op.create_index("ix_agent_messages_analytics", "agent_messages", MESSAGES_COLUMNS, unique=False)
    op.drop_index("ix_agent_messages_workspace_created", table_name="agent_messages")
    op.create_index("ix_agent_status_changes_analytics", "agent_status_changes", STATUS_COLUMNS, unique=False)
    op.drop_index("ix_agent_status_changes_workspace_at", table_name="agent_status_changes")


def downgrade() -> None:
    op.create_index(
        "ix_agent_status_changes_workspace_at", "agent_status_changes", ["workspace_id", "at"], unique=False
    )
    op.drop_index("ix_agent_status_changes_analytics", table_name="agent_status_changes")
    op.create_index(
        "ix_agent_messages_workspace_created", "agent_messages", ["workspace_id", "created_at"], unique=False
    )
    op.drop_index("ix_agent_messages_analytics", table_name="agent_messages")
