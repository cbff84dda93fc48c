from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from notes_api.core.schemas import ResponseModel
from notes_api.events.models import EventType
from notes_api.notes.schemas import NoteState


class EventPublic(ResponseModel):
    """The `data:` of a stream's event."""

    id: int  # its number in the organization (`seq`), not the row's id
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class NoteDeleted(ResponseModel):
    """The `data` of a `note.deleted` event."""

    id: uuid.UUID
    owner_id: uuid.UUID


class StreamEventData(ResponseModel):
    """What a stream's `data:` line holds (the document's view of EventPublic)."""

    id: int = Field(ge=0, description="the event's number in your organization")
    type: EventType
    occurred_at: datetime
    data: NoteState | NoteDeleted = Field(
        description="the note's state; for `note.deleted` only its id and owner"
    )


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its `$defs` put in place: the stream's item schema sits
    inside a response, where a `#/$defs/...` reference would point nowhere."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def stream_item_schema() -> dict[str, Any]:
    """One Server-Sent Event of the note streams, as OpenAPI 3.2's `itemSchema` describes
    an item of `text/event-stream` (FastAPI's own SSE routes use the same shape): the
    fields `id` and `event` as strings, `data` a string of JSON."""
    types = [t.value for t in EventType]
    return {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "= data's `id`"},
            "event": {"type": "string", "enum": types, "description": "= data's `type`"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _inlined(StreamEventData.model_json_schema(mode="serialization")),
            },
            "retry": {"type": "integer", "minimum": 0},
        },
    }
