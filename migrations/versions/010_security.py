"""Security (issue 12): admin API tokens, and the sandbox mode each run used.

- `api_tokens.admin`: only an admin token (`token create --admin`) may create workspaces over
  the API. Existing tokens are workspace tokens.
- `runs.sandbox`: how the run's generated code ran — bubblewrap, unsandboxed (operator's
  `--allow-unsandboxed-code`), unavailable (no sandbox, so not run) or off. Existing runs: "".

Revision ID: 010
Revises: 009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "010"
down_revision: str | None = "009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("runs", sa.Column("sandbox", sa.String(length=20), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("sandbox")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("admin")
