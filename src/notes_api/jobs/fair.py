"""The fair claim: a worker's free slots shared out between fairness keys (organizations),
and the jobs of each key's share leased in one statement."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.jobs.models import Claimed, JobStatus, jobs


def shares_statement(kinds: list[str], *, now: datetime, room: int) -> Select[Any]:
    """Each fairness key with queued jobs: when its oldest due job of `kinds` was due (None
    when it has none due yet), and how many due jobs it has, counted up to `room`. The keys
    are read from `ix_jobs_queued_key_run_after` one probe per key (a loose index scan),
    never by reading every queued job, so a backlog of thousands costs what one job does."""
    queued = jobs.c.status == JobStatus.QUEUED
    first = select(func.min(jobs.c.fairness_key).label("key")).where(queued)
    keys = first.cte("fair_keys", recursive=True)
    previous = keys.alias("previous")
    following = (
        select(func.min(jobs.c.fairness_key))
        .where(queued, jobs.c.fairness_key > previous.c.key)
        .scalar_subquery()
    )
    keys = keys.union_all(select(following).where(previous.c.key.is_not(None)))
    due = (
        select(jobs.c.run_after)
        .where(
            queued,
            jobs.c.fairness_key == keys.c.key,
            jobs.c.run_after <= now,
            jobs.c.kind.in_(kinds),
        )
        .order_by(jobs.c.run_after)
        .limit(room)
        .correlate(keys)
        .subquery()
    )
    oldest = select(func.min(due.c.run_after)).scalar_subquery()
    available = select(func.count()).select_from(due).scalar_subquery()
    return select(keys.c.key, oldest.label("oldest"), available.label("due")).where(
        keys.c.key.is_not(None)
    )


def share_out(
    keys: list[tuple[str, datetime | None, int]], running: Mapping[str, int], room: int
) -> dict[str, int]:
    """Round-robin: each of `room` slots goes to the key with the fewest jobs `running` (in
    the claiming worker) or already given a slot, the one waiting longest first on a tie,
    among the keys with due jobs left. A key with a backlog thus takes the slots no other
    key wants, and a key with one new job gets the next free slot, whatever the size and
    age of the backlog."""
    since = {key: oldest for key, oldest, due in keys if oldest is not None and due > 0}
    left = {key: due for key, _, due in keys if key in since}
    load = {key: running.get(key, 0) for key in since}
    shares: dict[str, int] = {}
    for _ in range(room):
        if not load:
            break
        key = min(load, key=lambda k: (load[k], since[k]))
        load[key] += 1
        shares[key] = shares.get(key, 0) + 1
        if shares[key] == left[key]:
            del load[key]
    return shares


def claim_statement(
    kinds: list[str],
    shares: dict[str, int],
    *,
    worker_id: str,
    lease_seconds: float,
    now: datetime,
) -> Any:
    """Each key's share of due jobs, oldest first, locked and leased in one statement (the
    partial index `ix_jobs_queued_key_run_after` holds the queued jobs by key and age).
    A job another worker holds is skipped, and the next one of that key taken instead.
    The jobs leased together share one new lease token."""
    picks = [
        select(jobs.c.id)
        .where(
            jobs.c.status == JobStatus.QUEUED,
            jobs.c.fairness_key == key,
            jobs.c.run_after <= now,
            jobs.c.kind.in_(kinds),
        )
        .order_by(jobs.c.run_after)
        .limit(count)
        .with_for_update(skip_locked=True)
        .subquery()
        for key, count in shares.items()
    ]
    # Each key's pick locks in a subquery of its own (a UNION cannot lock as a whole).
    chosen = union_all(*(select(pick.c.id) for pick in picks))
    return (
        update(jobs)
        .where(jobs.c.id.in_(chosen.scalar_subquery()))
        .values(
            status=JobStatus.PROCESSING,
            attempts=jobs.c.attempts + 1,
            lease_token=uuid.uuid4(),
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            worker_id=worker_id,
            updated_at=now,
        )
        .returning(*Claimed.columns())
    )


@dataclass
class DueKeys:
    """A worker's last reading of `shares_statement`, reused for `ttl` seconds so that most
    claims are one statement; a key that appears meanwhile waits at most `ttl` for its
    first slot. Read again at once when it is empty or a claim found it out of date."""

    ttl: float = 0.25
    rows: list[tuple[str, datetime | None, int]] = field(default_factory=list)
    read_at: float = float("-inf")

    def fresh(self) -> bool:
        return bool(self.rows) and time.monotonic() - self.read_at < self.ttl

    def read(self, rows: list[tuple[str, datetime | None, int]]) -> None:
        self.rows, self.read_at = rows, time.monotonic()

    def took(self, shares: dict[str, int], claimed: Counter[str]) -> None:
        if any(claimed[key] < count for key, count in shares.items()):
            self.read_at = float("-inf")  # a key ran out, or others hold its jobs
            return
        left = [(key, oldest, due - claimed[key]) for key, oldest, due in self.rows]
        self.rows = [row for row in left if row[2] > 0]


_READ_AHEAD = 16  # due jobs counted per key at a reading, at least


async def claim(
    session: AsyncSession,
    kinds: list[str],
    *,
    worker_id: str,
    lease_seconds: float,
    limit: int,
    running: Mapping[str, int] | None = None,
    due_keys: DueKeys | None = None,
) -> list[Claimed]:
    """Take up to `limit` due jobs, shared between fairness keys given how many jobs of each
    key the worker is `running` (each worker shares its own slots: no count of every
    running job is read), from its `due_keys` while they are fresh. SKIP LOCKED lets any
    number of workers share the queue on Postgres; on SQLite the caller's BEGIN IMMEDIATE
    makes this the only writer."""
    now = utcnow()
    due_keys = due_keys or DueKeys()
    conn = await session.connection()
    if not due_keys.fresh():
        stmt = shares_statement(kinds, now=now, room=max(limit, _READ_AHEAD))
        due_keys.read([(key, oldest, due) for key, oldest, due in await conn.execute(stmt)])
    shares = share_out(due_keys.rows, running or {}, limit)
    if not shares:
        return []
    stmt = claim_statement(kinds, shares, worker_id=worker_id, lease_seconds=lease_seconds, now=now)
    claimed = [Claimed(*row) for row in await conn.execute(stmt)]
    due_keys.took(shares, Counter(job.fairness_key for job in claimed))
    return claimed
