"""The worker loop with a plain handler: no notes involved, as the engine knows none."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs import fair, queue, signals
from notes_api.jobs.handler import (
    Done,
    Ended,
    JobError,
    Outcome,
    PermanentJobError,
    RetryPolicy,
)
from notes_api.jobs.listener import job_channels, listen_forever
from notes_api.jobs.models import Claimed, Job, JobStatus
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
    retry: RetryPolicy | None = None  # the worker's

    def __init__(self, work: Callable[[Claimed], Any]) -> None:
        self.work = work
        self.states: list[tuple[str, JobStatus, Any, str | None]] = []

    async def lock(self, session: AsyncSession, jobs: Sequence[Claimed]) -> set[uuid.UUID]:
        assert isinstance(session, AsyncSession)  # the engine's transaction, to lock in
        return {job.id for job in jobs if not job.payload.get("gone")}

    async def start(self, session: AsyncSession, jobs: Sequence[Claimed]) -> list[Any]:
        assert isinstance(session, AsyncSession)  # the same, to prepare in
        return [job.payload for job in jobs]

    async def run(self, job: Claimed, prepared: Any) -> Outcome:
        assert prepared == job.payload  # what `start` prepared reaches `run`
        result = self.work(job)
        if asyncio.iscoroutine(result):
            result = await result
        return Done(result)

    async def record(self, session: AsyncSession, ended: Sequence[Ended]) -> None:
        # Kinds record the outcome in the same transaction: they must be given it.
        assert isinstance(session, AsyncSession)
        for end in ended:
            result = end.outcome.result if isinstance(end.outcome, Done) else None
            self.states.append((str(end.job.id), end.status, result, end.error))

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def running(
    db: Database,
    handler: Recorder,
    config: WorkerConfig = FAST,
    setup: Callable[[Worker], None] | None = None,
) -> AsyncIterator[Worker]:
    worker = Worker(db, [handler], config)
    if setup is not None:
        setup(worker)  # before it runs
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def enqueue(
    db: Database,
    payload: dict[str, Any] | None = None,
    attempts: int = 3,
    key: str | None = None,
    kind: str = "rec",
) -> Job:
    async with db.session(write=True) as s:
        job_id = await queue.enqueue(s, kind, payload or {}, dedupe_key=key, max_attempts=attempts)
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

    def flaky(job: Claimed) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("model timed out")
        return "finally"

    handler = Recorder(flaky)
    before = {o: outcomes(o) or 0.0 for o in ("retried", "done")}
    async with running(db, handler):
        job = await enqueue(db, attempts=5)
        done = await wait_status(db, job, JobStatus.DONE)
    assert done.attempts == 3
    after = {o: outcomes(o) or 0.0 for o in ("retried", "done")}
    assert {o: after[o] - before[o] for o in after} == {"retried": 2, "done": 1}
    assert [s[1] for s in handler.states] == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.DONE]


async def test_permanent_error_fails_at_once_with_its_message(db: Database) -> None:
    def bad(job: Claimed) -> str:
        raise PermanentJobError("input rejected")

    handler = Recorder(bad)
    async with running(db, handler):
        job = await enqueue(db, attempts=5)
        failed = await wait_status(db, job, JobStatus.FAILED)
    assert (failed.attempts, failed.last_error) == (1, "input rejected")
    assert handler.states == [(str(job.id), JobStatus.FAILED, None, "input rejected")]


async def test_an_error_without_a_message_is_recorded_by_its_type(db: Database) -> None:
    def bad(job: Claimed) -> str:
        raise PermanentJobError()

    async with running(db, Recorder(bad)):
        job = await enqueue(db)
        failed = await wait_status(db, job, JobStatus.FAILED)
    assert failed.last_error == "PermanentJobError"


async def test_job_whose_subject_is_gone_fails_without_running(db: Database) -> None:
    ran: list[Job] = []
    handler = Recorder(ran.append)
    async with running(db, handler):
        job = await enqueue(db, {"gone": True})
        failed = await wait_status(db, job, JobStatus.FAILED)
    assert ran == [] and failed.last_error == "what this job was about no longer exists"
    assert failed.attempts == 1  # not retried: a gone subject does not come back


LEASED = replace(FAST, lease_seconds=2.0)  # renewed every 0.67 s


async def test_a_long_job_keeps_its_lease_by_renewing_it(db: Database) -> None:
    async def outlive_the_first_lease(job: Claimed) -> str:
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

    async def slow(job: Claimed) -> str:
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


class Closing(Recorder):
    """A handler that holds something to close (the webhook handler's HTTP client, say)."""

    def __init__(self, work: Callable[[Claimed], Any]) -> None:
        super().__init__(work)
        self.closed_after: list[tuple[str, JobStatus, Any, str | None]] | None = None

    async def aclose(self) -> None:
        self.closed_after = list(self.states)


async def test_a_stopped_worker_closes_its_handlers_after_handing_back_their_jobs(
    db: Database,
) -> None:
    handler = Closing(lambda job: asyncio.sleep(30))
    async with running(db, handler):
        job = await enqueue(db)
        await wait_status(db, job, JobStatus.PROCESSING)
        assert handler.closed_after is None
    # Closed once, and only after the running job was handed back (its client not in use).
    assert handler.closed_after == [(str(job.id), JobStatus.QUEUED, None, None)]


# Four slots and twelve jobs; and one slot, which runs jobs one at a time.
@pytest.mark.parametrize(("concurrency", "count"), [(FAST.concurrency, 12), (1, 3)])
async def test_concurrency_limit_is_respected(db: Database, concurrency: int, count: int) -> None:
    running_now = peak = 0
    full = asyncio.Event()

    async def work(job: Claimed) -> None:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        if running_now == concurrency:
            full.set()
        # The first jobs hold their slots until every slot is taken (or 5 s have passed), so
        # that the worker's claims, however slow on a loaded machine, race no job's end.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(full.wait(), 5)
        await asyncio.sleep(0.01)
        running_now -= 1

    async with running(db, Recorder(work), replace(FAST, concurrency=concurrency)):
        # All at once, so the worker always has more than it may run: queued one by one,
        # they could arrive slower than jobs finish (on SQLite the enqueues and the
        # worker's writes take turns at the one write lock).
        async with db.session(write=True) as s:
            ids = [await queue.enqueue(s, "rec", {}, max_attempts=3) for _ in range(count)]
            jobs = [await s.get_one(Job, job_id) for job_id in ids]
        for job in jobs:
            await wait_status(db, job, JobStatus.DONE)
    assert peak == concurrency


def rec_sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"kind": "rec"}) or 0.0


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("jobs_outcomes_total", {"kind": "rec", "outcome": outcome})


