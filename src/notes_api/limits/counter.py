"""Fixed-window write counters in the database, shared by every API process.

No maintained library keeps rate-limit counters in SQL: `limits` (behind slowapi and
Flask-Limiter) stores them in memory, Redis, Memcached, MongoDB or etcd only, and the
default deployment has none of those. So this is one statement: an UPSERT that adds to
every counter of a write and RETURNING the new counts, atomic on SQLite and Postgres alike,
in the write's own transaction: concurrent writes from any number of processes can never
pass a limit, and a write rolled back takes its counts with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name
from notes_api.limits.models import RateLimitCounter

counters = cast(Table, RateLimitCounter.__table__)

RETAIN = timedelta(days=2)
Window = tuple[str, datetime]  # (counter key, start of its current window)


def _upsert(insert: Any) -> Any:
    stmt = insert(counters)
    return stmt.on_conflict_do_update(
        index_elements=[counters.c.key, counters.c.window_start],
        set_={"count": counters.c.count + stmt.excluded.count},
    ).returning(counters.c.key, counters.c.count)


# Built once per dialect; given a row per counter, SQLAlchemy sends them as one multi-row
# INSERT (its "insertmanyvalues"): one statement, one round trip, compiled once.
_ADD = {"postgresql": _upsert(postgresql.insert), "sqlite": _upsert(sqlite.insert)}


async def add(session: AsyncSession, windows: list[Window]) -> dict[str, int]:
    """Count one write against each window, in the caller's unit of work; the counts
    including it, by key."""
    # One order for every request: two requests that share counters lock them in the same
    # order, so they queue and never deadlock.
    rows = [{"key": k, "window_start": start, "count": 1} for k, start in sorted(windows)]
    result = await session.execute(_ADD[dialect_name(session)], rows)
    return {str(key): int(count) for key, count in result.all()}


async def purge_old_windows(session: AsyncSession) -> None:
    """Counters of windows that ended long ago (the longest window is a day)."""
    await session.execute(delete(counters).where(counters.c.window_start < utcnow() - RETAIN))
