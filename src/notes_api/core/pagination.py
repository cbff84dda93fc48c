"""Opaque keyset cursors: the (created_at, id) of the last item seen, base64url-encoded.
Forged or damaged cursors are refused with 422; a well-formed one can only move a caller
within rows it may already see, because the visibility filter is applied as well."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from notes_api.core.errors import InvalidInput


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class _Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


K = TypeVar("K", bound=_Keyed)


def split_page(rows: Sequence[K], limit: int) -> tuple[list[K], str | None]:
    """`rows` were fetched with `limit + 1`: the page, and the cursor of its last row when
    more rows follow."""
    page = list(rows[:limit])
    if len(rows) > limit:
        return page, encode_cursor(page[-1].created_at, page[-1].id)
    return page, None


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(created, str) or not isinstance(row_id, str):
            raise TypeError("not a cursor")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive")
        # Converted here, so a date that cannot be shown in UTC is refused, not a 500 later.
        return when.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, OverflowError, UnicodeError, json.JSONDecodeError):
        raise InvalidInput(
            "Invalid cursor", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from None
