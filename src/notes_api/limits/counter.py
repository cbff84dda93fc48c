"""Fixed-window write counters in the database, shared by every API process.

No maintained library keeps rate-limit counters in SQL: `limits` (behind slowapi and
Flask-Limiter) stores them in memory, Redis, Memcached, MongoDB or etcd only, and the
default deployment has none of those. So this is one statement: an UPSERT that adds to
every counter of a write and RETURNING the new counts, atomic on SQLite and Postgres alike,
in the write's own transaction: concurrent writes from any number of processes can never
pass a limit, and a write rolled back takes its counts with it. On Postgres a create's
counts are a part of its own statement (`counted`), which a count past its quota fails."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Integer,
    ScalarSelect,
    Table,
    bindparam,
    case,
    delete,
    func,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name
from notes_api.core.statements import Once
from notes_api.limits.models import RateLimitCounter

counters = cast(Table, RateLimitCounter.__table__)

RETAIN = timedelta(days=2)
Window = tuple[str, datetime]  # (counter key, start of its current window)


_INSERT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@functools.cache
def _add_statement(dialect: str, windows: int) -> Once[Any]:
    """The UPSERT of `windows` counters, one VALUES row each (parameters `key_<i>` and
    `window_start_<i>`): built once per database and number of windows."""
    rows = [
        {
            "key": bindparam(f"key_{i}", type_=counters.c.key.type),
            "window_start": bindparam(f"window_start_{i}", type_=counters.c.window_start.type),
            "count": 1,
        }
        for i in range(windows)
    ]
    stmt = _INSERT[dialect](counters).values(rows)
    upsert = stmt.on_conflict_do_update(
        index_elements=[counters.c.key, counters.c.window_start],
        set_={"count": counters.c.count + stmt.excluded.count},
    )
    return Once(upsert.returning(counters.c.key, counters.c.count))


def add_params(windows: list[Window], quotas: list[int] | None = None) -> dict[str, Any]:
    """The parameters of `add`'s statement (and, with each window's quota, of `counted`)."""
    params: dict[str, Any] = {}
    # One order for every request: two requests that share counters lock them in the same
    # order, so they queue and never deadlock.
    order = sorted(range(len(windows)), key=lambda i: windows[i])
    for i, at in enumerate(order):
        params[f"key_{i}"], params[f"window_start_{i}"] = windows[at]
        if quotas is not None:
            params[f"quota_{i}"] = quotas[at]
    return params


async def add(session: AsyncSession, windows: list[Window]) -> dict[str, int]:
    """Count one write against each window, in the caller's unit of work; the counts
    including it, by key."""
    stmt = _add_statement(dialect_name(session), len(windows))
    rows = await stmt.rows(session, add_params(windows))
    return {str(key): int(count) for key, count in rows}


# The SQLSTATE of a statement that `counted` refused (migration 20261207_0021).
REFUSED = "NL429"


@functools.cache
def counted(windows: int) -> ScalarSelect[Any]:
    """Postgres: `add` as a part of a write's own statement, a column of its SELECT: the
    counts including the write, a JSON object by key. A count past its quota (`quota_<i>`)
    fails the whole statement, the write and every count with it, with SQLSTATE `REFUSED`
    and the counts as its detail (`refusal`). Parameters: `add_params` with the quotas."""
    upsert = _add_statement("postgresql", windows).statement.cte("counted")
    quota = case(
        *[(upsert.c.key == bindparam(f"key_{i}"), bindparam(f"quota_{i}")) for i in range(windows)]
    )
    ints = ARRAY(Integer())
    check = func.notes_api_within_limits(
        func.array_agg(upsert.c.key),
        sql_cast(func.array_agg(upsert.c.count), ints),
        sql_cast(func.array_agg(quota), ints),
        type_=JSON(),
    )
    return select(check).select_from(upsert).scalar_subquery()


def refusal(error: DBAPIError) -> dict[str, int] | None:
    """The counts of a statement that `counted` refused (this write included); None for any
    other error."""
    orig = error.orig
    if getattr(orig, "sqlstate", None) != REFUSED:
        return None
    detail = json.loads(orig.diag.message_detail or "{}")  # type: ignore[union-attr]
    return {str(key): int(count) for key, count in detail.items()}


async def purge_old_windows(session: AsyncSession) -> None:
    """Counters of windows that ended long ago (the longest window is a day)."""
    await session.execute(delete(counters).where(counters.c.window_start < utcnow() - RETAIN))
