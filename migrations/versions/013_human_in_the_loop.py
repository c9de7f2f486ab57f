"""Human in the loop: a run's members can be played by a person or need approval; `run_inputs`
holds each request put to a person; a run waiting for one is `waiting`.

The runs status check gains 'waiting'. SQLite cannot alter a CHECK constraint: batch mode
rebuilds the table (runs has no FTS triggers, see 006).

Revision ID: 013
Revises: 012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "013"
down_revision: str | None = "012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('queued','running','completed','failed','cancelled','interrupted')"
NEW_STATUSES = "status IN ('queued','running','waiting','completed','failed','cancelled','interrupted')"


def _run_status_check(condition: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Batch mode copies the table without its reflected CHECK constraints: the rebuild drops the
        # old check, and the new one is declared on the copy.
        with op.batch_alter_table("runs", recreate="always") as batch:
            batch.create_check_constraint(op.f("ck_runs_status_known"), condition)
    else:
        op.drop_constraint(op.f("ck_runs_status_known"), "runs", type_="check")
        op.create_check_constraint(op.f("ck_runs_status_known"), "runs", condition)


def upgrade() -> None:
    _run_status_check(NEW_STATUSES)
    op.add_column("runs", sa.Column("input_timeout", sa.Integer(), nullable=True))
    op.add_column("run_members", sa.Column("played_by_human", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("run_members", sa.Column("needs_approval", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "run_inputs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("agent_id", sa.Uuid(), nullable=True),
        sa.Column("agent_name", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column(
            "prompt", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("proposed", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answered_by", sa.String(length=200), nullable=False),
        sa.Column("answered_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('answer','approval')", name=op.f("ck_run_inputs_kind_known")),
        sa.CheckConstraint(
            "status IN ('pending','answered','expired','cancelled')", name=op.f("ck_run_inputs_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent_instances.id"],
            name=op.f("fk_run_inputs_agent_id_agent_instances"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_inputs_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_run_inputs_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_inputs")),
        sa.UniqueConstraint("key", name=op.f("uq_run_inputs_key")),
    )
    op.create_index(op.f("ix_run_inputs_agent_id"), "run_inputs", ["agent_id"])
    op.create_index("ix_run_inputs_run_status_created", "run_inputs", ["run_id", "status", "created_at", "id"])
    op.create_index("ix_run_inputs_workspace_status", "run_inputs", ["workspace_id", "status"])


def downgrade() -> None:
    op.drop_table("run_inputs")
    with op.batch_alter_table("run_members") as batch:
        batch.drop_column("needs_approval")
        batch.drop_column("played_by_human")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("input_timeout")
    # Runs waiting for a person when downgraded go back to the closest old status.
    op.execute("UPDATE runs SET status = 'running' WHERE status = 'waiting'")
    _run_status_check(OLD_STATUSES)
