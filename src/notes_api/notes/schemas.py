from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from notes_api.core.schemas import MAX_NOTE_CHARS, NoteText, RequestModel, ResponseModel, Title
from notes_api.notes.models import NoteStatus


class NoteCreate(RequestModel):
    raw_text: NoteText = Field(
        description=f"The note itself: 1 to {MAX_NOTE_CHARS:,} characters, not blank.",
        examples=["Call with Dana from Acme. They want the CRM export by Friday..."],
    )
    title: Title | None = Field(default=None, examples=["Acme follow-up"])


class NoteUpdate(RequestModel):
    raw_text: NoteText | None = Field(default=None, description="New text; queues a new summary.")
    title: Title | None = None


class NotePublic(ResponseModel):
    id: uuid.UUID
    title: str | None
    raw_text: str
    summary: str | None = Field(description="null until status is done")
    status: NoteStatus
    attempts: int
    error: str | None = Field(description="the last failure's message")
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    summarized_at: datetime | None


class NotePage(ResponseModel):
    items: list[NotePublic]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class NoteState(ResponseModel):
    """A note's public state as events carry it: everything but `raw_text`."""

    id: uuid.UUID
    title: str | None
    summary: str | None
    status: NoteStatus
    attempts: int
    error: str | None
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    summarized_at: datetime | None
