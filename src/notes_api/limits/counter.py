"""Fixed-window request counters in the database, shared by every API process.

No maintained library keeps rate-limit counters in SQL: `limits` (behind slowapi and
Flask-Limiter) stores them in memory, Redis, Memcached, MongoDB or etcd only, and the
default deployment has none of those. So this is one statement: an UPSERT that adds to
every counter of a request and RETURNING the new counts, atomic on SQLite and Postgres
alike, so concurrent requests from any number of processes can never pass a limit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.core.sql import upsert_insert
from notes_api.limits.models import RateLimitCounter

counters = cast(Table, RateLimitCounter.__table__)

RETAIN = timedelta(days=2)
Window = tuple[str, datetime]  # (counter key, start of its current window)


def _add_statement(session: AsyncSession, windows: list[Window], delta: int) -> Any:
    # One order for every request: two requests that share counters lock them in the same
    # order, so they queue and never deadlock.
    rows = [{"key": k, "window_start": start, "count": delta} for k, start in sorted(windows)]
    stmt = upsert_insert(session, counters).values(rows)
    return stmt.on_conflict_do_update(
        index_elements=[counters.c.key, counters.c.window_start],
        set_={"count": counters.c.count + stmt.excluded.count},
    ).returning(counters.c.key, counters.c.count)


async def _add(db: Database, windows: list[Window], delta: int) -> dict[str, int]:
    async with db.session() as session:
        rows = (await session.execute(_add_statement(session, windows, delta))).all()
    return {str(key): int(count) for key, count in rows}


async def hit(db: Database, windows: list[Window]) -> dict[str, int]:
    """Count one request against each window; the counts including it, by key."""
    return await _add(db, windows, 1)


async def refund(db: Database, windows: list[Window]) -> None:
    """Take back a refused request's counts, so refusals do not use up a quota: a user over
    its own limit must not spend its organization's. Until the refund lands the counts are
    one too high, which can only refuse, never admit, a concurrent request."""
    await _add(db, windows, -1)


async def purge_old_windows(session: AsyncSession) -> None:
    """Counters of windows that ended long ago (the longest window is a day)."""
    await session.execute(delete(counters).where(counters.c.window_start < utcnow() - RETAIN))
