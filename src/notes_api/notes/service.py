from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.service import confirm_caller
from notes_api.auth.tokens import AccessClaims
from notes_api.core.db import Database
from notes_api.core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from notes_api.core.models import utcnow
from notes_api.core.pagination import decode_cursor, split_page
from notes_api.events import outbox
from notes_api.events import signals as event_signals
from notes_api.events.models import EventType
from notes_api.jobs import queue, signals
from notes_api.notes import repository
from notes_api.notes.models import IdempotencyKey, Note, NoteStatus
from notes_api.notes.repository import Member
from notes_api.notes.schemas import NoteCreate, NotePage, NotePublic, NoteUpdate
from notes_api.notes.watcher import NoteWatcher
from notes_api.users.models import ACTIVE_MEMBER, member_params, users

SUMMARIZE = "summarize"
IDEMPOTENCY_TTL = timedelta(hours=24)


_INSERT_NOTE = insert(repository.notes)
# Postgres, the hottest write: the note, inserted only while its author is an active member
# (the organization taken from the member's row), then its summary job and the NOTIFY that
# wakes a worker, in one statement. One round trip, atomic with no transaction of its own.
_OWN_COLUMNS = [c.name for c in repository.notes.c if c.name not in ("owner_id", "organization_id")]
_NEW_NOTE = (
    insert(repository.notes)
    .from_select(
        [*_OWN_COLUMNS, "owner_id", "organization_id"],
        select(
            *(bindparam(c, type_=repository.notes.c[c].type) for c in _OWN_COLUMNS),
            users.c.id,
            users.c.organization_id,
        ).where(ACTIVE_MEMBER),
    )
    .returning(repository.notes.c.id)
    .cte("note")
)
# ... and its `note.queued` event (with its webhook deliveries), in the same statement.
_CREATE_AND_QUEUE = outbox.record_after(queue.enqueue_after(_NEW_NOTE), _NEW_NOTE)


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
    db: Database,
    claims: AccessClaims,
    body: NoteCreate,
    *,
    idempotency_key: str | None,
    max_attempts: int,
) -> Created:
    now = utcnow()
    note = NotePublic(
        id=uuid.uuid4(),
        title=body.title or None,
        raw_text=body.raw_text,
        summary=None,
        status=NoteStatus.QUEUED,
        attempts=0,
        error=None,
        owner_id=claims.user_id,
        created_at=now,
        updated_at=now,
        summarized_at=None,
    )
    job = queue.new_job(
        SUMMARIZE,
        {"note_id": str(note.id)},
        max_attempts=max_attempts,
        dedupe_key=str(note.id),
        now=now,
    )
    if idempotency_key is None and not db.is_sqlite:
        params = {
            **note.model_dump(exclude={"owner_id"}),
            **member_params(claims.user_id, claims.organization_id),
            **queue.job_params(job),
            **outbox.event_params(EventType.QUEUED, note, claims.organization_id, now=now),
        }
        async with db.connect() as conn:
            queued = (await conn.execute(_CREATE_AND_QUEUE, params)).first()
        if queued is None:
            raise Unauthorized("Invalid or expired access token")
        signals.wake_workers()  # a worker in this process; NOTIFY wakes the others
        event_signals.published()  # this process's streams; NOTIFY tells the others
        return Created(note, replayed=False)
    async with db.session(write=True) as session:
        conn = await session.connection()
        member = await confirm_caller(conn, claims)
        claim: IdempotencyKey | None = None
        if idempotency_key is not None:
            fingerprint = hashlib.sha256(
                json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
            ).hexdigest()
            replay = await _claim_key(session, member, idempotency_key, fingerprint)
            if isinstance(replay, Note):
                return Created(NotePublic.model_validate(replay), replayed=True)
            claim = replay
        await conn.execute(
            _INSERT_NOTE, {**note.model_dump(), "organization_id": member.organization_id}
        )
        # A new note has no job to cancel.
        await queue.enqueue_job(session, job)
        await outbox.record(session, EventType.QUEUED, note, organization_id=member.organization_id)
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


async def get_note(db: Database, claims: AccessClaims, note_id: uuid.UUID) -> Row[Any]:
    """Confirms the caller and reads the note in one round trip (two when the caller's role
    changed since its token was issued)."""
    async with db.connect() as conn:
        role, note = await repository.read_for_caller(conn, claims.caller, note_id)
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
    db: Database,
    claims: AccessClaims,
    note_id: uuid.UUID,
    watcher: NoteWatcher,
    wait: float,
) -> Row[Any]:
    """Answer once the note is done or failed, or after `wait` seconds. No connection is
    held while waiting: the watcher is woken by the worker's completion signal."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        note = await get_note(db, claims, note_id)
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or note.status in (NoteStatus.DONE, NoteStatus.FAILED):
            return note
        await watcher.wait(note_id, left)


async def list_notes(
    db: Database,
    claims: AccessClaims,
    filters: repository.NoteFilters,
    *,
    limit: int,
    cursor: str | None,
) -> NotePage:
    if cursor:
        filters = dataclasses.replace(filters, after=decode_cursor(cursor))
    async with db.connect() as conn:
        role, rows = await repository.list_for_caller(conn, claims.caller, filters, limit + 1)
    if role is None:
        raise Unauthorized("Invalid or expired access token")
    page, next_cursor = split_page(rows, limit)
    # One validation of plain mappings: a fifth cheaper than a model per row from attributes.
    items = [row._mapping for row in page]
    return NotePage.model_validate({"items": items, "next_cursor": next_cursor})


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
    requeue = body.raw_text is not None and body.raw_text != note.raw_text
    if "title" in fields:
        note.title = body.title or None
    if requeue and body.raw_text is not None:
        note.raw_text = body.raw_text
        # Cancelling the running job revokes its lease: its result can no longer land.
        await _queue_summary(session, note, max_attempts)
        note.error = None
    note.updated_at = utcnow()
    await session.flush()
    await outbox.record(session, EventType.QUEUED if requeue else EventType.UPDATED, note)
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
    await outbox.record(session, EventType.QUEUED, note)
    return note


async def delete_note(session: AsyncSession, member: Member, note_id: uuid.UUID) -> None:
    note = await _get_for_change(session, member, note_id)
    await queue.cancel_active(session, SUMMARIZE, str(note.id))
    await outbox.record(session, EventType.DELETED, note)
    await session.delete(note)
    await session.flush()


async def purge_expired_keys(session: AsyncSession) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < utcnow()))
