"""The write limit as a route dependency: `dependencies=[WriteLimit]`."""

from __future__ import annotations

from fastapi import Depends, Response

from notes_api.auth.deps import TokenClaims
from notes_api.core.deps import DatabaseDep, SettingsDep
from notes_api.core.errors import TooManyRequests
from notes_api.core.models import utcnow
from notes_api.limits import counter
from notes_api.limits.policy import Standing, headers, write_policies

_DETAIL = {
    "user": "Too many writes from this user; try again later",
    "org": "Too many writes from this organization; try again later",
    "model": "This organization has used its model calls for today (UTC)",
}


async def limit_writes(
    claims: TokenClaims, db: DatabaseDep, settings: SettingsDep, response: Response
) -> None:
    """Count the request against its limits before the route runs: within them, the
    headers tell what is left; over one, 429 with `Retry-After` and nothing is counted.
    The counts commit in a unit of work of their own, before the route's begins (a route
    dependency runs first), so a request never holds two connections and no counter row
    stays locked for a whole request."""
    policies = write_policies(settings, claims.user_id, claims.organization_id)
    if not policies:
        return
    now = utcnow()
    windows = [(p.key, p.window_start(now)) for p in policies]
    counts = await counter.hit(db, windows)
    standings = [Standing(p, counts[p.key], p.reset(now)) for p in policies]
    over = [s for s in standings if s.exceeded]
    if over:
        await counter.refund(db, windows)
        worst = max(over, key=lambda s: s.reset)
        error = TooManyRequests(_DETAIL[worst.policy.name], retry_after=worst.reset)
        error.headers.update(headers(standings))
        raise error
    response.headers.update(headers(standings))


WriteLimit = Depends(limit_writes)
