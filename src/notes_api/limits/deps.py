"""The write limits of a request: `write_quota(work, response)` gives a write route the quota
its confirmed caller writes against, and the service spends it once the write is done. A
call, not a dependency: FastAPI would resolve it, and the caller it needs, at each request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.errors import TooManyRequests
from notes_api.core.models import utcnow
from notes_api.limits import counter
from notes_api.limits.policy import MODEL, Policy, Standing, headers, write_policies
from notes_api.users.deps import Work

_DETAIL = {
    "user": "Too many writes from this user; try again later",
    "org": "Too many writes from this organization; try again later",
    MODEL: "This organization has used its summaries for today (UTC)",
}


class Quota:
    """What one write request may spend. `spend` is called by the service, in the request's
    unit of work, after the write is done: a request that fails (404, 409, 422) never gets
    there and spends nothing, and one over a limit raises 429, which rolls back its write
    and its counts together. The counters' rows are locked last, so writes that share them
    take turns only for the moment before their commit. On Postgres a create counts in its
    own statement instead (`in_statement`), which a count past its quota fails whole."""

    def __init__(self, policies: list[Policy], response: Response) -> None:
        self.policies = policies
        self.response = response

    def _counted(self, summary: bool) -> list[Policy]:
        return [p for p in self.policies if summary or p.name != MODEL]

    async def spend(self, session: AsyncSession, *, summary: bool) -> None:
        """Count the write; with `summary`, also the summary it queued (the model quota)."""
        policies = self._counted(summary)
        if not policies:
            return
        now = utcnow()
        counts = await counter.add(session, _windows(policies, now))
        self.settle(counts, summary=summary, now=now)

    def in_statement(self, *, summary: bool, now: datetime) -> tuple[int, dict[str, Any]]:
        """Postgres: `spend` as a part of the write's own statement (`counter.counted`): how
        many counters it adds to (0: none, every limit it keeps is off) and its parameters.
        Give its counts, or its refusal's, to `settle`."""
        policies = self._counted(summary)
        return len(policies), counter.add_params(
            _windows(policies, now), [p.quota for p in policies]
        )

    def settle(self, counts: dict[str, int], *, summary: bool, now: datetime) -> None:
        """The write's counts (this write included): 429 past a limit, else the headers."""
        policies = self._counted(summary)
        standings = [Standing(p, counts[p.key], p.reset(now)) for p in policies]
        over = [s for s in standings if s.exceeded]
        if over:
            worst = max(over, key=lambda s: s.reset)
            error = TooManyRequests(_DETAIL[worst.policy.name], retry_after=worst.reset)
            error.headers.update(headers(standings))
            raise error
        self.response.headers.update(headers(standings))


def _windows(policies: list[Policy], now: datetime) -> list[counter.Window]:
    """The counter and current window of each policy."""
    return [(p.key, p.window_start(now)) for p in policies]


def write_quota(work: Work, response: Response) -> Quota:
    caller = work.caller
    return Quota(write_policies(work.settings, caller.id, caller.organization_id), response)
