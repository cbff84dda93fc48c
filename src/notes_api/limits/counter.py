"""Fixed-window write counters in the database, shared by every API process.

No maintained library keeps rate-limit counters in SQL: `limits` (behind slowapi and
Flask-Limiter) stores them in memory, Redis, Memcached, MongoDB or etcd only, and the
default deployment has none of those. So this is one statement: an UPSERT that adds to
every counter of a write and RETURNING the new counts, atomic on SQLite and Postgres alike,
in the write's own transaction: concurrent writes from any number of processes can never
pass a limit, and a write rolled back takes its counts with it."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite
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


async def add(session: AsyncSession, windows: list[Window]) -> dict[str, int]:
    """Count one write against each window, in the caller's unit of work; the counts
    including it, by key."""
    # One order for every request: two requests that share counters lock them in the same
    # order, so they queue and never deadlock.
    params: dict[str, Any] = {}
    for i, (key, start) in enumerate(sorted(windows)):
        params[f"key_{i}"], params[f"window_start_{i}"] = key, start
    stmt = _add_statement(dialect_name(session), len(windows))
    return {str(key): int(count) for key, count in await stmt.rows(session, params)}


async def purge_old_windows(session: AsyncSession) -> None:
    """Counters of windows that ended long ago (the longest window is a day)."""
    await session.execute(delete(counters).where(counters.c.window_start < utcnow() - RETAIN))
