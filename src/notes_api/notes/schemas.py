from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from notes_api.core.schemas import (
    MAX_NOTE_CHARS,
    NoteText,
    RequestModel,
    ResponseModel,
    SearchText,
    Title,
    UTCTimestamp,
)
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


class NoteQuery(BaseModel):
    """`GET /notes`'s query string, validated as one model rather than a parameter at a
    time (which cost a page a twentieth of its CPU). Unknown parameters are ignored."""

    limit: int = Field(default=20, ge=1, le=100, description="page size")
    cursor: str | None = Field(default=None, max_length=200, description="from `next_cursor`")
    status: NoteStatus | None = None
    q: SearchText | None = Field(default=None, description="text to find in the title or the text")
    created_after: UTCTimestamp | None = None
    created_before: UTCTimestamp | None = None
    owner_id: uuid.UUID | None = Field(default=None, description="admins: one user's notes")


class NoteState(ResponseModel):
    """A note's public state as events carry it: everything but `raw_text`."""

    id: uuid.UUID
    title: str | None
    summary: str | None = Field(description="null until status is done")
    status: NoteStatus
    attempts: int
    error: str | None = Field(description="the last failure's message")
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    summarized_at: datetime | None


class NotePublic(NoteState):
    """A note: its state and its text."""

    raw_text: str


class NotePage(ResponseModel):
    items: list[NotePublic]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )
