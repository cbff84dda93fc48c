"""Job state transitions. Every write after a claim is fenced by the lease token, so an
attempt that lost its lease (expired, cancelled, taken over) cannot change anything."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.jobs import signals
from notes_api.jobs.models import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus

MAX_ERROR_LENGTH = 1000
jobs = cast(Table, Job.__table__)
_INSERT_JOB = insert(jobs)


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    max_attempts: int,
    dedupe_key: str | None = None,
    fairness_key: str | None = None,
) -> uuid.UUID:
    """Add a job in the caller's transaction: it exists exactly when the caller's data does.
    Workers are woken once it commits: in this process by a signal, in others by the NOTIFY
    a trigger sends on Postgres (see the migration 20261130_0001). Jobs of different
    `fairness_key`s share the workers (see `share_out`); jobs without one share the key ""."""
    now = utcnow()
    job_id = uuid.uuid4()
    row = {
        "id": job_id,
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "fairness_key": fairness_key or "",
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_after": now,
        "created_at": now,
        "updated_at": now,
    }
    await session.execute(_INSERT_JOB, row)
    signals.mark_queued(session)
    return job_id


def announce_finished(session: AsyncSession, job: Job) -> None:
    """Tell this process's waiters, once the session commits, that the job ended (other
    processes hear it from the trigger's NOTIFY)."""
    signals.mark_finished(session, job.kind, job.dedupe_key)


async def cancel_active(session: AsyncSession, kind: str, dedupe_key: str) -> int:
    """Cancel the live job for a subject; clearing the token fences a running attempt."""
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(Job.kind == kind, Job.dedupe_key == dedupe_key, Job.status.in_(ACTIVE_STATUSES))
        .values(
            status=JobStatus.CANCELLED,
            lease_token=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    return int(getattr(result, "rowcount", 0))


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
    A job another worker holds is skipped, and the next one of that key taken instead."""
    picks = [
        select(Job.id)
        .where(
            Job.status == JobStatus.QUEUED,
            Job.fairness_key == key,
            Job.run_after <= now,
            Job.kind.in_(kinds),
        )
        .order_by(Job.run_after)
        .limit(count)
        .with_for_update(skip_locked=True)
        .subquery()
        for key, count in shares.items()
    ]
    # Each key's pick locks in a subquery of its own (a UNION cannot lock as a whole).
    chosen = union_all(*(select(pick.c.id) for pick in picks))
    return (
        update(Job)
        .where(Job.id.in_(chosen.scalar_subquery()))
        .values(
            status=JobStatus.PROCESSING,
            attempts=Job.attempts + 1,
            lease_token=uuid.uuid4(),
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            worker_id=worker_id,
            updated_at=now,
        )
        .returning(Job)
        .execution_options(synchronize_session=False)
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
) -> list[Job]:
    """Take up to `limit` due jobs, shared between fairness keys given how many jobs of each
    key the worker is `running` (each worker shares its own slots: no count of every
    running job is read), from its `due_keys` while they are fresh. SKIP LOCKED lets any
    number of workers share the queue on Postgres; on SQLite the caller's BEGIN IMMEDIATE
    makes this the only writer."""
    now = utcnow()
    due_keys = due_keys or DueKeys()
    if not due_keys.fresh():
        stmt = shares_statement(kinds, now=now, room=max(limit, _READ_AHEAD))
        due_keys.read([(key, oldest, due) for key, oldest, due in await session.execute(stmt)])
    shares = share_out(due_keys.rows, running or {}, limit)
    if not shares:
        return []
    stmt = claim_statement(kinds, shares, worker_id=worker_id, lease_seconds=lease_seconds, now=now)
    jobs = list((await session.scalars(stmt)).all())
    due_keys.took(shares, Counter(job.fairness_key for job in jobs))
    return jobs


# A write to a claimed job, fenced by its lease: it changes nothing once the lease is lost.
# The SET clause is the statement's other parameters (built once; compiled once per set).
_FENCED_UPDATE = update(jobs).where(
    jobs.c.id == bindparam("job_id"),
    jobs.c.lease_token == bindparam("fence_token"),
    jobs.c.status == JobStatus.PROCESSING,
)


async def _update_fenced(session: AsyncSession, job: Job, values: dict[str, Any]) -> bool:
    conn = await session.connection()
    params = {**values, "job_id": job.id, "fence_token": job.lease_token}
    result = await conn.execute(_FENCED_UPDATE, params)
    return result.rowcount == 1


async def renew(session: AsyncSession, job: Job, lease_seconds: float) -> bool:
    expires = utcnow() + timedelta(seconds=lease_seconds)
    return await _update_fenced(session, job, {"lease_expires_at": expires})


async def complete(session: AsyncSession, job: Job) -> bool:
    now = utcnow()
    return await _transition(session, job, status=JobStatus.DONE, finished_at=now, last_error=None)


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random, so retries spread."""
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security


async def fail(
    session: AsyncSession,
    job: Job,
    error: str,
    *,
    transient: bool,
    base: float,
    cap: float,
    retry_after: float | None = None,
    delay: float | None = None,
    max_attempts: int | None = None,
) -> JobStatus | None:
    """Record a failed attempt: back to the queue with a delay (`delay`, or backoff from
    `base` up to `cap`; never sooner than `retry_after` seconds, when the failure said when
    to come back), or failed for good once `max_attempts` (default: the job's) are spent.
    Returns the new status, or None when the attempt no longer held the lease."""
    error = error[:MAX_ERROR_LENGTH]
    now = utcnow()
    if transient and job.attempts < (max_attempts or job.max_attempts):
        if delay is None:
            delay = backoff_delay(job.attempts, base, cap)
        delay = max(delay, retry_after or 0.0)
        run_after = now + timedelta(seconds=delay)
        ok = await _transition(
            session, job, status=JobStatus.QUEUED, run_after=run_after, last_error=error
        )
        return JobStatus.QUEUED if ok else None
    ok = await _transition(session, job, status=JobStatus.FAILED, finished_at=now, last_error=error)
    return JobStatus.FAILED if ok else None


async def release(session: AsyncSession, job: Job) -> bool:
    """Give an interrupted attempt back (graceful shutdown); it does not count as a try."""
    released = await _transition(
        session, job, status=JobStatus.QUEUED, run_after=utcnow(), attempts=job.attempts - 1
    )
    if released:
        job.attempts -= 1
    return released


async def _transition(session: AsyncSession, job: Job, **values: Any) -> bool:
    values.update(lease_token=None, lease_expires_at=None, updated_at=utcnow())
    return await _update_fenced(session, job, values)


async def expired(session: AsyncSession, *, limit: int = 100) -> list[Job]:
    """Jobs whose worker stopped renewing its lease (crashed, frozen, or cut off)."""
    stmt = (
        select(Job)
        .where(Job.status == JobStatus.PROCESSING, Job.lease_expires_at < utcnow())
        .order_by(Job.lease_expires_at)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def purge_finished(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(Job).where(
            Job.status.in_(FINISHED_STATUSES),
            Job.finished_at < older_than,
        )
    )
    return int(getattr(result, "rowcount", 0))


async def active_depth(session: AsyncSession) -> dict[str, int]:
    """Jobs waiting and running: two counts over the partial indexes that hold exactly those
    jobs (finished jobs are counted as they finish, in the outcome metrics)."""
    counts = {}
    for status in ACTIVE_STATUSES:
        stmt = select(func.count()).select_from(Job).where(Job.status == status)
        counts[status.value] = int(await session.scalar(stmt) or 0)
    return counts
