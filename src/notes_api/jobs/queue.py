"""Job state transitions. Every write after a claim is fenced by the lease token: an attempt
that lost its lease (expired, cancelled, taken over by another worker) changes nothing.
Each write takes a batch of jobs in one statement (a single job is a batch of one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CTE, Insert, Select, Update, bindparam, delete, func, insert, select, tuple_
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import bound_row, row_params
from notes_api.core.statements import Once
from notes_api.jobs import signals
from notes_api.jobs.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    Claimed,
    Job,
    JobStatus,
    jobs,
)

MAX_ERROR_LENGTH = 1000


def new_job(
    kind: str,
    payload: dict[str, Any],
    *,
    max_attempts: int,
    dedupe_key: str | None = None,
    fairness_key: str | None = None,
) -> dict[str, Any]:
    """The row `enqueue` writes: a job due now, never attempted. Jobs of different
    `fairness_key`s share the workers (see jobs/fair.py); jobs without one share the key ""."""
    now = utcnow()
    return {
        "id": uuid.uuid4(),
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
    a trigger sends on Postgres (see the migration 20261130_0001)."""
    row = new_job(
        kind, payload, max_attempts=max_attempts, dedupe_key=dedupe_key, fairness_key=fairness_key
    )
    await _INSERT_JOB.rows(session, enqueue_cte_params(row))
    enqueued(session, 1)
    job_id: uuid.UUID = row["id"]
    return job_id


_JOB_COLUMNS = tuple(new_job("", {}, max_attempts=1))
_JOB_PARAM = "job_{}"


def enqueue_cte() -> CTE:
    """`enqueue` as a part of a larger statement (a Postgres CTE): its parameters are the
    columns of a `new_job` row, each prefixed `job_` (`enqueue_cte_params`). Run the
    statement, then call `enqueued`."""
    values = bound_row(jobs, _JOB_COLUMNS, _JOB_PARAM)
    return insert(jobs).values(values).returning(jobs.c.id).cte("job")


def enqueue_cte_params(row: dict[str, Any]) -> dict[str, Any]:
    return row_params(row, _JOB_COLUMNS, _JOB_PARAM)


_INSERT_JOB = Once(insert(jobs).values(bound_row(jobs, _JOB_COLUMNS, _JOB_PARAM)))


def enqueue_each(kind: str, rows: Select[Any], new_id: Any) -> Insert:
    """The statement that enqueues, as `enqueue` does, one job of `kind` per row of `rows`:
    a SELECT of `dedupe_key`, `fairness_key` and `max_attempts` (in that order), for jobs
    about rows of the caller's tables, in one statement; `new_id` is the SQL of a new UUID.
    Run it with `enqueue_selected`."""
    now = bindparam("enqueue_now", type_=jobs.c.run_after.type)
    source = rows.add_columns(
        new_id,
        bindparam("enqueue_kind", kind, type_=jobs.c.kind.type),
        bindparam("enqueue_payload", {}, type_=jobs.c.payload.type),
        bindparam("enqueue_status", JobStatus.QUEUED, type_=jobs.c.status.type),
        bindparam("enqueue_attempts", 0, type_=jobs.c.attempts.type),
        now,
        now,
        now,
    )
    columns = ["dedupe_key", "fairness_key", "max_attempts", "id", "kind", "payload"]
    columns += ["status", "attempts", "run_after", "created_at", "updated_at"]
    return insert(jobs).from_select(columns, source)


async def enqueue_selected(session: AsyncSession, stmt: Insert, params: dict[str, Any]) -> int:
    """Run an `enqueue_each` statement: the number of jobs it queued."""
    result = await session.execute(stmt, {**params, **enqueue_params()})
    queued = int(getattr(result, "rowcount", 0) or 0)
    enqueued(session, queued)
    return queued


def enqueue_params() -> dict[str, Any]:
    """The parameters of an `enqueue_each` statement that the engine sets (the time)."""
    return {"enqueue_now": utcnow()}


def enqueued(session: AsyncSession, count: int) -> None:
    """`count` jobs were queued (by `enqueue`, or by an `enqueue_cte` or `enqueue_each` part
    of a larger statement the caller ran): wake the workers once the session commits."""
    if count:
        signals.mark_queued(session)


