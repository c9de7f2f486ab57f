"""The agent catalog, agent instances and their status audit trail.

Revision ID: 002
Revises: 001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.types

revision: str = "002"
down_revision: str | None = "001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_definitions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("role_kind", sa.String(length=64), nullable=False),
        sa.Column(
            "default_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "config_schema",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_definitions")),
        sa.UniqueConstraint("slug", name=op.f("uq_agent_definitions_slug")),
    )

    op.create_table(
        "agent_instances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("definition_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("lock_version", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('idle','initializing','active','busy','error','offline')",
            name=op.f("ck_agent_instances_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["agent_definitions.id"],
            name=op.f("fk_agent_instances_definition_id_agent_definitions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_agent_instances_project_id_projects"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_agent_instances_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_instances")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_agent_instances_workspace_id_name")),
    )
    with op.batch_alter_table("agent_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_instances_definition_id"),
            ["definition_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_agent_instances_project_id"), ["project_id"], unique=False)
        batch_op.create_index(
            "ix_agent_instances_workspace_created",
            ["workspace_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_agent_instances_workspace_status",
            ["workspace_id", "status", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "agent_status_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent_instances.id"],
            name=op.f("fk_agent_status_changes_agent_id_agent_instances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_agent_status_changes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_status_changes")),
    )
    with op.batch_alter_table("agent_status_changes", schema=None) as batch_op:
        batch_op.create_index("ix_agent_status_changes_agent_at", ["agent_id", "at", "id"], unique=False)
        batch_op.create_index("ix_agent_status_changes_workspace_at", ["workspace_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agent_status_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_status_changes_workspace_at")
        batch_op.drop_index("ix_agent_status_changes_agent_at")

    op.drop_table("agent_status_changes")

    with op.batch_alter_table("agent_instances", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_instances_workspace_status")
        batch_op.drop_index("ix_agent_instances_workspace_created")
        batch_op.drop_index(batch_op.f("ix_agent_instances_project_id"))
        batch_op.drop_index(batch_op.f("ix_agent_instances_definition_id"))

    op.drop_table("agent_instances")

    op.drop_table("agent_definitions")
