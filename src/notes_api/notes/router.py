from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from notes_api.core.deps import UnitOfWorkRoute
from notes_api.core.openapi import errors
from notes_api.limits.deps import write_quota
from notes_api.notes import service
from notes_api.notes.repository import NoteFilters
from notes_api.notes.schemas import NoteCreate, NotePage, NotePublic, NoteQuery, NoteUpdate
from notes_api.notes.watcher import NoteWatcher
from notes_api.users.deps import CallerWork

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/notes", tags=["notes"])
# The examples of this router's errors (core/openapi.py).
_NOTE = "Note not found"
_WRITES = "Too many writes from this user; try again later"
_NOT_FAILED = "Only a failed note can be retried; this one is queued"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Any unique string (a UUID, say). Retrying with the same key and body "
        "returns the first note instead of creating another, for 24 hours.",
    ),
]


def _watcher(request: Request) -> NoteWatcher:
    watcher: NoteWatcher = request.app.state.note_watcher
    return watcher


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 401, 413, 422, 429, details={429: _WRITES}),
)
async def create_note(
    body: NoteCreate,
    work: CallerWork,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> NotePublic:
    """Save a note and queue its summary. Answers at once with `status: queued`; follow
    `Location` (with `?wait=10`, say) to get the summary."""
    created = await service.create_note(
        work.session,
        work.caller,
        body,
        idempotency_key=idempotency_key,
        max_attempts=work.settings.job_max_attempts,
        quota=write_quota(work, response),
    )
    response.headers["Location"] = f"/notes/{created.note.id}"
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return created.note


@router.get("", responses=errors(401, 422))
async def list_notes(work: CallerWork, query: Annotated[NoteQuery, Query()]) -> NotePage:
    """Your notes (an admin: the organization's), newest first, a page at a time."""
    filters = NoteFilters(
        status=query.status,
        q=query.q,
        created_after=query.created_after,
        created_before=query.created_before,
        owner_id=query.owner_id,
    )
    return await service.list_notes(
        work.session, work.caller, filters, limit=query.limit, cursor=query.cursor
    )


@router.get("/{note_id}", responses=errors(401, 404, 422, details={404: _NOTE}))
async def get_note(
    note_id: uuid.UUID,
    work: CallerWork,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for done/failed")] = 0,
) -> NotePublic:
    """One note. With `wait`, the answer is held until the summary is done or failed, or
    `wait` seconds pass, whichever comes first."""
    return await service.get_note(
        work.session, work.caller, note_id, watcher=_watcher(request), wait=wait
    )


@router.patch(
    "/{note_id}",
    responses=errors(400, 401, 404, 413, 422, 429, details={404: _NOTE, 429: _WRITES}),
)
async def update_note(
    note_id: uuid.UUID,
    body: NoteUpdate,
    work: CallerWork,
    response: Response,
) -> NotePublic:
    """Edit a note. New `raw_text` queues a new summary; a summary still being made for the
    old text is discarded."""
    return await service.update_note(
        work.session,
        work.caller,
        note_id,
        body,
        max_attempts=work.settings.job_max_attempts,
        quota=write_quota(work, response),
    )


@router.post(
    "/{note_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 404, 409, 422, 429, details={404: _NOTE, 409: _NOT_FAILED, 429: _WRITES}),
)
async def retry_note(
    note_id: uuid.UUID,
    work: CallerWork,
    response: Response,
) -> NotePublic:
    """Queue a new summary for a `failed` note (409 for any other status)."""
    return await service.retry_note(
        work.session,
        work.caller,
        note_id,
        max_attempts=work.settings.job_max_attempts,
        quota=write_quota(work, response),
    )


@router.delete(
    "/{note_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 422, details={404: _NOTE}),
)
async def delete_note(note_id: uuid.UUID, work: CallerWork) -> Response:
    """Delete a note (and cancel its summary)."""
    await service.delete_note(work.session, work.caller, note_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
