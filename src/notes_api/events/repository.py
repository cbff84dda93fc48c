"""The recorded events as other packages read them: the webhook deliveries find the event
a job delivers by its id, and the id of an organization's event by its number (`seq`).
The events package owns `note_events`; its writer (outbox.py) and its streams (service.py,
feed.py) query it themselves."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.events.models import NoteEvent


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
