"""An event stream: replay what the client missed, then follow the feed. Each wake (and
each heartbeat) re-checks the caller, token and membership, in the same short checkout as
the read, so a deactivated user's or an expired token's stream ends; between wakes the
stream holds no connection.

A stream's position is a number of its caller's organization (`seq`, see events/models.py):
those numbers commit in order and without gaps, so "every event after N" is the whole
story, whatever the commit order of other organizations' events."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import ServerSentEvent

from notes_api.core.db import Database
from notes_api.core.errors import InvalidInput, NotFound, Unauthorized
from notes_api.core.identity import Caller
from notes_api.events import repository as event_log
from notes_api.events.models import EventType
from notes_api.notes import repository
from notes_api.notes.models import NoteStatus
from notes_api.notes.schemas import NoteState
from notes_api.streams.feed import Feed, Subscription
from notes_api.streams.schemas import EventPublic
from notes_api.users.callers import CallerRecord, confirm_caller
from notes_api.users.tokens import AccessClaims, decode_access_token

_STATE_EVENT = {
    NoteStatus.QUEUED: EventType.QUEUED,
    NoteStatus.PROCESSING: EventType.PROCESSING,
    NoteStatus.DONE: EventType.DONE,
    NoteStatus.FAILED: EventType.FAILED,
}


@dataclass
class Opened:
    sub: Subscription
    after: int  # the stream sends the events numbered after this
    first: ServerSentEvent | None  # the note's state, for a note's stream opened afresh


async def open_stream(
    session: AsyncSession,
    feed: Feed,
    caller: Caller,
    note_id: uuid.UUID | None,
    last_event_id: int | None,
) -> Opened:
    """Check that the caller may see the note (when it names one) and that `last_event_id`
    is one of its organization's, find where the stream starts, and take a place in the
    feed. Where it starts is fixed before the stream says "connected": an event committed
    after the client heard that is one the stream delivers."""
    now = await event_log.position(session, caller.organization_id)
    if last_event_id is not None and last_event_id > now:
        raise InvalidInput(
            f"Last-Event-ID {last_event_id} is not an event of yours (the newest is {now}): "
            "reconnect without it",
            errors=[{"loc": ["header", "Last-Event-ID"], "msg": f"at most {now}"}],
        )
    first = None
    if note_id is not None:
        # Read after the position: a change in between is sent again, never missed.
        note = await repository.get(session, caller, note_id)
        if note is None:
            raise NotFound("Note not found")
        if last_event_id is None:
            first = _state_event(note, now)
    sub = feed.subscribe(caller, note_id)
    return Opened(sub, now if last_event_id is None else last_event_id, first)


def _state_event(note: Row[Any], after: int) -> ServerSentEvent:
    """A note's current state as its first event: the type of the event that brought it
    there (`note.done`...), and as id the number the stream resumes after."""
    event_type = _STATE_EVENT[NoteStatus(note.status)]
    body = EventPublic(
        id=after,
        type=event_type.value,
        occurred_at=note.updated_at,
        data=NoteState.model_validate(note).model_dump(mode="json"),
    )
    return ServerSentEvent(data=body.model_dump_json(), event=event_type.value, id=str(after))


@dataclass
class Stream:
    db: Database
    feed: Feed
    sub: Subscription
    after: int
    first: ServerSentEvent | None
    jwt_secret: str
    token: str
    claims: AccessClaims
    heartbeat: float
    retry_ms: int
    callers: CallerRecord | None = None  # the process's remembered callers


async def _read(stream: Stream, after: int) -> list[Row[Any]] | None:
    """The caller's next page of events, as the caller stands now; None when it may no
    longer stream (token expired, user deactivated or moved out of the organization)."""
    if decode_access_token(stream.jwt_secret, stream.token) is None:
        return None
    sub = stream.sub
    async with stream.db.session(write=False) as session:
        try:
            caller = await confirm_caller(session, stream.claims, stream.callers)
        except Unauthorized:
            return None
        if caller != sub.caller:  # the role changed since the stream opened
            stream.feed.recaller(sub, caller)
        visible = functools.partial(repository.visible_to, caller.role)
        stmt = event_log.page_statement(caller.organization_id, after, sub.note_id, visible)
        return list((await session.execute(stmt, repository.tenant_params(caller))).all())


async def follow(stream: Stream) -> AsyncIterator[ServerSentEvent]:
    """The stream's events: the note's state (a note's stream opened without
    Last-Event-ID), those after where it starts, then live ones."""
    feed, sub = stream.feed, stream.sub
    try:
        last = stream.after
        yield ServerSentEvent(comment="connected", retry=stream.retry_ms)
        if stream.first is not None:
            yield stream.first
        while not feed.closed:
            sub.wake.clear()
            rows = await _read(stream, last)
            if rows is None:
                return
            for row in rows:
                last = int(row.id)
                body = EventPublic.model_validate(row).model_dump_json()
                yield ServerSentEvent(data=body, event=row.type, id=str(row.id))
                if sub.note_id is not None and row.type == EventType.DELETED:
                    return  # nothing more can happen to this note
            if len(rows) == event_log.PAGE:
                continue
            try:
                async with asyncio.timeout(stream.heartbeat):
                    await sub.wake.wait()
            except TimeoutError:
                yield ServerSentEvent(comment="heartbeat")
    finally:
        feed.unsubscribe(sub)
