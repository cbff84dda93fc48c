"""a write over a limit fails its own statement: notes_api_within_limits()

Revision ID: 20261207_0021
Revises: 20261207_0020
Create Date: 2026-12-07 20:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261207_0021"
down_revision: str | None = "20261207_0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Postgres: a create counts its write limits in its own statement (limits/counter.py), and
# this checks the counts: each key's count (this write included) within its quota, or the
# statement fails with SQLSTATE NL429 and the counts as its DETAIL, so the write and every
# count it made are undone together (only an accepted write counts) and the refusal can
# still say where each limit stands.
_PG_FUNCTION = """
CREATE FUNCTION notes_api_within_limits(keys text[], counts integer[], quotas integer[])
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
  standing json := (SELECT json_object_agg(k, c) FROM unnest(keys, counts) AS t (k, c));
BEGIN
  FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
    IF counts[i] > quotas[i] THEN
      RAISE EXCEPTION 'write limit reached' USING ERRCODE = 'NL429', DETAIL = standing::text;
    END IF;
  END LOOP;
  RETURN standing;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION notes_api_within_limits(text[], integer[], integer[])")
