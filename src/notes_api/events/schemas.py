from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from notes_api.core.schemas import ResponseModel
from notes_api.notes.models import NoteStatus


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


class EventPublic(ResponseModel):
    """The `data:` of a stream's event."""

    id: int
    type: str
    occurred_at: datetime
    data: dict[str, Any]
