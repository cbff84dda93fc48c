"""The only place that queries notes. Tenancy lives in `visible_to`: every read goes through
it, so an agent sees its own notes, an admin its organization's, and nothing crosses over."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.notes.models import Note, NoteStatus
from notes_api.users.models import Role, User


def visible_to(user: User) -> Any:
    if user.role is Role.ADMIN:
        return Note.organization_id == user.organization_id
    return Note.owner_id == user.id


@dataclass(frozen=True)
class NoteFilters:
    status: NoteStatus | None = None
    q: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner_id: uuid.UUID | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset position, newest first


async def get_visible(
    session: AsyncSession, user: User, note_id: uuid.UUID, *, for_update: bool = False
) -> Note | None:
    stmt = select(Note).where(Note.id == note_id, visible_to(user))
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).one_or_none()


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_query(user: User, filters: NoteFilters, limit: int) -> Select[Note]:
    stmt = select(Note).where(visible_to(user))
    if filters.owner_id is not None:
        stmt = stmt.where(Note.owner_id == filters.owner_id)
    if filters.status is not None:
        stmt = stmt.where(Note.status == filters.status)
    if filters.created_after is not None:
        stmt = stmt.where(Note.created_at > filters.created_after)
    if filters.created_before is not None:
        stmt = stmt.where(Note.created_at < filters.created_before)
    if filters.q:
        pattern = _like_pattern(filters.q)
        stmt = stmt.where(
            or_(Note.title.ilike(pattern, escape="\\"), Note.raw_text.ilike(pattern, escape="\\"))
        )
    if filters.after is not None:
        created, last_id = filters.after
        stmt = stmt.where(
            or_(Note.created_at < created, (Note.created_at == created) & (Note.id < last_id))
        )
    return stmt.order_by(Note.created_at.desc(), Note.id.desc()).limit(limit)


async def list_visible(
    session: AsyncSession, user: User, filters: NoteFilters, limit: int
) -> list[Note]:
    return list((await session.scalars(list_query(user, filters, limit))).all())


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
