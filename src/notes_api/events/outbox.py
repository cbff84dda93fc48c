"""The outbox: `record` writes a note's event in the caller's transaction, with the webhook
deliveries it calls for, and announces it once that transaction commits. Nothing is
announced that did not commit, and nothing that committed goes unannounced (a stream that
misses the announcement finds the row on the feed's next poll)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CTE,
    Select,
    String,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name
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


def _pg_outbox(step: CTE | None) -> tuple[CTE, Any, Any]:
    """Postgres: the event inserted (once per row of `step`, or once), its delivery jobs,
    and the NOTIFYs for both, all in the statement these pieces are put into."""
    rows = select(*_VALUES.values())
    if step is not None:
        rows = rows.select_from(step)
    event = (
        insert(note_events)
        .from_select(list(_EVENT_COLUMNS), rows)
        .returning(note_events.c.id, note_events.c.organization_id, note_events.c.owner_id)
        .cte("event")
    )
    hooks = (
        delivery_jobs(event.c.id, event.c.organization_id, event)
        .returning(literal(1).label("one"))
        .cte("hooks")
    )
    payload = (
        sql_cast(event.c.id, String)
        + ":"
        + sql_cast(event.c.organization_id, String)
        + ":"
        + sql_cast(event.c.owner_id, String)
    )
    queued = select(func.count()).select_from(hooks).scalar_subquery()
    columns = (
        event.c.id,
        func.pg_notify(signals.CHANNEL, payload),
        case((queued > 0, func.pg_notify(job_signals.QUEUED_CHANNEL, "webhook")), else_=None),
        queued.label("hooks"),
    )
    return event, hooks, columns


def record_after(stmt: Select[Any], step: CTE) -> Select[Any]:
    """`stmt` (Postgres, a statement built on the CTE `step`, which inserts a note) with
    the note's event recorded as well, for each row of `step`; its parameters come from
    `event_params`. Used where a whole write is one statement."""
    event, hooks, columns = _pg_outbox(step)
    return stmt.add_columns(*columns).join(event, true()).add_cte(hooks)


def _pg_record() -> Select[Any]:
    event, hooks, columns = _pg_outbox(None)
    return select(*columns).select_from(event).add_cte(hooks)


_PG_RECORD = _pg_record()
_SQLITE_RECORD = insert(note_events).values(_VALUES).returning(note_events.c.id)
_SQLITE_HOOKS = delivery_jobs(
    bindparam("hook_event_id", type_=note_events.c.id.type),
    bindparam("hook_organization_id", type_=note_events.c.organization_id.type),
)


async def record(
    session: AsyncSession, event_type: EventType, note: Any, *, organization_id: Any = None
) -> int:
    """Write the event of `note` (after a change of it) in the session's transaction, with
    one delivery job per subscribed webhook endpoint. Returns the event's id."""
    org = organization_id if organization_id is not None else note.organization_id
    params = event_params(event_type, note, org)
    conn = await session.connection()
    if dialect_name(session) == "postgresql":
        row = (await conn.execute(_PG_RECORD, params)).one()
        event_id, queued = int(row.id), int(row.hooks)
    else:
        event_id = int((await conn.execute(_SQLITE_RECORD, params)).scalar_one())
        hooks = {**params, "hook_event_id": event_id, "hook_organization_id": org}
        queued = (await conn.execute(_SQLITE_HOOKS, hooks)).rowcount
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