async def test_outcomes_are_counted_and_only_a_final_failure_is_announced(db: Database) -> None:
    announced: list[tuple[str, str | None]] = []

    def listener(kind: str, key: str | None) -> None:
        announced.append((kind, key))

    def flaky_then_bad(job: Claimed) -> str:
        if job.attempts < 3:
            raise TimeoutError("model timed out")
        raise PermanentJobError("input rejected")

    before = {o: outcomes(o) or 0.0 for o in ("retried", "failed", "done")}
    attempts_before, runs_before, run_time_before = (
        rec_sample("jobs_attempts_total"),
        rec_sample("jobs_duration_seconds_count"),
        rec_sample("jobs_duration_seconds_sum"),
    )
    started = time.perf_counter()
    signals.add_finished_listener(listener)
    try:
        async with running(db, Recorder(flaky_then_bad)):
            job = await enqueue(db, key="subject", attempts=5)
            await wait_status(db, job, JobStatus.FAILED)
            async with asyncio.timeout(10):  # announced after its commit
                while not announced:
                    await asyncio.sleep(0.02)
    finally:
        signals.remove_finished_listener(listener)
    assert announced == [("rec", "subject")]
    after = {o: outcomes(o) or 0.0 for o in ("retried", "failed", "done")}
    assert {o: after[o] - before[o] for o in after} == {"retried": 2, "failed": 1, "done": 0}
    assert rec_sample("jobs_attempts_total") - attempts_before == 3
    assert rec_sample("jobs_duration_seconds_count") - runs_before == 3
    # Each run's own duration: together, less than the whole test took.
    run_time = rec_sample("jobs_duration_seconds_sum") - run_time_before
    assert 0 < run_time < time.perf_counter() - started


