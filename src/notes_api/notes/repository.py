"""The only place that queries notes. Tenancy lives in `visible_to`: every read and write a
caller makes goes through it, so an agent reaches its own notes, an admin its organization's,
and nothing crosses over. (The job handler's writes name a note by the id its job carries.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    bindparam,
    case,
    delete,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.tokens import Caller
from notes_api.core.models import utcnow
from notes_api.notes.models import Note, NoteStatus
from notes_api.users.models import Role

notes = cast(Table, Note.__table__)


def visible_to(caller: Caller, table: Table = notes) -> ColumnElement[bool]:
    """Tenancy: an agent's own notes, an admin's organization's. `table` is the notes, or
    another that records a note's owner and organization (its events)."""
    if caller.role is Role.ADMIN:
        return table.c.organization_id == caller.organization_id
    return table.c.owner_id == caller.id


@dataclass(frozen=True)
class NoteFilters:
    status: NoteStatus | None = None
    q: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner_id: uuid.UUID | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position, newest first


def one_statement(caller: Caller, note_id: uuid.UUID) -> Select[Any]:
    return select(notes).where(notes.c.id == note_id, visible_to(caller))


async def get(
    session: AsyncSession, caller: Caller, note_id: uuid.UUID, *, for_update: bool = False
) -> Row[Any] | None:
    """The note, if the caller may see it. `for_update` locks its row until the transaction
    ends: every change of a note starts here, so changes of one note take turns."""
    stmt = one_statement(caller, note_id)
    if for_update:
        stmt = stmt.with_for_update()
    conn = await session.connection()  # a Core statement: no ORM execution to go through
    note: Row[Any] | None = (await conn.execute(stmt)).one_or_none()
    return note


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page_statement(caller: Caller, filters: NoteFilters, limit: int) -> Select[Any]:
    """Up to `limit` notes the caller may see, newest first (keyset pagination: an index
    scan in key order that stops after `limit` rows)."""
    at = notes.c.created_at
    stmt = select(notes).where(visible_to(caller))
    if filters.owner_id is not None:
        stmt = stmt.where(notes.c.owner_id == filters.owner_id)
    if filters.status is not None:
        stmt = stmt.where(notes.c.status == filters.status)
    if filters.created_after is not None:
        stmt = stmt.where(at > filters.created_after)
    if filters.created_before is not None:
        stmt = stmt.where(at < filters.created_before)
    if filters.q:
        pattern = _like_pattern(filters.q)
        stmt = stmt.where(
            or_(
                notes.c.title.ilike(pattern, escape="\\"),
                notes.c.raw_text.ilike(pattern, escape="\\"),
            )
        )
    if filters.after is not None:
        after_at, after_id = filters.after
        stmt = stmt.where(or_(at < after_at, (at == after_at) & (notes.c.id < after_id)))
    return stmt.order_by(at.desc(), notes.c.id.desc()).limit(limit)


async def page(
    session: AsyncSession, caller: Caller, filters: NoteFilters, limit: int
) -> list[Row[Any]]:
    conn = await session.connection()
    return list((await conn.execute(page_statement(caller, filters, limit))).all())


_ADD = insert(notes).returning(notes)


async def add(session: AsyncSession, caller: Caller, values: dict[str, Any]) -> Row[Any]:
    """A new note owned by the caller, in the caller's organization: queued, never attempted
    and never changed (the model's defaults, with one time for created_at and updated_at)."""
    now = utcnow()
    row = {
        "owner_id": caller.id,
        "organization_id": caller.organization_id,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    conn = await session.connection()
    added: Row[Any] = (await conn.execute(_ADD, row)).one()
    return added


async def change(
    session: AsyncSession, caller: Caller, note_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any]:
    """Write `values` to a note the caller has locked with `get(..., for_update=True)`; the
    note as it is now. Every column is written as given (no ORM change tracking to skip a
    value it believes unchanged)."""
    stmt = (
        update(notes)
        .where(notes.c.id == note_id, visible_to(caller))
        .values(updated_at=utcnow(), **values)
        .returning(notes)
    )
    changed: Row[Any] = (await session.execute(stmt)).one()
    return changed


async def remove(session: AsyncSession, caller: Caller, note_id: uuid.UUID) -> None:
    await session.execute(delete(notes).where(notes.c.id == note_id, visible_to(caller)))


# ----------------------------------------------------------------------- the summarize job


# Built once: the worker locks a batch of notes per transaction.
_LOCK_FOR_JOBS = (
    select(notes.c.id)
    .where(notes.c.id.in_(bindparam("note_ids", expanding=True)))
    .order_by(notes.c.id)
    .with_for_update()
)


async def lock_for_jobs(session: AsyncSession, note_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The job engine is about to change these notes' jobs: lock the notes first, as every
    writer does (note before job), in id order, so that two batches cannot wait on each
    other. The ids of the notes that still exist."""
    conn = await session.connection()
    return set((await conn.execute(_LOCK_FOR_JOBS, {"note_ids": note_ids})).scalars())


class JobState(NamedTuple):
    """A note's job moved to `status` (done: with its summary; failed or queued again: with
    the error; processing: neither)."""

    note_id: uuid.UUID
    status: NoteStatus
    attempts: int
    summary: str | None = None
    error: str | None = None


def _per_note(states: list[JobState], field: str, column: Any) -> Any:
    """The value of `field` for each note: one parameter when the notes share it, else a
    CASE on the note's id."""
    values = [getattr(state, field) for state in states]
    if len(set(values)) == 1:
        return literal(values[0], column.type)
    return case(
        {
            state.note_id: literal(value, column.type)
            for state, value in zip(states, values, strict=True)
        },
        value=notes.c.id,
    )


def _job_state_update(status: NoteStatus, states: list[JobState], now: datetime) -> Any:
    values: dict[str, Any] = {
        "status": status,
        "attempts": _per_note(states, "attempts", notes.c.attempts),
        "updated_at": now,
    }
    if status is NoteStatus.DONE:
        values.update(
            summary=_per_note(states, "summary", notes.c.summary), summarized_at=now, error=None
        )
    elif status is not NoteStatus.PROCESSING:
        values["error"] = _per_note(states, "error", notes.c.error)
    ids = [state.note_id for state in states]
    return update(notes).where(notes.c.id.in_(ids)).values(values).returning(notes)


async def record_job_states(session: AsyncSession, states: list[JobState]) -> list[Row[Any]]:
    """Mirror the jobs' new states on their notes, one statement per status (each note's
    own values chosen by its id); the notes as they are now (those that still exist)."""
    groups: dict[NoteStatus, list[JobState]] = {}
    for state in states:
        groups.setdefault(state.status, []).append(state)
    now = utcnow()
    conn = await session.connection()
    changed: list[Row[Any]] = []
    for status, group in groups.items():
        changed += (await conn.execute(_job_state_update(status, group, now))).all()
    return changed


async def record_job_state(
    session: AsyncSession,
    note_id: uuid.UUID,
    status: NoteStatus,
    *,
    attempts: int,
    summary: str | None = None,
    error: str | None = None,
) -> Row[Any] | None:
    """`record_job_states` for one note: the note as it is now, or None when it is gone."""
    rows = await record_job_states(session, [JobState(note_id, status, attempts, summary, error)])
    return rows[0] if rows else None


async def status_of(session: AsyncSession, note_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Statuses for the wait-for-result watcher; it only ever asks about ids it has shown."""
    rows = await session.execute(select(notes.c.id, notes.c.status).where(notes.c.id.in_(note_ids)))
    return {row_id: str(st) for row_id, st in rows.all()}
