"""The only place that queries notes. Tenancy lives in `visible_to`: every read and write a
caller makes goes through it, so an agent reaches its own notes, an admin its organization's,
and nothing crosses over. (The job handler's writes name a note by the id its job carries.)

The statements a caller's request runs are built once, at import, one per role, with the
caller's tenant as a bind parameter (`tenant_params`): building a statement costs about as
much CPU as running it.

It is longer than the house's 300 lines on purpose: every statement on the notes table is
here (a caller's, the job engine's, the usage records'), so that the table has one owner
(tests/test_table_ownership.py)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import (
    CTE,
    Column,
    ColumnElement,
    Row,
    Select,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BinaryExpression

from notes_api.core.identity import Caller, Role
from notes_api.core.models import utcnow
from notes_api.core.pagination import seek
from notes_api.core.sql import bound_row, row_params
from notes_api.core.statements import Once
from notes_api.notes.models import Note, NoteStatus

notes = cast(Table, Note.__table__)

TENANT = "tenant"
_S = TypeVar("_S")


def visible_to(role: Role, table: Table = notes) -> ColumnElement[bool]:
    """Tenancy: an agent's own notes, an admin's organization's, as a condition on the
    bound parameter `tenant` (its value: `tenant_params`). `table` is the notes, or another
    that records a note's owner and organization (its events)."""
    column = table.c.organization_id if role is Role.ADMIN else table.c.owner_id
    return column == bindparam(TENANT, type_=column.type)


def tenant_params(caller: Caller) -> dict[str, uuid.UUID]:
    """The value of `visible_to`'s `tenant` for this caller."""
    return {TENANT: caller.organization_id if caller.role is Role.ADMIN else caller.id}


@dataclass(frozen=True)
class NoteFilters:
    status: NoteStatus | None = None
    q: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner_id: uuid.UUID | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position, newest first


def _by_role(build: Callable[[Role], _S]) -> dict[Role, _S]:
    return {role: build(role) for role in Role}


_NOTE_ID = bindparam("note_id", type_=notes.c.id.type)
_SELECT_ONE = _by_role(lambda role: select(notes).where(notes.c.id == _NOTE_ID, visible_to(role)))
_ONE = {role: Once(stmt) for role, stmt in _SELECT_ONE.items()}
_ONE_FOR_UPDATE = {role: Once(stmt.with_for_update()) for role, stmt in _SELECT_ONE.items()}


def one_statement(caller: Caller, *, for_update: bool = False) -> Once[Select[Any]]:
    """The note `note_id` if `caller` may see it (parameters: `note_id`, `tenant_params`)."""
    return (_ONE_FOR_UPDATE if for_update else _ONE)[caller.role]


async def get(
    session: AsyncSession, caller: Caller, note_id: uuid.UUID, *, for_update: bool = False
) -> Any | None:
    """The note, if the caller may see it. `for_update` locks its row until the transaction
    ends: every change of a note starts here, so changes of one note take turns."""
    params = {"note_id": note_id, **tenant_params(caller)}
    return await one_statement(caller, for_update=for_update).first(session, params)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@functools.cache
def _page_statement(role: Role, present: frozenset[str]) -> Once[Select[Any]]:
    """The page statement for a role and the filters a request gives (at most 2 x 2^6
    shapes, each built once), their values as bind parameters."""
    at = notes.c.created_at
    stmt = select(notes).where(visible_to(role))
    if "owner_id" in present:
        stmt = stmt.where(notes.c.owner_id == bindparam("owner_id", type_=notes.c.owner_id.type))
    if "status" in present:
        stmt = stmt.where(notes.c.status == bindparam("status", type_=notes.c.status.type))
    if "created_after" in present:
        stmt = stmt.where(at > bindparam("created_after", type_=at.type))
    if "created_before" in present:
        stmt = stmt.where(at < bindparam("created_before", type_=at.type))
    if "q" in present:
        pattern = bindparam("pattern", type_=notes.c.title.type)
        stmt = stmt.where(
            or_(
                notes.c.title.ilike(pattern, escape="\\"),
                notes.c.raw_text.ilike(pattern, escape="\\"),
            )
        )
    if "after" in present:
        after_at = bindparam("after_at", type_=at.type)
        after_id = bindparam("after_id", type_=notes.c.id.type)
        stmt = stmt.where(seek(at, notes.c.id, (after_at, after_id), newest_first=True))
    # A search or a status reads the caller's notes until it has a page: maybe all of them.
    scans = bool(present & {"q", "status"})
    return Once(stmt.order_by(at.desc(), notes.c.id.desc()).limit(bindparam("limit")), scans=scans)


def page_query(
    caller: Caller, filters: NoteFilters, limit: int
) -> tuple[Once[Select[Any]], dict[str, Any]]:
    """Up to `limit` notes the caller may see, newest first (keyset pagination: an index
    scan in key order that stops after `limit` rows): the statement and its parameters."""
    params: dict[str, Any] = {"limit": limit, **tenant_params(caller)}
    present = set()
    for name in ("owner_id", "status", "created_after", "created_before"):
        if (value := getattr(filters, name)) is not None:
            params[name] = value
            present.add(name)
    if filters.q:
        params["pattern"] = _like_pattern(filters.q)
        present.add("q")
    if filters.after is not None:
        params["after_at"], params["after_id"] = filters.after
        present.add("after")
    return _page_statement(caller.role, frozenset(present)), params


