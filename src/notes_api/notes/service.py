"""Notes: each operation is one function here, called by one route, inside the request's
unit of work. A change of a note locks its row first (`repository.get(..., for_update=True)`)
and only then touches its job, the same order the worker keeps, so concurrent changes take
turns and a loser answers as if it came second: 404 after a delete, 409 for a second retry."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, Select, select, true
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import alone
from notes_api.core.errors import Conflict, NotFound
from notes_api.core.identity import Caller
from notes_api.core.models import utcnow
from notes_api.core.pagination import decode_cursor, split_page
from notes_api.core.sql import dialect_name
from notes_api.core.statements import Once
from notes_api.events.models import EventType
from notes_api.jobs import queue
from notes_api.limits import counter
from notes_api.limits.deps import Quota
from notes_api.notes import idempotency, outbox, repository
from notes_api.notes.models import SUMMARIZE, NoteStatus
from notes_api.notes.schemas import NoteCreate, NotePage, NotePublic, NoteUpdate
from notes_api.notes.watcher import NoteWatcher

_TERMINAL = (NoteStatus.DONE, NoteStatus.FAILED)


@dataclass(frozen=True)
class Created:
    note: NotePublic
    replayed: bool


# What a note looks like while its new summary is queued.
_QUEUED = {"status": NoteStatus.QUEUED, "summary": None, "summarized_at": None, "attempts": 0}


async def _requeue(
    session: AsyncSession,
    caller: Caller,
    note: Row[Any],
    values: dict[str, Any],
    max_attempts: int,
) -> Row[Any]:
    """Write `values` to a locked note and queue its summary anew: a job still live for it is
    cancelled first (clearing its lease token fences the attempt running it: its result can
    no longer land). The note as it is now, and its `note.queued` event."""
    await queue.cancel_active(session, SUMMARIZE, str(note.id))
    await _enqueue_summary(session, note, max_attempts)
    changed = await repository.change(session, caller, note.id, {**values, **_QUEUED})
    await outbox.record(session, EventType.QUEUED, changed)
    return changed


def _summary_job(
    note_id: uuid.UUID, organization_id: uuid.UUID, max_attempts: int
) -> dict[str, Any]:
    """What `queue.enqueue` and `queue.new_job` are given for a note's summary."""
    return {
        "kind": SUMMARIZE,
        "payload": {"note_id": str(note_id)},
        "dedupe_key": str(note_id),
        "fairness_key": str(organization_id),  # organizations share the workers fairly
        "max_attempts": max_attempts,
    }


async def _enqueue_summary(session: AsyncSession, note: Row[Any], max_attempts: int) -> None:
    await queue.enqueue(session, **_summary_job(note.id, note.organization_id, max_attempts))


@functools.cache
def _add_queued_statement(windows: int) -> Once[Select[Any]]:
    """Postgres: a new note, its summary job and its `note.queued` event with the event's
    webhook deliveries, and the write counted against its `windows` limits, in one
    statement (the parts are their owners': the notes repository's, the queue's, the
    outbox's and the limits'); it answers the note, how many deliveries were queued and the
    counts. A count past its limit fails all of it."""
    note = repository.add_cte()
    written, deliveries = outbox.record_cte(many=False)
    stmt = select(note, deliveries.label("deliveries"))
    if windows:
        stmt = stmt.add_columns(counter.counted(windows).label("counts"))
    return Once(stmt.select_from(note.join(written, true())).add_cte(queue.enqueue_cte()))


async def _add_queued(
    session: AsyncSession,
    caller: Caller,
    values: dict[str, Any],
    max_attempts: int,
    quota: Quota,
    *,
    last: bool,
) -> Any:
    """A new note with its summary job and its `note.queued` event (a new note has no job
    to cancel), counted against the write limits: one statement on Postgres, run `alone`
    when it is the unit's `last`; on SQLite five (the note, the job, the event, its
    deliveries, the counts). The same rows either way, and a 429 past a limit."""
    row = repository.new_note(caller, values)
    if dialect_name(session) != "postgresql":
        note = await repository.add(session, row)
        await _enqueue_summary(session, note, max_attempts)
        await outbox.record(session, EventType.QUEUED, note)
        await quota.spend(session, summary=True)
        return note
    if last:
        alone(session)
    job = queue.new_job(**_summary_job(row["id"], caller.organization_id, max_attempts))
    params = repository.add_cte_params(row) | queue.enqueue_cte_params(job)
    params |= outbox.record_params([(EventType.QUEUED, SimpleNamespace(**row))])
    now = utcnow()
    windows, counting = quota.in_statement(summary=True, now=now)
    try:
        added = (await _add_queued_statement(windows).rows(session, params | counting))[0]
    except DBAPIError as error:
        refused = counter.refusal(error)
        if refused is None:
            raise
        quota.settle(refused, summary=True, now=now)  # raises the 429
        raise
    if windows:
        quota.settle(added.counts, summary=True, now=now)
    queue.enqueued(session, 1)
    outbox.recorded(session, added.deliveries)
    return added


