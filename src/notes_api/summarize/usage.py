"""Recording what a summary cost: on its note, and on its organization's UTC day."""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Table, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name
from notes_api.notes import repository
from notes_api.organizations.usage import record_statement
from notes_api.summarize.base import Usage
from notes_api.summarize.models import NoteUsage

note_usage = cast(Table, NoteUsage.__table__)
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
    await session.execute(record_statement(dialect, note_id, utcnow().date(), counts))
