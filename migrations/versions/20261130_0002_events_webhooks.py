"""note events (the outbox), webhook endpoints and their delivery attempts

Revision ID: 20261130_0002
Revises: 20261130_0001
Create Date: 2026-11-30 01:57:50.941149
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261130_0002"
down_revision: str | None = "20261130_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# On Postgres a new event is announced to every process (channel of events/signals.py),
# on commit and only then; the payload says whose it is: "<event id>:<organization>:<owner>".
_ANNOUNCE = """
CREATE FUNCTION notes_api_announce_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(
    'notes_api_note_events', NEW.id::text || ':' || NEW.organization_id || ':' || NEW.owner_id
  );
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "note_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("note_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_note_events_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("note_events", schema=None) as batch_op:
        batch_op.create_index("ix_note_events_note_id_id", ["note_id", "id"], unique=False)
        batch_op.create_index("ix_note_events_occurred_at", ["occurred_at"], unique=False)
        batch_op.create_index(
            "ix_note_events_organization_id_id", ["organization_id", "id"], unique=False
        )
        batch_op.create_index("ix_note_events_owner_id_id", ["owner_id", "id"], unique=False)

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("event_mask", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "event_mask > 0 AND event_mask <= 63", name=op.f("ck_webhook_endpoints_event_mask")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_webhook_endpoints_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_webhook_deliveries_endpoint_created",
            ["endpoint_id", "created_at", "id"],
            unique=False,
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ANNOUNCE)
        op.execute(
            "CREATE TRIGGER note_events_announce AFTER INSERT ON note_events"
            " FOR EACH ROW EXECUTE FUNCTION notes_api_announce_event()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER note_events_announce ON note_events")
        op.execute("DROP FUNCTION notes_api_announce_event()")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_endpoint_created")
        batch_op.drop_index("ix_webhook_deliveries_created_at")

    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_organization_id"))

    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("note_events", schema=None) as batch_op:
        batch_op.drop_index("ix_note_events_owner_id_id")
        batch_op.drop_index("ix_note_events_organization_id_id")
        batch_op.drop_index("ix_note_events_occurred_at")
        batch_op.drop_index("ix_note_events_note_id_id")

    op.drop_table("note_events")
