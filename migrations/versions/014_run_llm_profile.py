"""A run's own LLM profile: the name of the workspace profile chosen when it was created (or for a
fork); null keeps the old behaviour, the workspace's default profile or the demo model.

Revision ID: 014
Revises: 013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "014"
down_revision: str | None = "013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("llm_profile", sa.String(length=200), nullable=True))


def downgrade() -> None:
    # Runs keep their recorded `llm_label`: what they used stays readable.
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("llm_profile")
