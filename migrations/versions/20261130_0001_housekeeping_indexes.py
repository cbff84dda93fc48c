"""login attempts counted per key and window; indexes for house-keeping purges; on Postgres,
job changes announced by a trigger (NOTIFY on the channels named in jobs/signals.py)

Revision ID: 20261130_0001
Revises: 0001
Create Date: 2026-11-30 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_0001"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Delivered on commit, and only then. A job queued (inserted, or put back) wakes idle
# workers; a job done or failed wakes the long polls waiting for its subject.
_NOTIFY_FUNCTION = """
CREATE FUNCTION notes_api_announce_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'queued' THEN
    PERFORM pg_notify('notes_api_jobs_queued', NEW.kind);
  ELSIF NEW.status IN ('done', 'failed') THEN
    PERFORM pg_notify('notes_api_jobs_finished', NEW.kind || ':' || coalesce(NEW.dedupe_key, ''));
  END IF;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_NOTIFY_FUNCTION)
        op.execute(
            "CREATE TRIGGER jobs_announce_insert AFTER INSERT ON jobs"
            " FOR EACH ROW EXECUTE FUNCTION notes_api_announce_job()"
        )
        op.execute(
            "CREATE TRIGGER jobs_announce_update AFTER UPDATE OF status ON jobs"
            " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)"
            " EXECUTE FUNCTION notes_api_announce_job()"
        )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_column("blocked_until")
        batch_op.create_index(
            batch_op.f("ix_login_attempts_window_started_at"), ["window_started_at"], unique=False
        )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refresh_tokens_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER jobs_announce_update ON jobs")
        op.execute("DROP TRIGGER jobs_announce_insert ON jobs")
        op.execute("DROP FUNCTION notes_api_announce_job()")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_expires_at"))
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_attempts_window_started_at"))
        batch_op.add_column(sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True))
