"""Login attempts, counted in the database so the count holds across every API process.

An attempt is reserved (counted) before its password is checked, in a transaction of its own
that commits first: however many arrive at once, at most `limit` per window are ever checked.
Two counters are kept per attempt: one for the email from this client address, with the
configured limit, and one for the email from anywhere, with a ten times higher ceiling, so a
stranger's guesses use up their own allowance, not the owner's. A correct password clears
both."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, delete, literal
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.models import LoginAttempt
from notes_api.core.models import UTCDateTime, utcnow
from notes_api.core.sql import upsert_insert

ACCOUNT_CEILING = 10  # the account-wide limit, in multiples of the per-client one

_table = LoginAttempt.__table__


@dataclass(frozen=True)
class Attempt:
    email: str
    client: str

    @property
    def keys(self) -> tuple[str, str]:
        email = self.email.strip().lower()[:254]
        return f"client:{self.client[:45]}:{email}", f"email:{email}"


async def reserve(session: AsyncSession, attempt: Attempt, *, limit: int, window: int) -> int:
    """Count this attempt; the seconds to wait when it is over a limit, else 0."""
    now = utcnow()
    stale = _table.c.window_started_at < now - timedelta(seconds=window)
    wait = 0.0
    for key, key_limit in zip(attempt.keys, (limit, limit * ACCOUNT_CEILING), strict=True):
        stmt = upsert_insert(session, _table).values(key=key, failures=1, window_started_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "failures": case((stale, 1), else_=_table.c.failures + 1),
                "window_started_at": case(
                    (stale, literal(now, UTCDateTime())), else_=_table.c.window_started_at
                ),
            },
        ).returning(_table.c.failures, _table.c.window_started_at)
        count, started = (await session.execute(stmt)).one()
        if count > key_limit:
            left = (started + timedelta(seconds=window) - now).total_seconds()
            wait = max(wait, left)
    return math.ceil(wait) if wait > 0 else 0


async def clear(session: AsyncSession, attempt: Attempt) -> None:
    # One row at a time, in the order `reserve` takes them: one DELETE of both locks them in
    # whatever order its scan meets them, and concurrent logins of one account deadlocked.
    for key in attempt.keys:
        await session.execute(delete(LoginAttempt).where(LoginAttempt.key == key))


async def purge(session: AsyncSession, window: int) -> None:
    """House-keeping: counters whose window has ended count nothing any more."""
    ended = utcnow() - timedelta(seconds=window)
    await session.execute(delete(LoginAttempt).where(LoginAttempt.window_started_at < ended))
