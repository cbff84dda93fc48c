"""The events table, the one place its statements are built. The outbox (notes/outbox.py)
writes events with `record_statement`, in the transaction of the change they tell of; the
streams read them (`after`, `settled_before`, `first`: streams/feed.py; `page_statement`:
streams/service.py); the webhook deliveries find the event a job delivers by its id, and
the id of an organization's event by its number (`seq`); a stream starts at its
organization's last number (`position`); house-keeping purges the old."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    Subquery,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.sql import bound_row, row_params
from notes_api.core.statements import Once
from notes_api.events.models import NoteEvent, NoteEventCounter

note_events = cast(Table, NoteEvent.__table__)
# An event's row as the outbox writes it (its id and number come from the database).
COLUMNS = ("organization_id", "owner_id", "note_id", "type", "occurred_at", "data")
# Of an event just written, what its webhook deliveries are chosen by.
_FANNED_OUT = (note_events.c.id, note_events.c.organization_id, note_events.c.type)
PAGE = 200  # events a stream reads at a time

# ------------------------------------------------------------------- writing (the outbox)


# The names of one event's parameters in `record_statement(many=False)` (core/sql.row_params).
ONE_ROW = "{}_0"


def many_param(column: str) -> str:
    """The name of a column's parameter (an array: one value per event) in
    `record_statement(many=True)`."""
    return f"{column}_rows"


# Several events' rows: an array of each column's values, unnested into rows in order.
_UNNESTED = (
    func.unnest(*(bindparam(many_param(c), type_=ARRAY(note_events.c[c].type)) for c in COLUMNS))
    .table_valued(*COLUMNS)
    .render_derived(name="event_rows")
)


def record_statement(*, many: bool) -> Insert:
    """Postgres: an INSERT of one event (`many=False`) or of several, returning each one's
    `id`, `organization_id` and `type`. One row as a plain VALUES, more as arrays of each
    column unnested into rows: either way a statement SQLAlchemy compiles once (a multi-row
    VALUES list is compiled again at every use, which cost a worker a sixth of its CPU)."""
    stmt = (
        insert(note_events).from_select(COLUMNS, select(_UNNESTED))
        if many
        else insert(note_events).values(bound_row(note_events, COLUMNS, ONE_ROW))
    )
    return stmt.returning(*_FANNED_OUT)


# Many rows in one INSERT (SQLAlchemy's "insertmanyvalues"), ids in the rows' order.
_RECORD_ROWS = insert(note_events).returning(note_events.c.id, sort_by_parameter_order=True)


# One row, a request's event (a statement built once: `Once`).
_RECORD_ONE = Once(
    insert(note_events).values(bound_row(note_events, COLUMNS, ONE_ROW)).returning(note_events.c.id)
)


async def record_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """SQLite: write these events (`COLUMNS` each); their ids, in the rows' order."""
    if len(rows) == 1:
        return [int(await _RECORD_ONE.scalar(session, row_params(rows[0], COLUMNS, ONE_ROW)))]
    conn = await session.connection()  # a Core statement: no ORM bulk insert to go through
    return [int(i) for i in (await conn.execute(_RECORD_ROWS, rows)).scalars()]


def recorded(ids_param: str, *, many: bool = True) -> Subquery:
    """The events whose ids are in the list parameter `ids_param` (just written), or, not
    `many`, the one event whose id it is, with what their deliveries are chosen by."""
    which: ColumnElement[bool]
    if many:
        which = note_events.c.id.in_(bindparam(ids_param, expanding=True))
    else:
        which = note_events.c.id == bindparam(ids_param, type_=note_events.c.id.type)
    return select(*_FANNED_OUT).where(which).subquery("recorded")


# ------------------------------------------------------------------- reading (the streams)

# The events after id `after`, in id order, a batch at a time: who may see each.
_AFTER = Once(
    select(
        note_events.c.id,
        note_events.c.organization_id,
        note_events.c.owner_id,
        note_events.c.note_id,
    )
    .where(note_events.c.id > bindparam("after"))
    .order_by(note_events.c.id)
    .limit(bindparam("batch"))
)
# The last event older than `before` (its transaction has surely ended).
_SETTLED_BEFORE = Once(
    select(note_events.c.id)
    .where(note_events.c.occurred_at < bindparam("before"))
    .order_by(note_events.c.occurred_at.desc())
    .limit(1)
)
_FIRST = Once(select(note_events.c.id).order_by(note_events.c.id).limit(1))


async def after(session: AsyncSession, event_id: int, batch: int) -> list[Any]:
    """Up to `batch` events after `event_id`, in id order: `id`, `organization_id`,
    `owner_id`, `note_id`."""
    return await _AFTER.rows(session, {"after": event_id, "batch": batch})


async def settled_before(session: AsyncSession, before: datetime) -> int | None:
    """The id of the last event that occurred before `before`, if any."""
    found = await _SETTLED_BEFORE.scalar(session, {"before": before})
    return None if found is None else int(found)


async def first(session: AsyncSession) -> int | None:
    """The id of the first event kept, if any."""
    found = await _FIRST.scalar(session, {})
    return None if found is None else int(found)


def page_statement(
    organization_id: uuid.UUID,
    after: int,
    note_id: uuid.UUID | None,
    visible: Callable[[Table], ColumnElement[bool]],
) -> Select[Any]:
    """The organization's events after number `after` that `visible` admits (the notes'
    tenancy rule, applied to the events' owner and organization), oldest first."""
    stmt = select(
        note_events.c.seq.label("id"),
        note_events.c.type,
        note_events.c.occurred_at,
        note_events.c.data,
    ).where(
        note_events.c.organization_id == organization_id,
        note_events.c.seq > after,
        visible(note_events),
    )
    if note_id is not None:
        stmt = stmt.where(note_events.c.note_id == note_id)
    return stmt.order_by(note_events.c.seq).limit(PAGE)


# ------------------------------------------------------------------- one event


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
