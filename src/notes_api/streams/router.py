from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.security.utils import get_authorization_scheme_param
from sse_starlette import EventSourceResponse

from notes_api.core.deps import DatabaseDep, UnitOfWorkRoute
from notes_api.core.errors import AppError
from notes_api.core.openapi import errors
from notes_api.streams import service
from notes_api.streams.feed import Feed
from notes_api.streams.schemas import stream_item_schema
from notes_api.users.deps import CallerWork

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/notes", tags=["events"])

LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        # The ids are BIGINTs: a larger number is refused here, not by the database.
        le=2**63 - 1,
        description="The `id:` of the last event received: the stream starts with every "
        "event after it that is still kept (EVENT_RETENTION_HOURS). Without it, a note's "
        "stream starts with the note's current state; the collection's with what comes.",
    ),
]

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`. Each event: `id:` its number in your "
        "organization (send the last one back as `Last-Event-ID`), `event:` its type, "
        "`data:` one line of JSON `{id, type, occurred_at, data}`. The stream opens with "
        "`: connected` and `retry:`, and sends a `: heartbeat` comment when idle.",
        "content": {"text/event-stream": {"itemSchema": stream_item_schema()}},
    },
}
# The examples of this router's errors (core/openapi.py); 5 is EVENT_STREAMS_PER_USER's default.
_LIMIT = {429: "At most 5 open event streams per user"}
_ALL = {**_STREAM, **errors(401, 422, 429, details=_LIMIT)}
_ONE = {**_STREAM, **errors(401, 404, 422, 429, details={404: "Note not found", **_LIMIT})}


@dataclass
class _Opening:
    """What opening either stream takes: the caller (confirmed), its token (each wake checks
    it again), and where to resume from."""

    request: Request
    work: CallerWork
    db: DatabaseDep
    last_event_id: LastEventId = None


Opening = Annotated[_Opening, Depends()]


async def _respond(opening: _Opening, note_id: uuid.UUID | None) -> EventSourceResponse:
    request, work = opening.request, opening.work
    settings = work.settings
    feed: Feed = request.app.state.event_feed
    opened = await service.open_stream(
        work.session, feed, work.caller, note_id, opening.last_event_id
    )
    _, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    stream = service.Stream(
        db=opening.db,
        feed=feed,
        sub=opened.sub,
        after=opened.after,
        first=opened.first,
        jwt_secret=settings.jwt_secret.get_secret_value(),
        token=token,
        claims=work.claims,
        heartbeat=settings.event_heartbeat_seconds,
        retry_ms=settings.event_retry_ms,
        callers=request.app.state.callers,
    )
    return EventSourceResponse(
        service.follow(stream),
        # The stream sends its own heartbeats (and re-checks the caller at each).
        ping=max(60.0, settings.event_heartbeat_seconds * 4),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/events", responses=_ALL, response_class=EventSourceResponse)
async def stream_all(opening: Opening) -> EventSourceResponse:
    """Events of every note you may see (an agent: its own; an admin: its organization's),
    live, as Server-Sent Events. Reconnect with `Last-Event-ID` to get what you missed; to
    catch up from nothing, open the stream, then list `GET /notes` (or send
    `Last-Event-ID: 0` to replay every event still kept)."""
    return await _respond(opening, None)


class _MethodNotAllowed(AppError):
    status, title = 405, "Method Not Allowed"


# Without this, `PATCH /notes/events` would be taken for `PATCH /notes/{note_id}` and answer
# 422 about a note id. (Kept out of the document: it is not an operation.)
@router.api_route(
    "/events",
    methods=["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def events_other_methods() -> None:
    raise _MethodNotAllowed("Only GET opens the event stream", headers={"Allow": "GET"})


@router.get("/{note_id}/events", responses=_ONE, response_class=EventSourceResponse)
async def stream_note(note_id: uuid.UUID, opening: Opening) -> EventSourceResponse:
    """Events of one note, live (`queued`, `processing`, `done`...), ends after
    `note.deleted`. Opened without `Last-Event-ID`, it starts with the note's current state:
    one event of the type that brought it there (`note.done`...), whose `id` resumes after
    it."""
    return await _respond(opening, note_id)
