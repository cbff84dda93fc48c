"""Login attempts, counted in the database so the count holds across every API process.

Only checked guesses count. An attempt is admitted (counted) before its password is checked,
in a transaction of its own that commits first, so however many arrive at once at most
`limit` per window are ever checked; an attempt refused with 429 counts nothing, so refusals
cannot keep a lockout going or spend anyone's allowance.

The counters an attempt is held to (OWASP's device-cookie scheme, see auth/devices.py):
- without a device cookie: the email from this client address, with the configured limit,
  and the email from anywhere, with a ten times higher ceiling;
- with a valid device cookie for the email: that device alone, with the configured limit.
  So strangers' guesses from many addresses, which can reach the account-wide ceiling, never
  lock out a client that has logged in to the account before.
A correct password clears the counter of its own client (or device), never the account-wide
one: the owner logging in must not give a stranger a fresh allowance.

Sign-ups are counted here too, per client address and hour (SIGNUP_PER_CLIENT_PER_HOUR), so
one address cannot make the accounts that would let it exhaust per-user limits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, case, delete, literal, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.models import LoginAttempt
from notes_api.core.db import Database
from notes_api.core.errors import TooManyRequests
from notes_api.core.models import UTCDateTime, utcnow
from notes_api.core.sql import upsert_insert

ACCOUNT_CEILING = 10  # the account-wide limit, in multiples of the per-client one
# Sign-ups per client address are counted in the same table, per hour.
SIGNUP_PREFIX = "signup:"
SIGNUP_WINDOW = 3600

_table = LoginAttempt.__table__


@dataclass(frozen=True)
class Attempt:
    email: str
    client: str
    device: str | None = None  # a device cookie's id, verified for this email

    @property
    def keys(self) -> tuple[str, ...]:
        """The counters this attempt is held to, in the order they are always locked."""
        email = self.email.strip().lower()[:254]
        if self.device is not None:
            return (f"device:{self.device[:64]}",)
        return f"client:{self.client[:45]}:{email}", f"email:{email}"

    def limits(self, limit: int) -> tuple[int, ...]:
        return (limit,) if self.device is not None else (limit, limit * ACCOUNT_CEILING)


async def reserve(session: AsyncSession, attempt: Attempt, *, limit: int, window: int) -> int:
    """Count this attempt, unless a counter is at its limit: then count nothing and return
    the seconds until that counter's window ends (0 when the attempt was counted)."""
    return await _admit(session, attempt.keys, attempt.limits(limit), window)


async def admit_signup(db: Database, client: str, limit: int) -> None:
    """Count a sign-up from this client address against `limit` per hour (0: no limit), as
    `reserve` counts a login attempt, in a transaction of its own committed before the
    sign-up's work, so a burst from one address cannot pass it; 429 at the limit."""
    if not limit:
        return
    key = f"{SIGNUP_PREFIX}{client[:45]}"
    async with db.session() as session:
        wait = await _admit(session, (key,), (limit,), SIGNUP_WINDOW)
    if wait:
        raise TooManyRequests("Too many sign-ups from this address; try later", retry_after=wait)


async def _admit(
    session: AsyncSession, keys: tuple[str, ...], limits: tuple[int, ...], window: int
) -> int:
    now = utcnow()
    stale = _table.c.window_started_at < now - timedelta(seconds=window)
    wait = 0.0
    for key, key_limit in zip(keys, limits, strict=True):
        # Lock the counter (creating it, or starting a new window when its own has ended)
        # and read it; the lock is held to the end of this transaction.
        stmt = upsert_insert(session, _table).values(key=key, failures=0, window_started_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_table.c.key],
            set_={
                "failures": case((stale, 0), else_=_table.c.failures),
                "window_started_at": case(
                    (stale, literal(now, UTCDateTime())), else_=_table.c.window_started_at
                ),
            },
        ).returning(_table.c.failures, _table.c.window_started_at)
        count, started = (await session.execute(stmt)).one()
        if count >= key_limit:
            left = (started + timedelta(seconds=window) - now).total_seconds()
            wait = max(wait, left, 1)
    if wait:
        return math.ceil(wait)
    await session.execute(
        update(LoginAttempt)
        .where(LoginAttempt.key.in_(keys))
        .values(failures=LoginAttempt.failures + 1)
    )
    return 0


async def clear(session: AsyncSession, attempt: Attempt) -> None:
    """After a correct password: this client's (or device's) counter starts again, and the
    account-wide one takes back this attempt alone (a right password is no failed guess),
    keeping the strangers' failures to its window. One row at a time, in the order
    `reserve` takes them: concurrent logins of one account deadlocked otherwise."""
    own, *account = attempt.keys
    await session.execute(delete(LoginAttempt).where(LoginAttempt.key == own))
    for key in account:
        await session.execute(
            update(LoginAttempt)
            .where(LoginAttempt.key == key, LoginAttempt.failures > 0)
            .values(failures=LoginAttempt.failures - 1)
        )


async def purge(session: AsyncSession, window: int) -> None:
    """House-keeping: counters whose window has ended count nothing any more (a login
    window is `window` seconds, a sign-up window an hour)."""
    now = utcnow()
    signup = LoginAttempt.key.startswith(SIGNUP_PREFIX, autoescape=True)
    ended = or_(
        and_(~signup, LoginAttempt.window_started_at < now - timedelta(seconds=window)),
        and_(signup, LoginAttempt.window_started_at < now - timedelta(seconds=SIGNUP_WINDOW)),
    )
    await session.execute(delete(LoginAttempt).where(ended))
