"""Idempotency keys: the table that lets a client retry a create with the same
`Idempotency-Key` and get the first note back instead of a second one, for 24 hours."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.errors import Conflict, InvalidInput
from notes_api.core.identity import Caller
from notes_api.core.models import utcnow
from notes_api.notes import repository
from notes_api.notes.models import IdempotencyKey

TTL = timedelta(hours=24)


async def claim(
    session: AsyncSession, caller: Caller, key: str, fingerprint: str
) -> tuple[IdempotencyKey | None, Row[Any] | None]:
    """Claim `key` for this request: (the claim, None); or, when an earlier request made a
    note with it, (None, that note)."""
    now = utcnow()
    for _ in range(2):
        existing = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == caller.id, IdempotencyKey.key == key
            )
        )
        if existing is not None and existing.expires_at <= now:
            await session.delete(existing)
            await session.flush()
            existing = None
        if existing is not None:
            if existing.request_hash != fingerprint:
                raise InvalidInput(
                    "This Idempotency-Key was already used with a different body",
                    errors=[
                        {
                            "loc": ["header", "Idempotency-Key"],
                            "msg": "reused with a different request body",
                        }
                    ],
                )
            note = (
                await repository.get(session, caller, existing.note_id)
                if existing.note_id
                else None
            )
            if note is None:
                raise Conflict("A request with this Idempotency-Key is still in progress")
            return None, note
        mine = IdempotencyKey(
            user_id=caller.id,
            key=key,
            request_hash=fingerprint,
            created_at=now,
            expires_at=now + TTL,
        )
        try:
            # On Postgres a concurrent request with the same key waits here on the unique
            # index until the first commits, then fails and replays the first one's note.
            async with session.begin_nested():
                session.add(mine)
                await session.flush()
        except IntegrityError:
            continue
        return mine, None
    raise Conflict("A request with this Idempotency-Key is still in progress")


async def bind(session: AsyncSession, claim: IdempotencyKey, note_id: uuid.UUID) -> None:
    """The note the claiming request made: what a retry with its key gets back."""
    claim.note_id = note_id
    await session.flush()


async def purge_expired(session: AsyncSession) -> None:
    """House-keeping: keys past their 24 hours."""
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < utcnow()))
