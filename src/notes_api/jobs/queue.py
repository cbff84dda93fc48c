"""Job state transitions. Every write after a claim is fenced by the lease token, so an
attempt that lost its lease (expired, cancelled, taken over) cannot change anything."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
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
) -> uuid.UUID:
    """Add a job in the caller's transaction: it exists exactly when the caller's data does.
    Workers are woken once it commits: in this process by a signal, in others by the NOTIFY
    a trigger sends on Postgres (see the migration 20261130_0001)."""
    now = utcnow()
    job_id = uuid.uuid4()
    row = {
        "id": job_id,
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
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


def claim_statement(
    kinds: list[str], *, worker_id: str, lease_seconds: float, limit: int, now: datetime
) -> Any:
    """Due jobs, oldest first, locked and leased in one statement (the partial index
    `ix_jobs_queued_run_after` holds exactly the queued jobs, in `run_after` order)."""
    due = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED, Job.run_after <= now, Job.kind.in_(kinds))
        .order_by(Job.run_after)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
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


async def claim(
    session: AsyncSession, kinds: list[str], *, worker_id: str, lease_seconds: float, limit: int
) -> list[Job]:
    """Take up to `limit` due jobs. SKIP LOCKED lets any number of workers share the queue on
    Postgres; on SQLite the caller's BEGIN IMMEDIATE makes this the only writer."""
    stmt = claim_statement(
        kinds, worker_id=worker_id, lease_seconds=lease_seconds, limit=limit, now=utcnow()
    )
    return list((await session.scalars(stmt)).all())


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
    session: AsyncSession, job: Job, error: str, *, transient: bool, base: float, cap: float
) -> JobStatus | None:
    """Record a failed attempt: back to the queue with a delay, or failed for good.
    Returns the new status, or None when the attempt no longer held the lease."""
    error = error[:MAX_ERROR_LENGTH]
    now = utcnow()
    if transient and job.attempts < job.max_attempts:
        run_after = now + timedelta(seconds=backoff_delay(job.attempts, base, cap))
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
