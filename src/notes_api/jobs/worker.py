"""The worker loop: claim a batch while there is room, start it in one transaction, run
each job under a lease the heartbeat renews for all of them at once, hand each outcome to
the group commit (jobs/settle.py), and sleep until woken (or the poll interval passes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs import fair, queue, signals
from notes_api.jobs.handler import Ended, Failed, JobKind, Outcome, Retry, RetryPolicy, outcome_of
from notes_api.jobs.metrics import JOB_ATTEMPTS, JOB_DURATION
from notes_api.jobs.models import Claimed
from notes_api.jobs.settle import GroupCommit, Result, by_kind, settle

log = structlog.get_logger("notes_api.worker")

Periodic = Callable[[AsyncSession], Awaitable[Any]]

SUBJECT_GONE = "what this job was about no longer exists"
LEASE_EXPIRED = "the worker running this attempt stopped responding (lease expired)"


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 4
    lease_seconds: float = 30.0
    poll_interval: float = 5.0
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    shutdown_grace: float = 10.0
    retention: timedelta = timedelta(days=7)
    maintenance_interval: float = 60.0
    group_commit_window: float = 0.002  # seconds an outcome waits for others to share a write


class Worker:
    def __init__(self, db: Database, kinds: Sequence[JobKind], config: WorkerConfig) -> None:
        self.db = db
        self.kinds = {k.kind: k for k in kinds}
        self.config = config
        self.policy = RetryPolicy(config.backoff_base, config.backoff_max)
        # In containers every PID is 1 and hosts may share a name: a random part keeps ids apart.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], Claimed] = {}
        self._stopping = asyncio.Event()
        self._due_keys = fair.DueKeys()
        # The heartbeat and the group commit write the same jobs' rows: one at a time.
        self._writing = asyncio.Lock()
        self._ends = GroupCommit(
            db,
            self._settle,
            window=config.group_commit_window,
            busy=lambda: bool(self._running),
            written=self.wake.set,
        )
        self._periodic: list[tuple[float, Periodic]] = [
            (config.maintenance_interval, self._purge_finished)
        ]

    def add_periodic(self, interval: float, fn: Periodic) -> None:
        """House-keeping for other modules (expired idempotency keys, say)."""
        self._periodic.append((interval, fn))

    async def run(self) -> None:
        signals.add_wake_event(self.wake)
        maintenance = asyncio.create_task(self._maintenance(), name="jobs-maintenance")
        ends = asyncio.create_task(self._ends.run(self._writing), name="jobs-group-commit")
        heartbeat = asyncio.create_task(self._heartbeat(), name="jobs-heartbeat")
        log.info("worker.started", worker_id=self.worker_id, concurrency=self.config.concurrency)
        try:
            while not self._stopping.is_set():
                self.wake.clear()
                claimed = await self._claim_safely()
                if claimed and len(self._running) < self.config.concurrency:
                    continue  # more may be waiting: look again at once
                await self._sleep()
        finally:
            self._stopping.set()  # also when the loop ended by an error: maintenance stops too
            # A round under way finishes: a cancel landing while it checks out a connection
            # would leave that connection owned by nothing. A round stuck past the grace is
            # cancelled all the same.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(maintenance, timeout=self.config.shutdown_grace)
            signals.remove_wake_event(self.wake)
            await self._drain()
            self._ends.close()
            await ends
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            for kind in self.kinds.values():
                await kind.aclose()
            log.info("worker.stopped", worker_id=self.worker_id)

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.config.poll_interval)

    async def _claim_safely(self) -> int:
        room = self.config.concurrency - len(self._running)
        if room <= 0:
            return 0
        try:
            return await self._claim(room)
        except Exception:
            log.exception("worker.claim_failed")
            await asyncio.sleep(min(self.config.poll_interval, 1.0))
            return 0

    async def _claim(self, room: int) -> int:
        async with self.db.session() as session:
            jobs = await fair.claim(
                session,
                list(self.kinds),
                worker_id=self.worker_id,
                lease_seconds=self.config.lease_seconds,
                limit=room,
                running=Counter(job.fairness_key for job in self._running.values()),
                due_keys=self._due_keys,
            )
        if not jobs:
            return 0
        for job in jobs:
            JOB_ATTEMPTS.labels(job.kind).inc()
        # A second transaction, subjects first: the claim above locked job rows only, and
        # locking a subject while holding its job would invert the order the API keeps.
        async with self.db.session() as session:
            batches = by_kind(jobs)
            present: set[Any] = set()
            for kind, batch in batches.items():
                present |= await self.kinds[kind].lock(session, batch)
            # Renewed: still ours (not cancelled since the claim by an edit of its note).
            held = await queue.renew(session, jobs, self.config.lease_seconds)
            gone: list[Result] = [
                (job, Failed(SUBJECT_GONE)) for job in jobs if job.id in held - present
            ]
            await settle(session, self.kinds, self.policy, gone, locked=True)
            started: list[tuple[Claimed, Any]] = []
            for kind, batch in batches.items():
                ready = [job for job in batch if job.id in held & present]
                if ready:
                    subjects = await self.kinds[kind].start(session, ready)
                    started += zip(ready, subjects, strict=True)
        for job, subject in started:
            task = asyncio.create_task(self._execute(job, subject), name=f"job-{job.id}")
            self._running[task] = job
            task.add_done_callback(self._done)
        if started:
            log.info("worker.claimed", jobs=len(started), kinds=",".join(batches))
        return len(jobs)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self.wake.set()  # a slot is free

    async def _execute(self, job: Claimed, subject: Any) -> None:
        started = time.perf_counter()
        try:
            outcome: Outcome = await self.kinds[job.kind].run(job, subject)
        except asyncio.CancelledError:
            raise  # the lease was lost, or the worker is stopping (see _drain)
        except Exception as exc:
            outcome = outcome_of(exc)
        JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)
        self._ends.add(job, outcome)

    async def _settle(self, session: AsyncSession, results: Sequence[Result]) -> list[Ended]:
        ended = await settle(session, self.kinds, self.policy, results)
        if ended:
            statuses = Counter(str(end.status) for end in ended)
            log.info("worker.ended", jobs=len(ended), **statuses)
        return ended

    async def _heartbeat(self) -> None:
        """Every lease/3, the leases of every job this worker holds, in one statement; a run
        whose lease is lost (cancelled, or taken over after it ran out) is stopped."""
        while True:
            await asyncio.sleep(self.config.lease_seconds / 3)
            runs = {job.id: task for task, job in self._running.items()}
            jobs = [*self._running.values(), *self._ends.holds()]
            if not jobs:
                continue
            try:
                async with self._writing, self.db.session() as session:
                    held = await queue.renew(session, jobs, self.config.lease_seconds)
            except Exception:
                log.warning("worker.renew_failed", jobs=len(jobs))
                continue
            for job in jobs:
                if job.id not in held:
                    log.info("worker.lease_lost", job_id=str(job.id))
                    if job.id in runs:
                        runs[job.id].cancel()

    async def _maintenance(self) -> None:
        last: dict[int, float] = {}
        pause = min(self.config.lease_seconds / 2, self.config.poll_interval)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=pause)
            if self._stopping.is_set():
                return
            try:
                await self._reap()
                now = time.monotonic()
                for i, (interval, fn) in enumerate(self._periodic):
                    if now - last.get(i, 0.0) >= interval:
                        last[i] = now
                        async with self.db.session() as session:
                            await fn(session)
            except Exception:
                log.exception("worker.maintenance_failed")

    async def _purge_finished(self, session: AsyncSession) -> None:
        await queue.purge_finished(session, utcnow() - self.config.retention)

    async def _reap(self) -> None:
        async with self.db.session(write=False) as session:
            expired = await queue.expired(session)
        for job in expired:
            if job.kind not in self.kinds:
                continue
            log.warning("worker.lease_expired", job_id=str(job.id), worker=job.worker_id)
            # Fenced by the token read above: a job renewed or finished meanwhile is left be.
            async with self.db.session() as session:
                await settle(session, self.kinds, self.policy, [(job, Retry(LEASE_EXPIRED))])
        # Look again now: jobs put back by the reaper, and retries whose backoff has passed
        # (nothing notifies about those), are due.
        self.wake.set()

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then give back the rest."""
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running), timeout=self.config.shutdown_grace)
        for task in pending:
            job = self._running.get(task)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if job is not None:
                self._ends.add(job, None)
