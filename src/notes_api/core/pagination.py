"""Keyset pagination, one way for every list: rows in (created_at, id) order, a page of
`limit` read as `limit + 1` rows (`keyset_page`, then `split_page`), and opaque cursors: the
(created_at, id) of the last item seen, base64url-encoded. Forged or damaged cursors are
refused with 422; a well-formed one can only move a caller within rows it may already see,
because the visibility filter is applied as well."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, or_
from sqlalchemy.orm import QueryableAttribute

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
# A key column: a table's column, or a mapped class's attribute.
_T = TypeVar("_T")
Key = ColumnElement[_T] | QueryableAttribute[_T]


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


def seek(
    created_at: Key[datetime],
    row_id: Key[uuid.UUID],
    after: tuple[Any, Any],
    *,
    newest_first: bool,
) -> ColumnElement[bool]:
    """The rows past the position `after` (the (created_at, id) values of the last row seen,
    or bind parameters for them) in the list's order: an index range scan in key order."""
    at, last = after
    if newest_first:
        return or_(created_at < at, (created_at == at) & (row_id < last))
    return or_(created_at > at, (created_at == at) & (row_id > last))


def keyset_page(
    stmt: Select[Any],
    created_at: Key[datetime],
    row_id: Key[uuid.UUID],
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool,
) -> Select[Any]:
    """`stmt`'s rows after `cursor` (422 for a bad one), in (created_at, id) order, up to
    `limit + 1` of them: give what it reads to `split_page`."""
    if cursor:
        after = decode_cursor(cursor)
        stmt = stmt.where(seek(created_at, row_id, after, newest_first=newest_first))
    order = (created_at.desc(), row_id.desc()) if newest_first else (created_at, row_id)
    return stmt.order_by(*order).limit(limit + 1)
