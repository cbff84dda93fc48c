"""The outbox: `record` writes a note's event in the caller's transaction, with the webhook
deliveries it calls for, and announces it once that transaction commits. Nothing is
announced that did not commit, and nothing that committed goes unannounced (a stream that
misses the announcement finds the row on the feed's next poll)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.events import signals
from notes_api.events.models import EventType, NoteEvent
from notes_api.events.schemas import NoteState
from notes_api.jobs import signals as job_signals
from notes_api.webhooks.fanout import delivery_jobs, hook_params
from notes_api.webhooks.models import WebhookDelivery

note_events = cast(Table, NoteEvent.__table__)

_EVENT_COLUMNS = ("organization_id", "owner_id", "note_id", "type", "occurred_at", "data")
_VALUES = {
    name: bindparam(f"event_{name}", type_=note_events.c[name].type) for name in _EVENT_COLUMNS
}


def event_params(
    event_type: EventType, note: Any, organization_id: uuid.UUID, *, now: datetime | None = None
) -> dict[str, Any]:
    """The parameters of an event of `note` (an ORM note, a row or a NotePublic): its
    public state without `raw_text`; for a deletion just its id and owner."""
    if event_type is EventType.DELETED:
        data: dict[str, Any] = {"id": str(note.id), "owner_id": str(note.owner_id)}
    else:
        data = NoteState.model_validate(note).model_dump(mode="json")
    values = {
        "organization_id": organization_id,
        "owner_id": note.owner_id,
        "note_id": note.id,
        "type": event_type.value,
        "occurred_at": now or utcnow(),
        "data": data,
    }
    return {f"event_{name}": value for name, value in values.items()} | hook_params(event_type)


_RECORD = insert(note_events).values(_VALUES).returning(note_events.c.id)
_HOOKS = delivery_jobs(
    bindparam("hook_event_id", type_=note_events.c.id.type),
    bindparam("hook_organization_id", type_=note_events.c.organization_id.type),
)


async def record(session: AsyncSession, event_type: EventType, note: Any) -> int:
    """Write the event of `note` (a row, after a change of it) in the session's transaction,
    with one delivery job per subscribed webhook endpoint. Returns the event's id. Other
    processes hear of it from a trigger's NOTIFY on Postgres (migration 20261130_0002)."""
    params = event_params(event_type, note, note.organization_id)
    event_id = int((await session.execute(_RECORD, params)).scalar_one())
    hooks = {**params, "hook_event_id": event_id, "hook_organization_id": note.organization_id}
    queued = getattr(await session.execute(_HOOKS, hooks), "rowcount", 0)
    signals.mark_recorded(session)
    if queued:
        job_signals.mark_queued(session)
    return event_id


async def purge_events(session: AsyncSession, *, hours: float) -> int:
    """House-keeping: events (and webhook attempt logs) older than the retention period."""
    older_than = utcnow() - timedelta(hours=hours)
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < older_than))
    result = await session.execute(delete(NoteEvent).where(NoteEvent.occurred_at < older_than))
    return int(getattr(result, "rowcount", 0))
