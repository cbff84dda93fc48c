"""Job state transitions. Every write after a claim is fenced by the lease token, so an
attempt that lost its lease (expired, cancelled, taken over) cannot change anything."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CTE,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import dialect_name
from notes_api.jobs import signals
from notes_api.jobs.models import Job, JobStatus

ACTIVE = (JobStatus.QUEUED, JobStatus.PROCESSING)
MAX_ERROR_LENGTH = 1000
jobs = cast(Table, Job.__table__)
_INSERT_JOB = insert(jobs)
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def new_job(
    kind: str,
    payload: dict[str, Any],
    *,
    max_attempts: int,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The row of a job queued to run at once."""
    now = now or utcnow()
    return {
        "id": uuid.uuid4(),
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


_NEW_JOB_COLUMNS = tuple(new_job("any", {}, max_attempts=1))  # what `new_job` fills in


def enqueue_after(step: CTE) -> Select[Any]:
    """Postgres: the job of `new_job(...)` (as parameters `job_<column>`) inserted once for
    each row `step` returns, and its NOTIFY sent, in the statement `step` belongs to. The
    statement returns a row for each job queued."""
    job = (
        insert(jobs)
        .from_select(
            list(_NEW_JOB_COLUMNS),
            select(
                *(bindparam(f"job_{name}", type_=jobs.c[name].type) for name in _NEW_JOB_COLUMNS)
            ).select_from(step),
        )
        .returning(jobs.c.id)
        .cte("job")
    )
    channel = literal(signals.QUEUED_CHANNEL)
    return select(job.c.id, func.pg_notify(channel, bindparam("job_kind"))).select_from(job)


def job_params(job: dict[str, Any]) -> dict[str, Any]:
    """A row of `new_job(...)` as the parameters of an `enqueue_after` statement."""
    return {f"job_{name}": value for name, value in job.items()}


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    max_attempts: int,
    dedupe_key: str | None = None,
) -> uuid.UUID:
    """Add a job in the caller's transaction: it exists exactly when the caller's data does."""
    job = new_job(kind, payload, max_attempts=max_attempts, dedupe_key=dedupe_key)
    await enqueue_job(session, job)
    return cast(uuid.UUID, job["id"])


async def enqueue_job(session: AsyncSession, job: dict[str, Any]) -> None:
    """Insert a row of `new_job(...)` in the caller's transaction (a plain Core insert: no
    ORM object to build and flush), and wake the workers once it commits."""
    conn = await session.connection()
    await conn.execute(_INSERT_JOB, job)
    signals.mark_queued(session)
    if dialect_name(session) == "postgresql":
        # Delivered on commit, and only then; dropped on rollback.
        await conn.execute(_NOTIFY, {"channel": signals.QUEUED_CHANNEL, "payload": job["kind"]})


async def announce_finished(session: AsyncSession, job: Job) -> None:
    """Tell waiters (in this process after commit, in others through NOTIFY) the job ended."""
    signals.mark_finished(session, job.kind, job.dedupe_key)
    if dialect_name(session) == "postgresql":
        payload = f"{job.kind}:{job.dedupe_key or ''}"
        conn = await session.connection()
        await conn.execute(_NOTIFY, {"channel": signals.FINISHED_CHANNEL, "payload": payload})


async def cancel_active(session: AsyncSession, kind: str, dedupe_key: str) -> int:
    """Cancel the live job for a subject; clearing the token fences a running attempt."""
    now = utcnow()
    result = await session.execute(
        update(Job)
        .where(Job.kind == kind, Job.dedupe_key == dedupe_key, Job.status.in_(ACTIVE))
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
    session: AsyncSession,
    job: Job,
    error: str,
    *,
    transient: bool,
    base: float,
    cap: float,
    delay: float | None = None,
    max_attempts: int | None = None,
) -> JobStatus | None:
    """Record a failed attempt: back to the queue with a delay (`delay`, or backoff from
    `base` up to `cap`), or failed for good once `max_attempts` (default: the job's) are
    spent. Returns the new status, or None when the attempt no longer held the lease."""
    error = error[:MAX_ERROR_LENGTH]
    now = utcnow()
    if transient and job.attempts < (max_attempts or job.max_attempts):
        if delay is None:
            delay = backoff_delay(job.attempts, base, cap)
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
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(stmt)).all())


async def purge_finished(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(Job).where(
            Job.status.in_((JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)),
            Job.finished_at < older_than,
        )
    )
    return int(getattr(result, "rowcount", 0))


async def depth_by_status(session: AsyncSession) -> dict[str, int]:
    from sqlalchemy import func

    rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {str(status): int(count) for status, count in rows.all()}
