"""A run records whether it may execute generated code (the workspace switch at its creation).

Existing runs get true, the default they ran under. ADD COLUMN with a constant default needs no
table rebuild on SQLite; runs has no FTS triggers, so the downgrade's rebuild is harmless.

Revision ID: 008
Revises: 007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "008"
down_revision: str | None = "007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("code_execution", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("code_execution")
