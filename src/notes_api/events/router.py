from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.security.utils import get_authorization_scheme_param
from sse_starlette import EventSourceResponse

from notes_api.auth.deps import CurrentCaller, TokenClaims
from notes_api.core.deps import DatabaseDep, SessionDep, SettingsDep
from notes_api.core.openapi import errors
from notes_api.events import service
from notes_api.events.feed import Feed

router = APIRouter(prefix="/notes", tags=["events"])

LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        description="The `id:` of the last event received: the stream starts with every "
        "event after it that is still kept (EVENT_RETENTION_HOURS).",
    ),
]

_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: `id:` the event id, `event:` its type, "
        "`data:` JSON `{id, type, occurred_at, data}`; a `: heartbeat` comment when idle",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
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
    caller: CurrentCaller
    claims: TokenClaims
    session: SessionDep
    db: DatabaseDep
    settings: SettingsDep
    last_event_id: LastEventId = None


Opening = Annotated[_Opening, Depends()]


async def _respond(opening: _Opening, note_id: uuid.UUID | None) -> EventSourceResponse:
    request, settings = opening.request, opening.settings
    feed: Feed = request.app.state.event_feed
    sub = await service.open_stream(opening.session, feed, opening.caller, note_id)
    _, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    stream = service.Stream(
        db=opening.db,
        feed=feed,
        sub=sub,
        jwt_secret=settings.jwt_secret.get_secret_value(),
        token=token,
        claims=opening.claims,
        heartbeat=settings.event_heartbeat_seconds,
        retry_ms=settings.event_retry_ms,
    )
    return EventSourceResponse(
        service.follow(stream, opening.last_event_id),
        # The stream sends its own heartbeats (and re-checks the caller at each).
        ping=max(60.0, settings.event_heartbeat_seconds * 4),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/events", responses=_ALL, response_class=EventSourceResponse)
async def stream_all(opening: Opening) -> EventSourceResponse:
    """Events of every note you may see (an agent: its own; an admin: its organization's),
    live, as Server-Sent Events. Reconnect with `Last-Event-ID` to get what you missed."""
    return await _respond(opening, None)


@router.get("/{note_id}/events", responses=_ONE, response_class=EventSourceResponse)
async def stream_note(note_id: uuid.UUID, opening: Opening) -> EventSourceResponse:
    """Events of one note, live (`queued`, `processing`, `done`...); ends after
    `note.deleted`."""
    return await _respond(opening, note_id)
