"""login attempt keys fit the longest email from the longest client address

Revision ID: 20261130_0004
Revises: 20261130_0003
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_0004"
down_revision: str | None = "20261130_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # "client:" + an address (45) + ":" + an email (254) is 307 characters.
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.alter_column(
            "key", existing_type=sa.String(length=300), type_=sa.String(length=320)
        )


def downgrade() -> None:
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.alter_column(
            "key", existing_type=sa.String(length=320), type_=sa.String(length=300)
        )
