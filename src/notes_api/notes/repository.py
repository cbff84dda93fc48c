"""The only place that queries notes. Tenancy lives in `visible_to`: every read goes through
it, so an agent sees its own notes, an admin its organization's, and nothing crosses over."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    Uuid,
    and_,
    bindparam,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from notes_api.auth.tokens import Caller
from notes_api.core.models import utcnow
from notes_api.notes.models import Note, NoteStatus
from notes_api.users.models import (
    ACTIVE_MEMBER,
    MEMBER_ID,
    MEMBER_ORGANIZATION_ID,
    Role,
    member_params,
    users,
)

notes = cast(Table, Note.__table__)


class Member(Protocol):
    """Whoever asks: the routes' `Caller`, or a `User` row."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def organization_id(self) -> uuid.UUID: ...

    @property
    def role(self) -> Role: ...


def tenancy_condition(
    role: Role, owner_id: ColumnElement[Any], organization_id: ColumnElement[Any]
) -> ColumnElement[bool]:
    """The tenancy rule, on any table that records a note's owner and organization (the
    notes, their events): an agent sees its own, an admin its organization's. The
    parameters are `scope(member)`."""
    if role is Role.ADMIN:
        return organization_id == MEMBER_ORGANIZATION_ID
    return owner_id == MEMBER_ID


# The caller's scope as bound parameters, so each statement below is built and compiled once.
_SCOPE = {role: tenancy_condition(role, notes.c.owner_id, notes.c.organization_id) for role in Role}


def visible_to(member: Member) -> ColumnElement[bool]:
    """Tenancy: an agent sees its own notes, an admin its organization's. Every read goes
    through here, with `scope(member)` among the statement's parameters."""
    return _SCOPE[member.role]


def scope(member: Member) -> dict[str, Any]:
    return member_params(member.id, member.organization_id)


def _with_role(member: Member, role: Role) -> Caller:
    """`member` with the role the database holds now (it changed after the token was issued)."""
    return Caller(member.id, member.organization_id, role)


_BY_ID = {
    role: select(notes).where(notes.c.id == bindparam("note_id"), condition)
    for role, condition in _SCOPE.items()
}
# The hottest read in one round trip: is the caller still an active member (and with which
# role), and the note as the role the caller signed in with may see it.
_BY_ID_FOR_CALLER = {
    role: select(users.c.role.label("caller_role"), notes)
    .select_from(users.outerjoin(notes, and_(notes.c.id == bindparam("note_id"), condition)))
    .where(ACTIVE_MEMBER)
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
    conn: AsyncConnection, member: Member, note_id: uuid.UUID
) -> Row[Any] | None:
    """The note as a plain row, for answering reads (no ORM object is built)."""
    params = {"note_id": note_id, **scope(member)}
    return (await conn.execute(_BY_ID[member.role], params)).one_or_none()


async def read_for_caller(
    conn: AsyncConnection, claimed: Member, note_id: uuid.UUID
) -> tuple[Role | None, Row[Any] | None]:
    """The caller's current role (None: no longer an active member) and the note it may see
    (None: not found or not visible). One round trip; a second when the role changed since
    the token was issued."""
    params = {"note_id": note_id, **scope(claimed)}
    row = (await conn.execute(_BY_ID_FOR_CALLER[claimed.role], params)).one_or_none()
    if row is None:
        return None, None
    role = row.caller_role
    if role is not claimed.role:
        return role, await read_visible(conn, _with_role(claimed, role), note_id)
    return role, (row if row.id is not None else None)


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


def _filter_params(filters: NoteFilters) -> dict[str, Any]:
    """The filters that are set, as the parameters of the statement `_page_query` builds."""
    params: dict[str, Any] = {
        "owner_id": filters.owner_id,
        "status": filters.status,
        "created_after": filters.created_after,
        "created_before": filters.created_before,
        "pattern": _like_pattern(filters.q) if filters.q else None,
    }
    if filters.after is not None:
        params["after_created_at"], params["after_id"] = filters.after
    return {name: value for name, value in params.items() if value is not None}