async def create_note(
    session: AsyncSession,
    caller: Caller,
    body: NoteCreate,
    *,
    idempotency_key: str | None,
    max_attempts: int,
    quota: Quota,
) -> Created:
    claim = None
    if idempotency_key is not None:
        fingerprint = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        claim, replay = await idempotency.claim(session, caller, idempotency_key, fingerprint)
        if replay is not None:
            await quota.spend(session, summary=False)  # a request, but no new note or summary
            return Created(NotePublic.model_validate(replay), replayed=True)
    values = {"title": body.title or None, "raw_text": body.raw_text}
    last = claim is None  # no key to bind after the write
    note = await _add_queued(session, caller, values, max_attempts, quota, last=last)
    if claim is not None:
        await idempotency.bind(session, claim, note.id)
    return Created(NotePublic.model_validate(note), replayed=False)


async def get_note(
    session: AsyncSession,
    caller: Caller,
    note_id: uuid.UUID,
    *,
    watcher: NoteWatcher,
    wait: float = 0,
) -> NotePublic:
    """The note; with `wait`, once it is done or failed, or after `wait` seconds. While it
    waits the read-only unit gives its connection back (closing a reader ends nothing but
    the read); the watcher wakes it when the worker reports the job finished."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        note = await repository.get(session, caller, note_id)
        if note is None:
            raise NotFound("Note not found")
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or note.status in _TERMINAL or watcher.closing:
            return NotePublic.model_validate(note)
        await session.close()
        await watcher.wait(note_id, left)


async def list_notes(
    session: AsyncSession,
    caller: Caller,
    filters: repository.NoteFilters,
    *,
    limit: int,
    cursor: str | None,
) -> NotePage:
    if cursor:
        filters = dataclasses.replace(filters, after=decode_cursor(cursor))
    rows = await repository.page(session, caller, filters, limit + 1)
    page, next_cursor = split_page(rows, limit)
    # One validation of the whole page, each row read by its attributes (a fifth cheaper
    # than the rows made dicts first, five times cheaper than a model per row).
    return NotePage.model_validate({"items": page, "next_cursor": next_cursor})


async def _lock(session: AsyncSession, caller: Caller, note_id: uuid.UUID) -> Any:
    note = await repository.get(session, caller, note_id, for_update=True)
    if note is None:
        raise NotFound("Note not found")
    return note


async def update_note(
    session: AsyncSession,
    caller: Caller,
    note_id: uuid.UUID,
    body: NoteUpdate,
    *,
    max_attempts: int,
    quota: Quota,
) -> NotePublic:
    note = await _lock(session, caller, note_id)
    values: dict[str, Any] = {}
    if "title" in body.model_fields_set:
        values["title"] = body.title or None
    requeue = body.raw_text is not None and body.raw_text != note.raw_text
    if requeue:
        values.update(raw_text=body.raw_text, error=None)
        changed = await _requeue(session, caller, note, values, max_attempts)
    else:
        changed = await repository.change(session, caller, note_id, values)
        await outbox.record(session, EventType.UPDATED, changed)
    await quota.spend(session, summary=requeue)
    return NotePublic.model_validate(changed)


async def retry_note(
    session: AsyncSession, caller: Caller, note_id: uuid.UUID, *, max_attempts: int, quota: Quota
) -> NotePublic:
    note = await _lock(session, caller, note_id)
    if note.status is not NoteStatus.FAILED:
        raise Conflict(f"Only a failed note can be retried; this one is {note.status.value}")
    retried = await _requeue(session, caller, note, {}, max_attempts)
    await quota.spend(session, summary=True)
    return NotePublic.model_validate(retried)


async def delete_note(session: AsyncSession, caller: Caller, note_id: uuid.UUID) -> None:
    note = await _lock(session, caller, note_id)
    await queue.cancel_active(session, SUMMARIZE, str(note_id))
    await repository.remove(session, caller, note_id)
    await outbox.record(session, EventType.DELETED, note)
