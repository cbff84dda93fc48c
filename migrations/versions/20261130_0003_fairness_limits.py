"""fair job claims, rate-limit counters, model usage

Revision ID: 20261130_0003
Revises: 20261130_0002
Create Date: 2026-11-30 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_0003"
down_revision: str | None = "20261130_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fairness_key", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.drop_index(
            "ix_jobs_queued_run_after", postgresql_where=QUEUED, sqlite_where=QUEUED
        )
        batch_op.create_index(
            "ix_jobs_queued_key_run_after",
            ["fairness_key", "run_after"],
            unique=False,
            postgresql_where=QUEUED,
            sqlite_where=QUEUED,
        )
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_rate_limit_counters")),
    )
    op.create_index("ix_rate_limit_counters_window_start", "rate_limit_counters", ["window_start"])
    op.create_table(
        "organization_usage",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_calls", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_usage_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", "day", name=op.f("pk_organization_usage")),
    )
    op.create_table(
        "note_usage",
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("model_calls", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["notes.id"],
            name=op.f("fk_note_usage_note_id_notes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("note_id", name=op.f("pk_note_usage")),
    )


def downgrade() -> None:
    op.drop_table("note_usage")
    op.drop_table("organization_usage")
    op.drop_index("ix_rate_limit_counters_window_start", table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_jobs_queued_key_run_after", postgresql_where=QUEUED, sqlite_where=QUEUED
        )
        batch_op.create_index(
            "ix_jobs_queued_run_after",
            ["run_after"],
            unique=False,
            postgresql_where=QUEUED,
            sqlite_where=QUEUED,
        )
        batch_op.drop_column("fairness_key")
