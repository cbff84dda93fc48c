"""The worker loop with a plain handler: no notes involved, as the engine knows none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs import queue
from notes_api.jobs.handler import PermanentJobError
from notes_api.jobs.models import Job, JobStatus
from notes_api.jobs.worker import Worker, WorkerConfig

FAST = WorkerConfig(
    concurrency=4,
    lease_seconds=0.6,
    poll_interval=5.0,
    backoff_base=0.01,
    backoff_max=0.02,
    shutdown_grace=0.3,
)


class Recorder:
    kind = "rec"

    def __init__(self, work: Callable[[Job], Any]) -> None:
        self.work = work
        self.states: list[tuple[str, JobStatus, Any, str | None]] = []

    async def started(self, session: AsyncSession, job: Job) -> Any:
        if job.payload.get("gone"):
            raise PermanentJobError("subject is gone")
        return job.payload

    async def run(self, job: Job, prepared: Any) -> Any:
        result = self.work(job)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def finished(
        self, session: AsyncSession, job: Job, status: JobStatus, result: Any, error: str | None
    ) -> None:
        self.states.append((str(job.id), status, result, error))


@asynccontextmanager
async def running(
    db: Database, handler: Recorder, config: WorkerConfig = FAST
) -> AsyncIterator[Worker]:
    worker = Worker(db, [handler], config)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def enqueue(db: Database, payload: dict[str, Any] | None = None, attempts: int = 3) -> Job:
    async with db.session(write=True) as s:
        job_id = await queue.enqueue(s, "rec", payload or {}, max_attempts=attempts)
        return await s.get_one(Job, job_id)


async def wait_status(db: Database, job: Job, *statuses: JobStatus, timeout: float = 5) -> Job:
    async with asyncio.timeout(timeout):
        while True:
            async with db.session() as s:
                found = await s.scalar(select(Job).where(Job.id == job.id))
            if found is not None and found.status in statuses:
                return found
            await asyncio.sleep(0.02)


# Nothing but a wake-up makes this worker look for work within a minute: it polls every
# 60 s, and its reaper (which also wakes it) runs every lease/2 = 30 s.
SLEEPY = replace(FAST, poll_interval=60.0, lease_seconds=60.0)


async def test_worker_wakes_at_once_when_work_is_committed(db: Database) -> None:
    handler = Recorder(lambda job: "ok")
    async with running(db, handler, SLEEPY):
        await asyncio.sleep(0.1)  # idle (or, on a slow machine, about to be: no matter)
        job = await enqueue(db)
        # Generous for a loaded machine, and still far below the 30 s of the next look.
        done = await wait_status(db, job, JobStatus.DONE, timeout=10)
    assert done.attempts == 1
    assert handler.states == [(str(job.id), JobStatus.DONE, "ok", None)]


async def test_transient_errors_are_retried_until_success(db: Database) -> None:
    calls: list[int] = []

    def flaky(job: Job) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("model timed out")
        return "finally"

    handler = Recorder(flaky)
    async with running(db, handler):
        job = await enqueue(db, attempts=5)
        done = await wait_status(db, job, JobStatus.DONE)
    assert done.attempts == 3
    assert [s[1] for s in handler.states] == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.DONE]


async def test_permanent_error_fails_at_once_with_its_message(db: Database) -> None:
    def bad(job: Job) -> str:
        raise PermanentJobError("input rejected")

    handler = Recorder(bad)
    async with running(db, handler):
        job = await enqueue(db, attempts=5)
        failed = await wait_status(db, job, JobStatus.FAILED)
    assert (failed.attempts, failed.last_error) == (1, "input rejected")


async def test_job_whose_subject_is_gone_fails_without_running(db: Database) -> None:
    ran: list[Job] = []
    handler = Recorder(ran.append)
    async with running(db, handler):
        job = await enqueue(db, {"gone": True})
        failed = await wait_status(db, job, JobStatus.FAILED)
    assert ran == [] and failed.last_error == "subject is gone"


LEASED = replace(FAST, lease_seconds=2.0)  # renewed every 0.67 s


async def test_a_long_job_keeps_its_lease_by_renewing_it(db: Database) -> None:
    async def outlive_the_first_lease(job: Job) -> str:
        """Run until the lease taken at the claim has run out, and has been renewed twice."""
        expiries = set()
        async with asyncio.timeout(30):
            while True:
                async with db.session() as s:
                    found = await s.get_one(Job, job.id)
                expiries.add(found.lease_expires_at)
                if len(expiries) >= 3 and utcnow() > min(e for e in expiries if e):
                    return "slow but fine"
                await asyncio.sleep(0.05)

    handler = Recorder(outlive_the_first_lease)
    async with running(db, handler, LEASED):
        job = await enqueue(db)
        done = await wait_status(db, job, JobStatus.DONE, timeout=40)
    assert done.attempts == 1
    assert handler.states == [(str(job.id), JobStatus.DONE, "slow but fine", None)]


async def test_cancelled_job_result_is_discarded_and_its_run_stopped(db: Database) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def slow(job: Job) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            # A handler that finishes anyway: its result must still be thrown away (the
            # worker drains it on stop, below, and the fenced completion finds no lease).
        return "stale"

    handler = Recorder(slow)
    async with running(db, handler):
        job = await enqueue(db, {"k": 1})
        await asyncio.wait_for(started.wait(), 10)
        async with db.session(write=True) as s:
            await s.execute(
                Job.__table__.update()
                .where(Job.id == job.id)
                .values(status=JobStatus.CANCELLED, lease_token=None)
            )
        # The next renewal (every lease/3 = 0.2 s) finds the lease gone and stops the run,
        # long before the worker is told to stop (which would cancel it anyway).
        await asyncio.wait_for(stopped.wait(), 10)
    assert handler.states == []
    assert (await wait_status(db, job, JobStatus.CANCELLED)).last_error is None


async def test_stop_gives_back_jobs_that_outlive_the_grace_period(db: Database) -> None:
    handler = Recorder(lambda job: asyncio.sleep(30))
    async with running(db, handler):
        job = await enqueue(db)
        await wait_status(db, job, JobStatus.PROCESSING)
    back = await wait_status(db, job, JobStatus.QUEUED)
    assert (back.attempts, back.lease_token) == (0, None)
    assert handler.states == [(str(job.id), JobStatus.QUEUED, None, None)]


async def test_concurrency_limit_is_respected(db: Database) -> None:
    running_now = 0
    peak = 0

    async def work(job: Job) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.05)
        running_now -= 1

    handler = Recorder(work)
    async with running(db, handler):
        # All twelve at once, so the worker always has more than it may run: queued one by
        # one, they could arrive slower than jobs finish (on SQLite the enqueues and the
        # worker's writes take turns at the one write lock).
        async with db.session(write=True) as s:
            ids = [await queue.enqueue(s, "rec", {}, max_attempts=3) for _ in range(12)]
            jobs = [await s.get_one(Job, job_id) for job_id in ids]
        for job in jobs:
            await wait_status(db, job, JobStatus.DONE)
    assert peak == FAST.concurrency