def announce_finished(session: AsyncSession, job: Claimed) -> None:
    """Tell this process's waiters, once the session commits, that the job ended (other
    processes hear it from the trigger's NOTIFY)."""
    signals.mark_finished(session, job.kind, job.dedupe_key)


async def cancel_active(session: AsyncSession, kind: str, dedupe_key: str) -> int:
    """Cancel the live job for a subject; clearing the token fences a running attempt."""
    now = utcnow()
    result = await session.execute(
        sql_update(Job)
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


def _fenced(values: dict[str, Any], *, ends_lease: bool = True) -> Update:
    """A write to claimed jobs, fenced by their leases: it changes only the jobs still
    processing under the token each attempt was given, and returns their ids. Its
    parameters: `fence`, the (id, token) pairs, and those of `values`."""
    if ends_lease:
        values = {**values, "lease_token": None, "lease_expires_at": None}
    return (
        sql_update(jobs)
        .where(
            jobs.c.status == JobStatus.PROCESSING,
            tuple_(jobs.c.id, jobs.c.lease_token).in_(bindparam("fence", expanding=True)),
        )
        .values(updated_at=bindparam("now"), **values)
        .returning(jobs.c.id)
    )


# Built once at import (mutation/run.py's AT_IMPORT reaches them through their users).
_RENEW = _fenced({"lease_expires_at": bindparam("expires")}, ends_lease=False)
_COMPLETE = _fenced({"status": JobStatus.DONE, "finished_at": bindparam("now"), "last_error": None})
_REQUEUE = _fenced(
    {
        "status": JobStatus.QUEUED,
        "run_after": bindparam("run_after"),
        "last_error": bindparam("error"),
    }
)
_FAIL = _fenced(
    {"status": JobStatus.FAILED, "finished_at": bindparam("now"), "last_error": bindparam("error")}
)
_RELEASE = _fenced(
    {"status": JobStatus.QUEUED, "run_after": bindparam("now"), "attempts": jobs.c.attempts - 1}
)


async def _write(
    session: AsyncSession, stmt: Update, batch: Sequence[Claimed], **params: Any
) -> set[uuid.UUID]:
    if not batch:
        return set()
    conn = await session.connection()
    fence = [(job.id, job.lease_token) for job in batch]
    result = await conn.execute(stmt, {"fence": fence, "now": utcnow(), **params})
    return set(result.scalars())


async def renew(
    session: AsyncSession, batch: Sequence[Claimed], lease_seconds: float
) -> set[uuid.UUID]:
    """Move the leases of `batch` forward: the ids of the jobs still held."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    return await _write(session, _RENEW, batch, expires=expires)


async def complete(session: AsyncSession, batch: Sequence[Claimed]) -> set[uuid.UUID]:
    """`batch` is done: the ids of the jobs whose attempt still held its lease."""
    return await _write(session, _COMPLETE, batch)


async def requeue(session: AsyncSession, job: Claimed, error: str, delay: float) -> bool:
    """Back to the queue after a failed attempt, due in `delay` seconds."""
    run_after = utcnow() + timedelta(seconds=delay)
    error = error[:MAX_ERROR_LENGTH]
    return bool(await _write(session, _REQUEUE, [job], run_after=run_after, error=error))


async def fail(session: AsyncSession, job: Claimed, error: str) -> bool:
    """Failed for good."""
    return bool(await _write(session, _FAIL, [job], error=error[:MAX_ERROR_LENGTH]))


async def release(session: AsyncSession, batch: Sequence[Claimed]) -> set[uuid.UUID]:
    """Give interrupted attempts back (graceful shutdown); they do not count as tries."""
    return await _write(session, _RELEASE, batch)


async def expired(session: AsyncSession, *, limit: int = 100) -> list[Claimed]:
    """Jobs whose worker stopped renewing its lease (crashed, frozen, or cut off)."""
    stmt = (
        select(*Claimed.columns())
        .where(jobs.c.status == JobStatus.PROCESSING, jobs.c.lease_expires_at < utcnow())
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
    )
    conn = await session.connection()
    return [Claimed(*row) for row in await conn.execute(stmt)]


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