@functools.cache
def _page_query(role: Role, filtered: frozenset[str], with_caller: bool) -> Select[Any]:
    """A page of notes, newest first (keyset pagination), for one combination of filters;
    built and compiled once per combination (at most 2 x 2^6 x 2 of them)."""
    at = notes.c.created_at
    conditions = {
        "owner_id": notes.c.owner_id == bindparam("owner_id", type_=Uuid()),
        "status": notes.c.status == bindparam("status"),
        "created_after": at > bindparam("created_after"),
        "created_before": at < bindparam("created_before"),
        "pattern": or_(
            notes.c.title.ilike(bindparam("pattern"), escape="\\"),
            notes.c.raw_text.ilike(bindparam("pattern"), escape="\\"),
        ),
        "after_id": or_(
            at < bindparam("after_created_at"),
            (at == bindparam("after_created_at")) & (notes.c.id < bindparam("after_id")),
        ),
    }
    page = (
        select(notes)
        .where(_SCOPE[role], *(conditions[name] for name in sorted(filtered) if name in conditions))
        .order_by(notes.c.created_at.desc(), notes.c.id.desc())
        .limit(bindparam("limit"))
    )
    if not with_caller:
        return page
    # The caller's row joined to the page: one row with no note when the page is empty, no
    # row when the caller is not an active member any more. The page is a derived table, so
    # it keeps its own plan: an index scan in key order that stops after `limit` rows.
    sub = page.subquery("page")
    return (
        select(users.c.role.label("caller_role"), sub)
        .select_from(users.outerjoin(sub, true()))
        .where(ACTIVE_MEMBER)
        .order_by(sub.c.created_at.desc(), sub.c.id.desc())
    )


def list_query(
    member: Member, filters: NoteFilters, limit: int, *, with_caller: bool = False
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement for a page of the notes `member` may see, and its parameters."""
    params = _filter_params(filters)
    stmt = _page_query(member.role, frozenset(params), with_caller)
    return stmt, {**params, **scope(member), "limit": limit}


async def list_for_caller(
    conn: AsyncConnection, claimed: Member, filters: NoteFilters, limit: int
) -> tuple[Role | None, list[Row[Any]]]:
    """The caller's current role (None: no longer an active member) and, when that is still
    the role `claimed`, the page of notes it may see."""
    stmt, params = list_query(claimed, filters, limit, with_caller=True)
    rows = list((await conn.execute(stmt, params)).all())
    if not rows:
        return None, []
    role = rows[0].caller_role
    if role is not claimed.role:
        return role, await list_visible(conn, _with_role(claimed, role), filters, limit)
    return role, [row for row in rows if row.id is not None]


async def list_visible(
    conn: AsyncConnection, member: Member, filters: NoteFilters, limit: int
) -> list[Row[Any]]:
    stmt, params = list_query(member, filters, limit)
    return list((await conn.execute(stmt, params)).all())


async def status_of(session: AsyncSession, note_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Statuses for the wait-for-result watcher; it only ever asks about ids it has shown."""
    rows = await session.execute(select(Note.id, Note.status).where(Note.id.in_(note_ids)))
    return {row_id: str(st) for row_id, st in rows.all()}


# Both hand back the note as changed, for the event that tells it.
_MARK_PROCESSING = update(notes).where(notes.c.id == bindparam("note_id")).returning(*notes.c)
_RECORD_JOB_STATE = update(notes).where(notes.c.id == bindparam("note_id")).returning(*notes.c)


async def mark_processing(
    session: AsyncSession, note_id: uuid.UUID, attempts: int
) -> Row[Any] | None:
    """The job engine claimed this note's job: show it, and hand back the note (its text is
    what to summarize)."""
    conn = await session.connection()
    params = {
        "note_id": note_id,
        "status": NoteStatus.PROCESSING,
        "attempts": attempts,
        "updated_at": utcnow(),
    }
    return (await conn.execute(_MARK_PROCESSING, params)).one_or_none()


async def record_job_state(
    session: AsyncSession,
    note_id: uuid.UUID,
    status: NoteStatus,
    *,
    attempts: int,
    summary: str | None = None,
    error: str | None = None,
) -> Row[Any] | None:
    now = utcnow()
    values: dict[str, Any] = {
        "note_id": note_id,
        "status": status,
        "attempts": attempts,
        "updated_at": now,
        "error": error,
    }
    if status is NoteStatus.DONE:
        values.update(summary=summary, summarized_at=now)
    conn = await session.connection()
    return (await conn.execute(_RECORD_JOB_STATE, values)).one_or_none()
