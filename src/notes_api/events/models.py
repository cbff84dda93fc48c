from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Identity, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from notes_api.core.models import Base, UTCDateTime


class EventType(enum.StrEnum):
    QUEUED = "note.queued"
    PROCESSING = "note.processing"
    DONE = "note.done"
    FAILED = "note.failed"
    UPDATED = "note.updated"
    DELETED = "note.deleted"


class NoteEvent(Base):
    """The outbox: one row per client-visible change of a note, written in the change's own
    transaction. Ids only grow (an identity on Postgres, AUTOINCREMENT on SQLite), so a
    reader's position is one number. No foreign key to the note: a deleted note's events
    (its `note.deleted` above all) outlive it until the retention purge."""

    __tablename__ = "note_events"
    __table_args__ = (
        Index("ix_note_events_organization_id_id", "organization_id", "id"),
        Index("ix_note_events_owner_id_id", "owner_id", "id"),
        Index("ix_note_events_note_id_id", "note_id", "id"),
        Index("ix_note_events_occurred_at", "occurred_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True
    )
    organization_id: Mapped[uuid.UUID] = mapped_column(
        # Typed here: a foreign key's type is only known once its table is, and statements
        # built at import would bind raw UUIDs (which SQLite cannot store).
        Uuid,
        ForeignKey("organizations.id", ondelete="CASCADE"),
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    note_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
