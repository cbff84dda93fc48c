"""An event stream: replay what the client missed, then follow the feed. Each wake (and
each heartbeat) re-checks the caller, token and membership, in the same short checkout as
the read, so a deactivated user's or an expired token's stream ends; between wakes the
stream holds no connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, select, true
from sse_starlette import ServerSentEvent

from notes_api.auth.service import confirm_caller
from notes_api.auth.tokens import AccessClaims, Caller, decode_access_token
from notes_api.core.db import Database
from notes_api.core.errors import NotFound, Unauthorized
from notes_api.events.feed import Feed, Subscription
from notes_api.events.models import EventType, NoteEvent
from notes_api.events.schemas import EventPublic
from notes_api.notes import repository
from notes_api.users.models import ACTIVE_MEMBER, Role, users

PAGE = 200
events = NoteEvent.__table__


def _page_query(role: Role, one_note: bool) -> Any:
    """The caller's current role (no row: no longer an active member) joined to the events
    after `after` and up to the feed's horizon that it may see as `role` (the notes'
    tenancy rule, on the events' owner and organization), oldest first: the re-check and
    the read in one round trip."""
    conditions = [
        events.c.id > bindparam("after"),
        events.c.id <= bindparam("horizon"),
        repository.tenancy_condition(role, events.c.owner_id, events.c.organization_id),
    ]
    if one_note:
        conditions.append(events.c.note_id == bindparam("note_id", type_=events.c.note_id.type))
    page = (
        select(events.c.id, events.c.type, events.c.occurred_at, events.c.data)
        .where(*conditions)
        .order_by(events.c.id)
        .limit(PAGE)
        .subquery("page")
    )
    return (
        select(users.c.role.label("caller_role"), page)
        .select_from(users.outerjoin(page, true()))
        .where(ACTIVE_MEMBER)
        .order_by(page.c.id)
    )


_PAGES = {(role, one): _page_query(role, one) for role in Role for one in (False, True)}


async def open_stream(
    db: Database, feed: Feed, claims: AccessClaims, note_id: uuid.UUID | None
) -> Subscription:
    """Check the caller (and that it may see the note), and take a place in the feed."""
    async with db.connect() as conn:
        if note_id is None:
            caller = await confirm_caller(conn, claims)
        else:
            role, note = await repository.read_for_caller(conn, claims.caller, note_id)
            if role is None:
                raise Unauthorized("Invalid or expired access token")
            if note is None:
                raise NotFound("Note not found")
            caller = Caller(claims.user_id, claims.organization_id, role)
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
    params = {"after": after, "horizon": horizon, "note_id": sub.note_id}
    async with stream.db.connect() as conn:
        for _ in range(2):
            caller = sub.caller
            query = _PAGES[(caller.role, sub.note_id is not None)]
            rows = (await conn.execute(query, {**params, **repository.scope(caller)})).all()
            if not rows:
                return None
            role = rows[0].caller_role
            if role is caller.role:
                return [row for row in rows if row.id is not None]
            # The role changed since the stream opened: read again with the new one.
            stream.feed.recaller(sub, Caller(caller.id, caller.organization_id, role))
    return None


async def follow(stream: Stream, last_event_id: int | None) -> AsyncIterator[ServerSentEvent]:
    """The stream's events: those after `last_event_id` (when given), then live ones."""
    feed, sub = stream.feed, stream.sub
    try:
        yield ServerSentEvent(comment="connected", retry=stream.retry_ms)
        last = last_event_id if last_event_id is not None else await feed.horizon()
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
