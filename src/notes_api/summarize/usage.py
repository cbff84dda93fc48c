"""What summaries cost, recorded by the summary job: on each note, and on its organization's
UTC day; and an organization's usage as its admins read it. Notes created are counted by the
notes' repository from the notes themselves (`ix_notes_org_created`), so the hot create path
writes nothing more; a deleted note no longer counts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any, cast

from sqlalchemy import Table, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name
from notes_api.notes import repository
from notes_api.summarize.base import Usage
from notes_api.summarize.models import NoteUsage, OrganizationUsage
from notes_api.summarize.schemas import OrganizationUsagePublic, UsagePeriod

note_usage = cast(Table, NoteUsage.__table__)
organization_usage = cast(Table, OrganizationUsage.__table__)
_COLUMNS = ("model_calls", "prompt_tokens", "completion_tokens")


async def record(session: AsyncSession, note_id: uuid.UUID, usage: Usage) -> None:
    """Add `usage` to the note's and its organization's totals (nothing if the note is gone)."""
    if usage.model_calls == 0:
        return
    dialect = dialect_name(session)
    counts = {c: getattr(usage, c) for c in _COLUMNS}
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = (literal(counts[c], note_usage.c[c].type) for c in _COLUMNS)
    stmt = insert(note_usage).from_select(
        ["note_id", *_COLUMNS], repository.with_note("id", note_id, *values)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[note_usage.c.note_id],
        set_={c: note_usage.c[c] + stmt.excluded[c] for c in _COLUMNS},
    )
    await session.execute(stmt)
    await session.execute(_organization_day(dialect, note_id, utcnow().date(), counts))


def _organization_day(dialect: str, note_id: uuid.UUID, day: date, reply: dict[str, int]) -> Any:
    """Add one summary's model calls and tokens to its note's organization's day."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    usage = organization_usage
    stmt = insert(usage).from_select(
        ["organization_id", "day", *_COLUMNS],
        repository.with_note(
            "organization_id",
            note_id,
            literal(day, usage.c.day.type),
            *(literal(reply[c], usage.c[c].type) for c in _COLUMNS),
        ),
    )
    return stmt.on_conflict_do_update(
        index_elements=[usage.c.organization_id, usage.c.day],
        set_={c: usage.c[c] + stmt.excluded[c] for c in _COLUMNS},
    )


async def _period(
    session: AsyncSession, organization_id: uuid.UUID, start: date, end: date
) -> UsagePeriod:
    since = datetime.combine(start, time.min, UTC)
    created = await repository.count_created(session, organization_id, since)
    usage = organization_usage
    sums = (
        await session.execute(
            select(
                func.coalesce(func.sum(usage.c.model_calls), 0),
                func.coalesce(func.sum(usage.c.prompt_tokens), 0),
                func.coalesce(func.sum(usage.c.completion_tokens), 0),
            ).where(usage.c.organization_id == organization_id, usage.c.day >= start)
        )
    ).one()
    return UsagePeriod(
        start=start,
        end=end,
        notes_created=int(created or 0),
        model_calls=int(sums[0]),
        prompt_tokens=int(sums[1]),
        completion_tokens=int(sums[2]),
    )


async def usage_of(session: AsyncSession, organization_id: uuid.UUID) -> OrganizationUsagePublic:
    today = utcnow().date()
    return OrganizationUsagePublic(
        organization_id=organization_id,
        today=await _period(session, organization_id, today, today),
        month=await _period(session, organization_id, today.replace(day=1), today),
    )
