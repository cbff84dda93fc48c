"""announce every change that decides a caller (auth/callers.py), and index a session's
unrevoked refresh tokens for the caller check

Revision ID: 20261207_0001
Revises: 20261130_0004
Create Date: 2026-12-07 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0001"
down_revision: str | None = "20261130_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# On commit, every process forgets the confirmations of the user named in the payload: a
# user's role, activity or organization changed, or one of its sessions was revoked or its
# refresh tokens deleted. (A refresh marks its token used, which ends nothing: not announced.)
_ANNOUNCE = """
CREATE FUNCTION notes_api_announce_caller_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'users' THEN
    PERFORM pg_notify('notes_api_callers', OLD.id::text);
  ELSE
    PERFORM pg_notify('notes_api_callers', OLD.user_id::text);
  END IF;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    # The caller check probes a session's unrevoked tokens by family.
    op.create_index(
        "ix_refresh_tokens_family_live",
        "refresh_tokens",
        ["family_id"],
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ANNOUNCE)
        op.execute(
            "CREATE TRIGGER users_announce_caller_change"
            " AFTER UPDATE OF role, is_active, organization_id OR DELETE ON users"
            " FOR EACH ROW EXECUTE FUNCTION notes_api_announce_caller_change()"
        )
        op.execute(
            "CREATE TRIGGER refresh_tokens_announce_caller_change"
            " AFTER UPDATE OF revoked_at OR DELETE ON refresh_tokens"
            " FOR EACH ROW EXECUTE FUNCTION notes_api_announce_caller_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER refresh_tokens_announce_caller_change ON refresh_tokens")
        op.execute("DROP TRIGGER users_announce_caller_change ON users")
        op.execute("DROP FUNCTION notes_api_announce_caller_change()")
    op.drop_index("ix_refresh_tokens_family_live", table_name="refresh_tokens")
