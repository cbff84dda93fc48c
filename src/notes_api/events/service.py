"""An event stream: replay what the client missed, then follow the feed. Each wake (and
each heartbeat) re-checks the caller, token and membership, in the same short checkout as
the read, so a deactivated user's or an expired token's stream ends; between wakes the
stream holds no connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, Select, Table, select
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import ServerSentEvent

from notes_api.auth.service import confirm_caller
from notes_api.auth.tokens import AccessClaims, Caller, decode_access_token
from notes_api.core.db import Database
from notes_api.core.errors import NotFound, Unauthorized
from notes_api.events.feed import Feed, Subscription
from notes_api.events.models import EventType, NoteEvent
from notes_api.events.schemas import EventPublic
from notes_api.notes import repository

PAGE = 200
events = cast(Table, NoteEvent.__table__)


def page_statement(
    caller: Caller, note_id: uuid.UUID | None, after: int, horizon: int
) -> Select[Any]:
    """The events after `after`, up to the feed's horizon, that the caller may see (the
    notes' tenancy rule, on the events' owner and organization), oldest first."""
    stmt = select(events.c.id, events.c.type, events.c.occurred_at, events.c.data).where(
        events.c.id > after, events.c.id <= horizon, repository.visible_to(caller.role, events)
    )
    if note_id is not None:
        stmt = stmt.where(events.c.note_id == note_id)
    return stmt.order_by(events.c.id).limit(PAGE)


async def open_stream(
    session: AsyncSession, feed: Feed, caller: Caller, note_id: uuid.UUID | None
) -> Subscription:
    """Check that the caller may see the note (when it names one), and take a place in the
    feed."""
    if note_id is not None and await repository.get(session, caller, note_id) is None:
        raise NotFound("Note not found")
    return feed.subscribe(caller, note_id)


@dataclass
class Stream:
    db: Database
    feed: Feed
    sub: Subscription
    jwt_secret: str
    token: str
    claims: AccessClaims
    heartbeat: float
    retry_ms: int


async def _read(stream: Stream, after: int) -> list[Row[Any]] | None:
    """The caller's next page of events, as the caller stands now; None when it may no
    longer stream (token expired, user deactivated or moved out of the organization)."""
    if decode_access_token(stream.jwt_secret, stream.token) is None:
        return None
    horizon = await stream.feed.horizon()
    sub = stream.sub
    async with stream.db.session(write=False) as session:
        try:
            caller = await confirm_caller(session, stream.claims)
        except Unauthorized:
            return None
        if caller != sub.caller:  # the role changed since the stream opened
            stream.feed.recaller(sub, caller)
        stmt = page_statement(caller, sub.note_id, after, horizon)
        return list((await session.execute(stmt, repository.tenant_params(caller))).all())


async def follow(stream: Stream, last_event_id: int | None) -> AsyncIterator[ServerSentEvent]:
    """The stream's events: those after `last_event_id` (when given), then live ones."""
    feed, sub = stream.feed, stream.sub
    try:
        # Where the stream starts is fixed before it says "connected": an event committed
        # after the client heard that is one the stream delivers.
        last = last_event_id if last_event_id is not None else await feed.horizon()
        yield ServerSentEvent(comment="connected", retry=stream.retry_ms)
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
            if len(rows) == PAGE:
                continue
            try:
                async with asyncio.timeout(stream.heartbeat):
                    await sub.wake.wait()
            except TimeoutError:
                yield ServerSentEvent(comment="heartbeat")
    finally:
        feed.unsubscribe(sub)