async def page(
    session: AsyncSession, caller: Caller, filters: NoteFilters, limit: int
) -> list[Any]:
    stmt, params = page_query(caller, filters, limit)
    return await stmt.rows(session, params)


_ADD = Once(insert(notes).returning(notes))


def new_note(caller: Caller, values: dict[str, Any]) -> dict[str, Any]:
    """The row of a new note owned by the caller, in the caller's organization: queued,
    never attempted and never changed, one time for created_at and updated_at. Every column
    is in it, so the note's event can be written beside it in one statement."""
    now = utcnow()
    return {
        "id": uuid.uuid4(),
        "organization_id": caller.organization_id,
        "owner_id": caller.id,
        "title": None,
        "summary": None,
        "status": NoteStatus.QUEUED,
        "attempts": 0,
        "error": None,
        "summarized_at": None,
        "created_at": now,
        "updated_at": now,
        **values,
    }


async def add(session: AsyncSession, row: dict[str, Any]) -> Any:
    """Write a `new_note` row: the note as written."""
    return (await _ADD.rows(session, row))[0]


_NEW_COLUMNS = tuple(c.name for c in notes.c)
_NEW_PARAM = "note_{}"


def add_cte() -> CTE:
    """`add` as a part of a larger statement (a Postgres CTE named `note`, returning the
    note): its parameters are the `new_note` row's columns, each prefixed `note_`
    (`add_cte_params`)."""
    values = bound_row(notes, _NEW_COLUMNS, _NEW_PARAM)
    return insert(notes).values(values).returning(notes).cte("note")


def add_cte_params(row: dict[str, Any]) -> dict[str, Any]:
    return row_params(row, _NEW_COLUMNS, _NEW_PARAM)


async def change(
    session: AsyncSession, caller: Caller, note_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any]:
    """Write `values` to a note the caller has locked with `get(..., for_update=True)`; the
    note as it is now. Every column is written as given (no ORM change tracking to skip a
    value it believes unchanged)."""
    stmt = (
        update(notes)
        .where(notes.c.id == _NOTE_ID, visible_to(caller.role))
        .values(updated_at=utcnow(), **values)
        .returning(notes)
    )
    params = {"note_id": note_id, **tenant_params(caller)}
    changed: Row[Any] = (await session.execute(stmt, params)).one()
    return changed


_REMOVE = _by_role(lambda role: Once(delete(notes).where(notes.c.id == _NOTE_ID, visible_to(role))))


async def remove(session: AsyncSession, caller: Caller, note_id: uuid.UUID) -> None:
    await _REMOVE[caller.role].rows(session, {"note_id": note_id, **tenant_params(caller)})


_CREATED_SINCE = Once(
    select(func.count())
    .select_from(notes)
    .where(
        notes.c.organization_id == bindparam("organization_id", type_=notes.c.organization_id.type),
        notes.c.created_at >= bindparam("since", type_=notes.c.created_at.type),
    ),
    scans=True,  # a day's notes of the whole organization
)


async def count_created(session: AsyncSession, organization_id: uuid.UUID, since: datetime) -> int:
    """Notes an organization created since `since` that still exist (its usage report)."""
    params = {"organization_id": organization_id, "since": since}
    return int(await _CREATED_SINCE.scalar(session, params))


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


async def status_of(session: AsyncSession, note_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Statuses for the wait-for-result watcher; it only ever asks about ids it has shown."""
    rows = await session.execute(select(notes.c.id, notes.c.status).where(notes.c.id.in_(note_ids)))
    return {row_id: str(st) for row_id, st in rows.all()}


# ------------------------------------------------------------- for the notes' usage records


def with_note(column: str, note_id: uuid.UUID, *values: Any) -> Select[Any]:
    """A SELECT of the note's `column` (its `id` or its `organization_id`) followed by
    `values`: one row while the note exists, none once it is gone, so an INSERT ... SELECT
    built on it (what a summary cost, summarize/usage.py) writes nothing for a deleted note."""
    return select(notes.c[column], *values).where(notes.c.id == note_id)


# ------------------------------------------------------------- the tenancy rule in Python

# The column `visible_to` compares for each role, read from the rule itself.
_TENANT_COLUMN = {
    role: cast(Column[Any], cast(BinaryExpression[bool], visible_to(role)).left).name
    for role in Role
}


def tenant_key(caller: Caller) -> tuple[Role, uuid.UUID]:
    """The caller's tenant as a key: equal to one of `tenant_keys_of(row)` exactly when
    `visible_to` admits the row for this caller (the event feed files streams by it)."""
    return caller.role, tenant_params(caller)[TENANT]


def tenant_keys_of(row: Any) -> list[tuple[Role, uuid.UUID]]:
    """The keys of every tenant that may see `row` (a note, or anything that records a
    note's owner and organization: its events), one per role."""
    return [(role, getattr(row, column)) for role, column in _TENANT_COLUMN.items()]
