from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field, field_validator

from notes_api.core.schemas import RequestModel, ResponseModel
from notes_api.events.models import EventType

Url = Field(max_length=2000, examples=["https://crm.example.com/hooks/notes"])
Events = Field(
    min_length=1,
    max_length=len(EventType),
    examples=[["note.done", "note.failed"]],
    json_schema_extra={"uniqueItems": True},
)


def _unique(events: list[EventType] | None) -> list[EventType] | None:
    if events is not None and len(set(events)) != len(events):
        raise ValueError("each event type may be listed once")
    return events


class WebhookCreate(RequestModel):
    url: str = Url
    events: list[EventType] = Events
    description: str | None = Field(default=None, max_length=500)

    _check_events = field_validator("events")(_unique)


class WebhookUpdate(RequestModel):
    url: str | None = Field(default=None, max_length=2000)
    events: list[EventType] | None = Field(
        default=None,
        min_length=1,
        max_length=len(EventType),
        json_schema_extra={"uniqueItems": True},
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None

    _check_events = field_validator("events")(_unique)


class WebhookPublic(ResponseModel):
    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="why it was disabled, when it was")
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="`whsec_...`: shown only in this answer; keep it safe")


class WebhookSecret(ResponseModel):
    secret: str = Field(
        description="the new `whsec_...` secret; the previous one keeps signing for 24 hours"
    )


class WebhookPage(ResponseModel):
    items: list[WebhookPublic]


class DeliveryPublic(ResponseModel):
    id: uuid.UUID
    event_id: int
    type: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int | None
    created_at: datetime


class DeliveryPage(ResponseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None
