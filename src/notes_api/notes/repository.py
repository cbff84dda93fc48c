"""The only place that queries notes. Tenancy lives in `visible_to`: every read goes through
it, so an agent sees its own notes, an admin its organization's, and nothing crosses over."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Row, Select, Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.notes.models import Note, NoteStatus
from notes_api.users.models import Role, User

notes = cast(Table, Note.__table__)
_users = cast(Table, User.__table__)


class Member(Protocol):
    """Whoever asks: the routes' `Caller`, or a `User` row."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def organization_id(self) -> uuid.UUID: ...

    @property
    def role(self) -> Role: ...


# The caller's scope as bound parameters, so each statement below is built and compiled once.
_SCOPE = {
    Role.ADMIN: notes.c.organization_id == bindparam("scope_organization_id"),
    Role.AGENT: notes.c.owner_id == bindparam("scope_user_id"),
}


def visible_to(member: Member) -> ColumnElement[bool]:
    """Tenancy: an agent sees its own notes, an admin its organization's. Every read goes
    through here, with `scope(member)` among the statement's parameters."""
    return _SCOPE[member.role]


def scope(member: Member) -> dict[str, Any]:
    return {"scope_organization_id": member.organization_id, "scope_user_id": member.id}


_BY_ID = {
    role: select(notes).where(notes.c.id == bindparam("note_id"), condition)
    for role, condition in _SCOPE.items()
}
# The hottest read in one round trip: is the caller still an active member (and with which
# role), and the note as the role the caller signed in with may see it.
_BY_ID_FOR_CALLER = {
    role: select(_users.c.role.label("caller_role"), notes)
    .select_from(_users.outerjoin(notes, and_(notes.c.id == bindparam("note_id"), condition)))
    .where(
        _users.c.id == bindparam("scope_user_id"),
        _users.c.organization_id == bindparam("scope_organization_id"),
        _users.c.is_active,
    )
    for role, condition in _SCOPE.items()
}
_BY_ID_ORM = {
    role: select(Note).where(Note.id == bindparam("note_id"), condition)
    for role, condition in _SCOPE.items()
}


@dataclass(frozen=True)
class NoteFilters:
    status: NoteStatus | None = None
    q: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner_id: uuid.UUID | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position, newest first


async def read_visible(
    session: AsyncSession, member: Member, note_id: uuid.UUID
) -> Row[Any] | None:
    """The note as a plain row, for answering reads (no ORM object is built)."""
    conn = await session.connection()
    params = {"note_id": note_id, **scope(member)}
    return (await conn.execute(_BY_ID[member.role], params)).one_or_none()


async def read_for_caller(
    session: AsyncSession, claimed: Member, note_id: uuid.UUID
) -> tuple[Role | None, Row[Any] | None]:
    """The caller's current role (None: no longer an active member) and, when that is still
    the role `claimed`, the note it may see (None: not found or not visible)."""
    conn = await session.connection()
    params = {"note_id": note_id, **scope(claimed)}
    row = (await conn.execute(_BY_ID_FOR_CALLER[claimed.role], params)).one_or_none()
    if row is None:
        return None, None
    if row.caller_role is not claimed.role:
        return row.caller_role, None
    return row.caller_role, (row if row.id is not None else None)


async def get_visible(
    session: AsyncSession, member: Member, note_id: uuid.UUID, *, for_update: bool = False
) -> Note | None:
    """The note as an ORM object, for changing it."""
    stmt = _BY_ID_ORM[member.role]
    if for_update:
        stmt = stmt.with_for_update()
    params = {"note_id": note_id, **scope(member)}
    return (await session.scalars(stmt, params)).one_or_none()


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_query(member: Member, filters: NoteFilters, limit: int) -> Select[Any]:
    stmt = select(notes).where(visible_to(member))
    if filters.owner_id is not None:
        stmt = stmt.where(notes.c.owner_id == filters.owner_id)
    if filters.status is not None:
        stmt = stmt.where(notes.c.status == filters.status)
    if filters.created_after is not None:
        stmt = stmt.where(notes.c.created_at > filters.created_after)
    if filters.created_before is not None:
        stmt = stmt.where(notes.c.created_at < filters.created_before)
    if filters.q:
        pattern = _like_pattern(filters.q)
        stmt = stmt.where(
            or_(
                notes.c.title.ilike(pattern, escape="\\"),
                notes.c.raw_text.ilike(pattern, escape="\\"),
            )
        )
    if filters.after is not None:
        created, last_id = filters.after
        stmt = stmt.where(
            or_(
                notes.c.created_at < created,
                (notes.c.created_at == created) & (notes.c.id < last_id),
            )
        )
    return stmt.order_by(notes.c.created_at.desc(), notes.c.id.desc()).limit(limit)


async def list_visible(
    session: AsyncSession, member: Member, filters: NoteFilters, limit: int
) -> list[Row[Any]]:
    conn = await session.connection()
    result = await conn.execute(list_query(member, filters, limit), scope(member))
    return list(result.all())


async def status_of(session: AsyncSession, note_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Statuses for the wait-for-result watcher; it only ever asks about ids it has shown."""
    rows = await session.execute(select(Note.id, Note.status).where(Note.id.in_(note_ids)))
    return {row_id: str(st) for row_id, st in rows.all()}


async def mark_processing(
    session: AsyncSession, note_id: uuid.UUID, attempts: int
) -> tuple[str, str | None] | None:
    """The job engine claimed this note's job: show it, and hand back the text to summarize."""
    row = (
        await session.execute(
            update(Note)
            .where(Note.id == note_id)
            .values(status=NoteStatus.PROCESSING, attempts=attempts, updated_at=utcnow())
            .returning(Note.raw_text, Note.title)
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def record_job_state(
    session: AsyncSession,
    note_id: uuid.UUID,
    status: NoteStatus,
    *,
    attempts: int,
    summary: str | None = None,
    error: str | None = None,
) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "updated_at": now,
        "error": error,
    }
    if status is NoteStatus.DONE:
        values.update(summary=summary, summarized_at=now)
    await session.execute(update(Note).where(Note.id == note_id).values(**values))
