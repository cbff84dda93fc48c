"""Failed-login throttling kept in the database, so it holds across every API process.

After `max_failures` wrong passwords for one e-mail within the lockout window, further
attempts for it get 429 until the window ends, without spending a hash on them."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import case, delete, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.models import LoginAttempt
from notes_api.core.models import UTCDateTime, utcnow
from notes_api.core.sql import upsert_insert


def _key(email: str) -> str:
    return "email:" + email.strip().lower()[:290]


async def seconds_blocked(session: AsyncSession, email: str) -> int:
    row = await session.scalar(select(LoginAttempt).where(LoginAttempt.key == _key(email)))
    if row is None or row.blocked_until is None:
        return 0
    left = (row.blocked_until - utcnow()).total_seconds()
    return math.ceil(left) if left > 0 else 0


async def record_failure(
    session: AsyncSession, email: str, *, max_failures: int, window_seconds: int
) -> None:
    now = utcnow()
    window_start = now - timedelta(seconds=window_seconds)
    blocked_until = now + timedelta(seconds=window_seconds)
    table = LoginAttempt.__table__
    # The first failure is an insert: it must block at once when one failure is the limit.
    stmt = upsert_insert(session, table).values(
        key=_key(email),
        failures=1,
        window_started_at=now,
        blocked_until=blocked_until if max_failures <= 1 else None,
    )
    excluded = stmt.excluded
    stale = table.c.window_started_at < window_start
    failures = case((stale, 1), else_=table.c.failures + 1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "failures": failures,
            "window_started_at": case(
                (stale, excluded.window_started_at), else_=table.c.window_started_at
            ),
            "blocked_until": case(
                (failures >= max_failures, literal(blocked_until, UTCDateTime())),
                else_=None,
            ),
        },
    )
    await session.execute(stmt)


async def clear(session: AsyncSession, email: str) -> None:
    await session.execute(delete(LoginAttempt).where(LoginAttempt.key == _key(email)))
