from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.tokens import AccessClaims
from notes_api.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from notes_api.core.models import utcnow
from notes_api.core.pagination import decode_cursor, split_page
from notes_api.jobs import queue
from notes_api.notes import repository
from notes_api.notes.models import IdempotencyKey, Note, NoteStatus
from notes_api.notes.repository import Member
from notes_api.notes.schemas import NoteCreate, NotePage, NotePublic, NoteUpdate
from notes_api.notes.watcher import NoteWatcher

SUMMARIZE = "summarize"
IDEMPOTENCY_TTL = timedelta(hours=24)


_INSERT_NOTE = insert(repository.notes)


@dataclass(frozen=True)
class Created:
    note: NotePublic
    replayed: bool


async def _queue_summary(session: AsyncSession, note: Note, max_attempts: int) -> None:
    await queue.cancel_active(session, SUMMARIZE, str(note.id))
    await queue.enqueue(
        session,
        SUMMARIZE,
        {"note_id": str(note.id)},
        dedupe_key=str(note.id),
        max_attempts=max_attempts,
    )
    note.status, note.summary, note.summarized_at, note.attempts = NoteStatus.QUEUED, None, None, 0


async def create_note(
    session: AsyncSession,
    member: Member,
    body: NoteCreate,
    *,
    idempotency_key: str | None,
    max_attempts: int,
) -> Created:
    claim: IdempotencyKey | None = None
    if idempotency_key is not None:
        fingerprint = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        replay = await _claim_key(session, member, idempotency_key, fingerprint)
        if isinstance(replay, Note):
            return Created(NotePublic.model_validate(replay), replayed=True)
        claim = replay
    # The hottest write: Core inserts of rows built here, with no ORM unit of work.
    now = utcnow()
    note = NotePublic(
        id=uuid.uuid4(),
        title=body.title or None,
        raw_text=body.raw_text,
        summary=None,
        status=NoteStatus.QUEUED,
        attempts=0,
        error=None,
        owner_id=member.id,
        created_at=now,
        updated_at=now,
        summarized_at=None,
    )
    conn = await session.connection()
    await conn.execute(
        _INSERT_NOTE, {**note.model_dump(), "organization_id": member.organization_id}
    )
    # A new note has no job to cancel.
    await queue.enqueue(
        session,
        SUMMARIZE,
        {"note_id": str(note.id)},
        dedupe_key=str(note.id),
        max_attempts=max_attempts,
    )
    if claim is not None:
        claim.note_id = note.id
        await session.flush()
    return Created(note, replayed=False)


async def _claim_key(
    session: AsyncSession, member: Member, key: str, fingerprint: str
) -> IdempotencyKey | Note:
    """Claim `key` for this request, or return the note an earlier request made with it."""
    now = utcnow()
    for _ in range(2):
        existing = await session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.user_id == member.id, IdempotencyKey.key == key
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
            note = await session.get(Note, existing.note_id) if existing.note_id else None
            if note is None:
                raise Conflict("A request with this Idempotency-Key is still in progress")
            return note
        claim = IdempotencyKey(
            user_id=member.id,
            key=key,
            request_hash=fingerprint,
            created_at=now,
            expires_at=now + IDEMPOTENCY_TTL,
        )
        try:
            # On Postgres a concurrent request with the same key waits here on the unique
            # index until the first commits, then fails and replays the first one's note.
            async with session.begin_nested():
                session.add(claim)
                await session.flush()
        except IntegrityError:
            continue
        return claim
    raise Conflict("A request with this Idempotency-Key is still in progress")


async def get_note(session: AsyncSession, claims: AccessClaims, note_id: uuid.UUID) -> Row[Any]:
    """Confirms the caller and reads the note in one round trip (two when the caller's role
    changed since its token was issued)."""
    role, note = await repository.read_for_caller(session, claims.caller, note_id)
    if role is None:
        raise Unauthorized("Invalid or expired access token")
    if note is None:
        raise NotFound("Note not found")
    return note


async def _get_for_change(session: AsyncSession, member: Member, note_id: uuid.UUID) -> Note:
    note = await repository.get_visible(session, member, note_id)
    if note is None:
        raise NotFound("Note not found")
    return note


async def wait_for_note(
    session: AsyncSession,
    claims: AccessClaims,
    note_id: uuid.UUID,
    watcher: NoteWatcher,
    wait: float,
) -> Row[Any]:
    """Answer once the note is done or failed, or after `wait` seconds. No connection is
    held while waiting: the watcher is woken by the worker's completion signal."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        note = await get_note(session, claims, note_id)
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or note.status in (NoteStatus.DONE, NoteStatus.FAILED):
            return note
        # Ending the (read-only) transaction returns the connection to the pool while we wait.
        await session.commit()
        await watcher.wait(note_id, left)


async def list_notes(
    session: AsyncSession,
    claims: AccessClaims,
    filters: repository.NoteFilters,
    *,
    limit: int,
    cursor: str | None,
) -> NotePage:
    if cursor:
        filters = dataclasses.replace(filters, after=decode_cursor(cursor))
    role, rows = await repository.list_for_caller(session, claims.caller, filters, limit + 1)
    if role is None:
        raise Unauthorized("Invalid or expired access token")
    page, next_cursor = split_page(rows, limit)
    return NotePage(items=[NotePublic.model_validate(n) for n in page], next_cursor=next_cursor)


async def update_note(
    session: AsyncSession,
    member: Member,
    note_id: uuid.UUID,
    body: NoteUpdate,
    *,
    max_attempts: int,
) -> Note:
    note = await _get_for_change(session, member, note_id)
    fields = body.model_fields_set
    if "title" in fields:
        note.title = body.title or None
    if body.raw_text is not None and body.raw_text != note.raw_text:
        note.raw_text = body.raw_text
        # Cancelling the running job revokes its lease: its result can no longer land.
        await _queue_summary(session, note, max_attempts)
        note.error = None
    note.updated_at = utcnow()
    await session.flush()
    return note


async def retry_note(
    session: AsyncSession, member: Member, note_id: uuid.UUID, *, max_attempts: int
) -> Note:
    note = await _get_for_change(session, member, note_id)
    if note.status is not NoteStatus.FAILED:
        raise Conflict(f"Only a failed note can be retried; this one is {note.status.value}")
    await _queue_summary(session, note, max_attempts)
    note.updated_at = utcnow()
    await session.flush()
    return note


async def delete_note(session: AsyncSession, member: Member, note_id: uuid.UUID) -> None:
    note = await _get_for_change(session, member, note_id)
    await queue.cancel_active(session, SUMMARIZE, str(note.id))
    await session.delete(note)
    await session.flush()


async def purge_expired_keys(session: AsyncSession) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < utcnow()))
