"""The outbox: `record` writes a note's event in the caller's transaction, with the webhook
deliveries it calls for, and announces it once that transaction commits. Nothing is
announced that did not commit, and nothing that committed goes unannounced (a stream that
misses the announcement finds the row on the feed's next poll)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ScalarSelect,
    Select,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name, row_params
from notes_api.core.statements import Once
from notes_api.events import repository as events
from notes_api.events import signals
from notes_api.events.models import EventType
from notes_api.jobs import queue
from notes_api.notes.schemas import NoteState
from notes_api.webhooks.fanout import deliveries_of, fan_out_params


def event_values(
    event_type: EventType, note: Any, organization_id: uuid.UUID, *, now: datetime | None = None
) -> dict[str, Any]:
    """The row of an event of `note` (an ORM note, a row or a NotePublic): its public state
    without `raw_text`; for a deletion just its id and owner."""
    if event_type is EventType.DELETED:
        data: dict[str, Any] = {"id": str(note.id), "owner_id": str(note.owner_id)}
    else:
        data = NoteState.model_validate(note).model_dump(mode="json")
    return {
        "organization_id": organization_id,
        "owner_id": note.owner_id,
        "note_id": note.id,
        "type": event_type.value,
        "occurred_at": now or utcnow(),
        "data": data,
    }


# SQLite: the delivery jobs of the events just written, by their ids (built once).
_FAN_OUT = deliveries_of(events.recorded("hook_event_ids"))
_FAN_OUT_ONE = Once(
    deliveries_of(events.recorded("hook_event_id", many=False)).returning(literal_column("1"))
)


@functools.cache
def record_cte(*, many: bool) -> tuple[CTE, ScalarSelect[Any]]:
    """Postgres: one event (a request's) or `many` (a worker's batch) and the delivery jobs
    they call for, as parts of one statement: the CTE `written` (the events' `id`,
    `organization_id` and `type`) and the number of delivery jobs queued. Parameters:
    `record_params`; after running the statement, call `recorded`."""
    written = events.record_statement(many=many).cte("written")
    hooks = deliveries_of(written).returning(literal_column("1")).cte("hooks")
    return written, select(func.count()).select_from(hooks).scalar_subquery()


@functools.cache
def _record_and_fan_out(*, many: bool) -> Once[Select[Any]]:
    written, queued = record_cte(many=many)
    return Once(select(written.c.id, queued).order_by(written.c.id))


def _event_rows(changes: Sequence[tuple[EventType, Any]]) -> list[dict[str, Any]]:
    now = utcnow()
    return [event_values(kind, note, note.organization_id, now=now) for kind, note in changes]


def record_params(changes: Sequence[tuple[EventType, Any]]) -> dict[str, Any]:
    """The parameters of `record_cte(many=len(changes) > 1)`: the events of these changes."""
    params = fan_out_params()
    rows = _event_rows(changes)
    if len(rows) == 1:
        return params | row_params(rows[0], events.COLUMNS, events.ONE_ROW)
    return params | {events.many_param(c): [row[c] for row in rows] for c in events.COLUMNS}


def recorded(session: AsyncSession, deliveries: int) -> None:
    """Events were written by a `record_cte` statement with `deliveries` delivery jobs:
    announce them, and wake the workers, once the session commits."""
    queue.enqueued(session, deliveries)
    signals.mark_recorded(session)


async def record(session: AsyncSession, event_type: EventType, note: Any) -> int:
    """Write the event of `note` (a row, after a change of it) in the session's transaction,
    with one delivery job per subscribed webhook endpoint. Returns the event's id. Other
    processes hear of it from a trigger's NOTIFY on Postgres (migration 20261130_0002)."""
    return (await record_many(session, [(event_type, note)]))[0]


async def record_many(session: AsyncSession, changes: Sequence[tuple[EventType, Any]]) -> list[int]:
    """`record` for several notes at once, whatever their number (the job engine's batches):
    on Postgres one statement writes the events and enqueues their deliveries (none when the
    organization has no endpoint: no round trip of its own); on SQLite, two. The events' ids."""
    if not changes:
        return []
    if dialect_name(session) == "postgresql":
        stmt = _record_and_fan_out(many=len(changes) > 1)
        found = await stmt.rows(session, record_params(changes))
        recorded(session, int(found[0][1]))
        return [int(row[0]) for row in found]
    event_ids = await events.record_rows(session, _event_rows(changes))
    if len(event_ids) == 1:  # a request's event: statements built once
        params = {"hook_event_id": event_ids[0], **fan_out_params()}
        queue.enqueued(session, len(await _FAN_OUT_ONE.rows(session, params)))
    else:
        params = {"hook_event_ids": event_ids, **fan_out_params()}
        await queue.enqueue_selected(session, _FAN_OUT, params)
    signals.mark_recorded(session)
    return event_ids
