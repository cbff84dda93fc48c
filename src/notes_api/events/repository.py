"""The recorded events as other packages read them: the webhook deliveries find the event
a job delivers by its id, and the id of an organization's event by its number (`seq`); a
stream starts at its organization's last number (`position`); house-keeping purges the old.
The events are written by the outbox (notes/outbox.py), with the change of the note they
tell of, and read by the streams (streams/service.py, streams/feed.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.events.models import NoteEvent, NoteEventCounter


async def get(session: AsyncSession, event_id: int) -> NoteEvent | None:
    """The event, while it is kept (EVENT_RETENTION_HOURS)."""
    return await session.get(NoteEvent, event_id)


async def id_of(session: AsyncSession, organization_id: uuid.UUID, seq: int) -> int | None:
    """The id of the organization's event number `seq`, while it is kept."""
    stmt = select(NoteEvent.id).where(
        NoteEvent.organization_id == organization_id, NoteEvent.seq == seq
    )
    found: int | None = await session.scalar(stmt)
    return found


async def position(session: AsyncSession, organization_id: uuid.UUID) -> int:
    """The number of the organization's last committed event (0 before its first)."""
    stmt = select(NoteEventCounter.last_seq).where(
        NoteEventCounter.organization_id == organization_id
    )
    return int((await session.execute(stmt)).scalar() or 0)


async def purge_events(session: AsyncSession, older_than: datetime) -> int:
    """House-keeping: events older than the retention period (runtime.py purges the webhook
    attempt logs of the same period in the same transaction)."""
    result = await session.execute(delete(NoteEvent).where(NoteEvent.occurred_at < older_than))
    return int(getattr(result, "rowcount", 0))