async def test_a_failed_renewal_is_retried_and_the_lease_kept(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    renew = queue.renew
    calls: list[int] = []

    async def renew_failing_once(
        session: AsyncSession, jobs: list[Claimed], lease_seconds: float
    ) -> set[uuid.UUID]:
        # The first call is the start's check that the claim still holds; the heartbeat's
        # first renewal (the second call) is the one that fails.
        calls.append(1)
        if len(calls) == 2:
            raise OSError("database connection dropped")
        return await renew(session, jobs, lease_seconds)

    monkeypatch.setattr(queue, "renew", renew_failing_once)

    async def until_renewed_after_the_failure(job: Claimed) -> str:
        async with asyncio.timeout(15):
            while len(calls) < 4:
                await asyncio.sleep(0.05)
        return "kept"

    handler = Recorder(until_renewed_after_the_failure)
    async with running(db, handler, LEASED):
        job = await enqueue(db)
        done = await wait_status(db, job, JobStatus.DONE, timeout=30)
    assert done.attempts == 1
    assert handler.states == [(str(job.id), JobStatus.DONE, "kept", None)]


async def test_expired_leases_of_its_own_kinds_are_reaped_and_run_again(db: Database) -> None:
    foreign = await enqueue(db, kind="other")
    mine = await enqueue(db)
    for kind in ("other", "rec"):  # claimed by a worker that then died; "other" expires first
        async with db.session(write=True) as s:
            await fair.claim(s, [kind], worker_id="dead", lease_seconds=0.01, limit=1)
        await asyncio.sleep(0.02)
    handler = Recorder(lambda job: "second try")
    async with running(db, handler):
        done = await wait_status(db, mine, JobStatus.DONE, timeout=10)
    assert done.attempts == 2
    lost = "the worker running this attempt stopped responding (lease expired)"
    assert handler.states[0][1:] == (JobStatus.QUEUED, None, lost)
    assert handler.states[1:] == [(str(mine.id), JobStatus.DONE, "second try", None)]
    untouched = await wait_status(db, foreign, JobStatus.PROCESSING)
    assert (untouched.attempts, untouched.last_error) == (1, None)


async def test_periodic_work_runs_and_old_finished_jobs_are_purged(db: Database) -> None:
    ticks = asyncio.Event()

    async def tick(session: AsyncSession) -> None:
        assert isinstance(session, AsyncSession)
        ticks.set()

    old, recent = await enqueue(db, key="old"), await enqueue(db, key="recent")
    async with db.session(write=True) as s:
        for job, age in ((old, timedelta(days=30)), (recent, timedelta(days=1))):
            await s.execute(
                Job.__table__.update()
                .where(Job.id == job.id)
                .values(status=JobStatus.DONE, finished_at=utcnow() - age)
            )
    worker_config = replace(FAST, retention=timedelta(days=7))
    async with running(db, Recorder(lambda job: None), worker_config) as worker:
        worker.add_periodic(0.0, tick)
        await asyncio.wait_for(ticks.wait(), 10)
        async with asyncio.timeout(10):
            while True:
                async with db.session() as s:
                    left = set((await s.scalars(select(Job.dedupe_key))).all())
                if "old" not in left:
                    break
                await asyncio.sleep(0.05)
    assert left == {"recent"}


async def test_jobs_record_the_worker_that_ran_them(db: Database) -> None:
    async with running(db, Recorder(lambda job: "ok")) as worker:
        job = await enqueue(db)
        done = await wait_status(db, job, JobStatus.DONE)
    assert done.worker_id == worker.worker_id
    # host:pid:random, so that workers in containers (all pid 1) stay apart
    assert re.fullmatch(rf"[^:]+:{os.getpid()}:[0-9a-f]{{8}}", worker.worker_id)


async def test_an_idle_worker_polls_for_work_that_became_due_unannounced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing announces a job when its run_after passes: the poll finds it. The reaper, which
    # wakes the worker after every round (each poll interval, at most), is silenced here.
    async def reap_nothing() -> None:
        return None

    def silenced(worker: Worker) -> None:
        monkeypatch.setattr(worker, "_reap", reap_nothing)

    config = replace(FAST, poll_interval=0.1, lease_seconds=60.0)
    async with running(db, Recorder(lambda job: "found"), config, silenced):
        async with db.session(write=True) as s:  # queued and put off in one transaction
            job_id = await queue.enqueue(s, "rec", {}, max_attempts=3)
            await s.execute(
                Job.__table__.update()
                .where(Job.id == job_id)
                .values(run_after=utcnow() + timedelta(seconds=0.3))
            )
            job = await s.get_one(Job, job_id)
        # A worker whose loop died on its first idle poll would never get to it.
        done = await wait_status(db, job, JobStatus.DONE, timeout=10)
    assert done.attempts == 1


async def test_a_failed_claim_is_tried_again(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    claim = fair.claim
    failures: list[int] = []

    async def claim_failing_once(*args: Any, **kwargs: Any) -> list[Job]:
        if not failures:
            failures.append(1)
            raise OSError("database connection dropped")
        return await claim(*args, **kwargs)

    monkeypatch.setattr(fair, "claim", claim_failing_once)
    async with running(db, Recorder(lambda job: "eventually")):
        job = await enqueue(db)
        done = await wait_status(db, job, JobStatus.DONE, timeout=10)
    assert failures == [1] and done.attempts == 1


async def wait_failed_once(db: Database, job: Job, timeout: float = 5) -> Job:
    """The job once its first failed attempt is recorded (queued again or failed)."""
    async with asyncio.timeout(timeout):
        while True:
            async with db.session() as s:
                found = await s.get_one(Job, job.id)
            if found.last_error is not None:
                return found
            await asyncio.sleep(0.02)


class PolicyRecorder(Recorder):
    """A kind with its own retry policy (see jobs/handler.py): backoff from 300 s instead
    of the worker's, and (`max_attempts`) a limit instead of the job's."""

    def __init__(self, work: Callable[[Claimed], Any], max_attempts: int | None = None) -> None:
        super().__init__(work)
        self.retry = RetryPolicy(300.0, 3600.0, max_attempts=max_attempts)


def timing_out(job: Claimed) -> str:
    raise TimeoutError("model timed out")


async def test_a_kinds_retry_policy_replaces_the_workers_backoff(db: Database) -> None:
    handler = PolicyRecorder(timing_out)
    async with running(db, handler):  # FAST backs off 0.01 to 0.02 s
        before = utcnow()
        job = await enqueue(db, attempts=5)
        retried = await wait_failed_once(db, job)
    assert (retried.status, retried.attempts) == (JobStatus.QUEUED, 1)
    # The kind's backoff after a first attempt: 300 s with equal jitter, 150 to 300 s.
    assert before + timedelta(seconds=150) <= retried.run_after
    assert retried.run_after <= utcnow() + timedelta(seconds=300)


async def test_a_kinds_max_attempts_replaces_the_jobs(db: Database) -> None:
    handler = PolicyRecorder(timing_out, max_attempts=1)
    async with running(db, handler):
        job = await enqueue(db, attempts=5)
        failed = await wait_status(db, job, JobStatus.FAILED)
    assert (failed.attempts, failed.last_error) == (1, "model timed out")
    assert [s[1] for s in handler.states] == [JobStatus.FAILED]


async def test_a_retry_waits_at_least_as_long_as_the_error_asks(db: Database) -> None:
    def busy(job: Claimed) -> str:
        raise JobError("model busy", retry_after=120)

    async with running(db, Recorder(busy)):  # FAST backs off 0.01 to 0.02 s
        before = utcnow()
        job = await enqueue(db, attempts=5)
        retried = await wait_failed_once(db, job)
    assert (retried.status, retried.last_error) == (JobStatus.QUEUED, "model busy")
    assert before + timedelta(seconds=120) <= retried.run_after
    assert retried.run_after <= utcnow() + timedelta(seconds=121)


async def test_an_idle_worker_sleeps_instead_of_looking_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = fair.claim
    looks: list[int] = []

    async def counted_claim(*args: Any, **kwargs: Any) -> list[Job]:
        looks.append(1)
        return await claim(*args, **kwargs)

    monkeypatch.setattr(fair, "claim", counted_claim)
    async with running(db, Recorder(lambda job: "ok"), SLEEPY):
        await asyncio.sleep(0.3)  # nothing queued, nothing wakes it: one look, then sleep
    assert looks == [1]


async def test_a_stopped_worker_is_no_longer_woken_by_new_work(db: Database) -> None:
    async with running(db, Recorder(lambda job: "ok"), SLEEPY) as worker:
        await asyncio.sleep(0.05)
    worker.wake.clear()
    await enqueue(db)  # its commit wakes every registered worker
    assert not worker.wake.is_set()


async def test_a_freed_slot_goes_to_the_key_the_worker_is_not_already_running(
    db: Database,
) -> None:
    """The worker shares its slots out counting the jobs it runs of each fairness key: with a
    job of key "a" running, a free slot goes to key "b" even though "a" waits longer."""
    release = {name: asyncio.Event() for name in ("a1", "c1")}
    started: list[str] = []

    async def work(job: Claimed) -> None:
        name = job.payload["name"]
        started.append(name)
        if name in release:
            await release[name].wait()

    async def add(*jobs: tuple[str, str]) -> list[Job]:
        async with db.session(write=True) as s:  # in this order, in one transaction
            ids = [
                await queue.enqueue(s, "rec", {"name": n}, max_attempts=3, fairness_key=key)
                for n, key in jobs
            ]
            return [await s.get_one(Job, job_id) for job_id in ids]

    async with running(db, Recorder(work), replace(FAST, concurrency=2, lease_seconds=5.0)):
        await add(("a1", "a"), ("c1", "c"))
        async with asyncio.timeout(10):
            while len(started) < 2:
                await asyncio.sleep(0.01)
        a2, b1 = await add(("a2", "a"), ("b1", "b"))  # a2 waits longer
        release["c1"].set()  # one slot frees; "a" still has a job running
        await wait_status(db, b1, JobStatus.DONE)
        assert started[2] == "b1"
        release["a1"].set()
        await wait_status(db, a2, JobStatus.DONE)
    assert started[3:] == ["a2"]


class FirstLockedRecorder(Recorder):
    """The first job the worker locks turns out gone, or (`cancel`) is cancelled in the lock's
    transaction, as an edit of its note would: the worker must still start the rest of the
    batch it claimed along with it."""

    def __init__(self, work: Callable[[Claimed], Any], *, cancel: bool) -> None:
        super().__init__(work)
        self.cancel = cancel
        self.first: Claimed | None = None

    async def lock(self, session: AsyncSession, jobs: Sequence[Claimed]) -> set[uuid.UUID]:
        if self.first is None:
            self.first = first = jobs[0]
            if self.cancel:
                assert first.dedupe_key is not None
                await queue.cancel_active(session, self.kind, first.dedupe_key)
            else:
                return {job.id for job in jobs if job is not first}
        return {job.id for job in jobs}


@pytest.mark.parametrize("cancel", [False, True], ids=["gone", "cancelled"])
async def test_the_rest_of_a_batch_runs_when_its_first_job_is_dropped(
    db: Database, cancel: bool
) -> None:
    async with db.session(write=True) as s:  # one batch: all committed before the worker looks
        ids = [
            await queue.enqueue(s, "rec", {}, dedupe_key=f"k{i}", max_attempts=3) for i in range(3)
        ]
    handler = FirstLockedRecorder(lambda job: "ok", cancel=cancel)
    async with running(db, handler):
        async with asyncio.timeout(10):
            while len(handler.states) < 2 + (not cancel):
                await asyncio.sleep(0.02)
    assert handler.first is not None and handler.first.id in ids
    async with db.session() as s:
        jobs = {j.id: j for j in (await s.scalars(select(Job).where(Job.id.in_(ids)))).all()}
    dropped = jobs.pop(handler.first.id)
    assert dropped.status is (JobStatus.CANCELLED if cancel else JobStatus.FAILED)
    # The others ran at their first attempt, not after their leases ran out.
    assert [(j.status, j.attempts) for j in jobs.values()] == [(JobStatus.DONE, 1)] * 2


async def test_periodic_work_runs_once_per_its_interval(db: Database) -> None:
    runs = {"often": 0, "rarely": 0}

    def counting(name: str) -> Any:
        async def run(session: AsyncSession) -> None:
            runs[name] += 1

        return run

    config = replace(FAST, poll_interval=0.02)  # a maintenance round every 0.02 s
    async with running(db, Recorder(lambda job: None), config) as worker:
        worker.add_periodic(0.1, counting("often"))
        worker.add_periodic(60.0, counting("rarely"))
        async with asyncio.timeout(10):
            while runs["often"] < 2:
                await asyncio.sleep(0.02)
    assert runs["rarely"] == 1  # at once, then not again within the minute


async def test_a_stopping_worker_lets_its_maintenance_round_finish(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cancel landing while the round checks out a connection would leave that connection
    # owned by nothing: the round under way ends on its own instead.
    reading, read = asyncio.Event(), []
    expired = queue.expired

    async def slow_expired(session: AsyncSession) -> list[Job]:
        reading.set()
        await asyncio.sleep(0.2)
        found = await expired(session)
        read.append(found)
        return found

    monkeypatch.setattr(queue, "expired", slow_expired)
    config = replace(FAST, poll_interval=0.02, shutdown_grace=5.0)
    async with running(db, Recorder(lambda job: None), config):
        await asyncio.wait_for(reading.wait(), 10)
    assert read == [[]]  # the round that was reading when stopped, and none after it
    assert db.engine.pool.checkedout() == 0


async def test_a_maintenance_round_stuck_past_the_grace_does_not_hold_up_the_stop(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading = asyncio.Event()

    async def stuck(session: AsyncSession) -> list[Job]:
        reading.set()
        await asyncio.Event().wait()  # never set
        return []

    monkeypatch.setattr(queue, "expired", stuck)
    config = replace(FAST, poll_interval=0.02, shutdown_grace=0.3)
    worker = Worker(db, [Recorder(lambda job: None)], config)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(reading.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 5)  # the grace (0.3 s), then the round is cancelled


async def test_a_process_hears_only_the_job_channels_it_listens_on(pg_url: str) -> None:
    """A standalone worker LISTENs for new jobs, not for ended ones (the API's `?wait`
    listens for those): every job sends on both, and each notification heard costs the
    listening process and Postgres."""
    woken = asyncio.Event()
    ended: list[tuple[str, str | None]] = []
    signals.add_wake_event(woken)
    signals.add_finished_listener(lambda kind, key: ended.append((kind, key)))
    listener = asyncio.create_task(
        listen_forever(pg_url, job_channels(queued=True, finished=False))
    )
    try:
        await asyncio.wait_for(woken.wait(), 10)  # listening: "*" wakes the workers once
        woken.clear()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"NOTIFY {signals.FINISHED_CHANNEL}, 'summarize:n1'")
            conn.execute(f"NOTIFY {signals.QUEUED_CHANNEL}, 'summarize'")
        await asyncio.wait_for(woken.wait(), 5)
        await asyncio.sleep(0.2)  # the earlier notification, had it been heard, is in by now
        assert ended == []
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        signals.remove_wake_event(woken)
        signals._finished_listeners.clear()
