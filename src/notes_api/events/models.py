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


_ID = BigInteger().with_variant(Integer, "sqlite")


class NoteEvent(Base):
    """The outbox: one row per client-visible change of a note, written in the change's own
    transaction. No foreign key to the note: a deleted note's events (its `note.deleted`
    above all) outlive it until the retention purge.

    Two numbers. `id` counts every organization's events (an identity on Postgres,
    AUTOINCREMENT on SQLite): the feed and the webhook jobs use it, clients never see it.
    `seq` counts the organization's own (a trigger takes it from `note_event_counters`,
    migration 20261207_0020): the `id` a stream shows, so an organization learns nothing of
    another's activity from the gaps. An organization's numbers commit in order, without
    gaps, so a reader's position in it is one number."""

    __tablename__ = "note_events"
    __table_args__ = (
        Index("ux_note_events_organization_id_seq", "organization_id", "seq", unique=True),
        Index("ix_note_events_owner_id_seq", "owner_id", "seq"),
        Index("ix_note_events_note_id_seq", "note_id", "seq"),
        Index("ix_note_events_occurred_at", "occurred_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_ID, Identity(), primary_key=True)
    seq: Mapped[int] = mapped_column(_ID, server_default="0")
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


class NoteEventCounter(Base):
    """An organization's last event number. Its row is locked from an event's insert until
    that transaction ends: the organization's events are numbered in commit order (take it
    last in a transaction; other organizations are not held up)."""

    __tablename__ = "note_event_counters"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(_ID)
