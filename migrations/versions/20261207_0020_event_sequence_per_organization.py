"""event ids counted per organization: note_events.seq and note_event_counters

Revision ID: 20261207_0020
Revises: 20261207_0001
Create Date: 2026-12-07 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0020"
down_revision: str | None = "20261207_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Each new event takes its organization's next number, in the database, whatever inserts
# it. The counter row stays locked until the event's transaction ends, so an organization's
# numbers commit in order and without gaps (a rolled-back number is taken again).
_PG_FUNCTION = """
CREATE FUNCTION notes_api_number_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO note_event_counters AS c (organization_id, last_seq)
  VALUES (NEW.organization_id, 1)
  ON CONFLICT (organization_id) DO UPDATE SET last_seq = c.last_seq + 1
  RETURNING c.last_seq INTO NEW.seq;
  RETURN NEW;
END $$
"""
_PG_TRIGGER = (
    "CREATE TRIGGER note_events_number BEFORE INSERT ON note_events"
    " FOR EACH ROW EXECUTE FUNCTION notes_api_number_event()"
)
# SQLite cannot change NEW in a trigger: the row is numbered just after its insert, in the
# same statement (SQLite's writers take turns, so nothing can come between).
_SQLITE_TRIGGER = """
CREATE TRIGGER note_events_number AFTER INSERT ON note_events
BEGIN
  INSERT INTO note_event_counters (organization_id, last_seq)
  VALUES (NEW.organization_id, 1)
  ON CONFLICT (organization_id) DO UPDATE SET last_seq = last_seq + 1;
  UPDATE note_events
  SET seq = (
    SELECT last_seq FROM note_event_counters WHERE organization_id = NEW.organization_id
  )
  WHERE id = NEW.id;
END
"""


def upgrade() -> None:
    op.create_table(
        "note_event_counters",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("last_seq", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_note_event_counters_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_note_event_counters")),
    )
    with op.batch_alter_table("note_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", _ID, server_default="0", nullable=False))
    # Events kept from before keep their number (a client's Last-Event-ID still resumes);
    # each organization counts on from its highest.
    op.execute("UPDATE note_events SET seq = id")
    op.execute(
        "INSERT INTO note_event_counters (organization_id, last_seq)"
        " SELECT organization_id, MAX(id) FROM note_events GROUP BY organization_id"
    )
    with op.batch_alter_table("note_events", schema=None) as batch_op:
        batch_op.drop_index("ix_note_events_organization_id_id")
        batch_op.drop_index("ix_note_events_owner_id_id")
        batch_op.drop_index("ix_note_events_note_id_id")
        batch_op.create_index(
            "ux_note_events_organization_id_seq", ["organization_id", "seq"], unique=True
        )
        batch_op.create_index("ix_note_events_owner_id_seq", ["owner_id", "seq"], unique=False)
        batch_op.create_index("ix_note_events_note_id_seq", ["note_id", "seq"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER note_events_number ON note_events")
        op.execute("DROP FUNCTION notes_api_number_event()")
    else:
        op.execute("DROP TRIGGER note_events_number")
    with op.batch_alter_table("note_events", schema=None) as batch_op:
        batch_op.drop_index("ix_note_events_note_id_seq")
        batch_op.drop_index("ix_note_events_owner_id_seq")
        batch_op.drop_index("ux_note_events_organization_id_seq")
        batch_op.create_index("ix_note_events_note_id_id", ["note_id", "id"], unique=False)
        batch_op.create_index("ix_note_events_owner_id_id", ["owner_id", "id"], unique=False)
        batch_op.create_index(
            "ix_note_events_organization_id_id", ["organization_id", "id"], unique=False
        )
        batch_op.drop_column("seq")
    op.drop_table("note_event_counters")
