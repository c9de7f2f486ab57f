"""Durable runs (DBOS workflows): a run's last announced round, its execution attempts, the round
it resumed at after a restart, and the run it was forked from.

The workflows themselves live in DBOS's own system database (a SQLite file of its own beside
agentdeck.db, or the `dbos` schema on PostgreSQL), which DBOS creates and migrates at launch.

Revision ID: 009
Revises: 008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "009"
down_revision: str | None = "008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("current_round", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("resumed_at_round", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_run_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("fork_round", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_runs_parent_run_id_runs", "runs", ["parent_run_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_runs_parent_run_id", ["parent_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent_run_id")
        batch.drop_constraint("fk_runs_parent_run_id_runs", type_="foreignkey")
        batch.drop_column("fork_round")
        batch.drop_column("parent_run_id")
        batch.drop_column("resumed_at_round")
        batch.drop_column("attempts")
        batch.drop_column("current_round")
