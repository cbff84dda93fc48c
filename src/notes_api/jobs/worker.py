"""The worker loop: claim while there is room, run each job under a renewed lease, record
the outcome fenced by that lease, and sleep until woken (or the poll interval passes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs import queue, signals
from notes_api.jobs.handler import JobHandler, is_transient, retry_after
from notes_api.jobs.metrics import JOB_ATTEMPTS, JOB_DURATION, JOB_OUTCOMES
from notes_api.jobs.models import Job, JobStatus

log = structlog.get_logger("notes_api.worker")

Periodic = Callable[[AsyncSession], Awaitable[Any]]


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


class Worker:
    def __init__(self, db: Database, handlers: list[JobHandler], config: WorkerConfig) -> None:
        self.db = db
        self.handlers = {h.kind: h for h in handlers}
        self.config = config
        # In containers every PID is 1 and hosts may share a name: a random part keeps ids apart.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], Job] = {}
        self._stopping = asyncio.Event()
        self._due_keys = queue.DueKeys()
        self._periodic: list[tuple[float, Periodic]] = [
            (config.maintenance_interval, self._purge_finished)
        ]

    def add_periodic(self, interval: float, fn: Periodic) -> None:
        """House-keeping for other modules (expired idempotency keys, say)."""
        self._periodic.append((interval, fn))

    async def run(self) -> None:
        signals.add_wake_event(self.wake)
        maintenance = asyncio.create_task(self._maintenance(), name="jobs-maintenance")
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
            for handler in self.handlers.values():
                close = getattr(handler, "aclose", None)
                if close is not None:
                    await close()
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
            jobs = await queue.claim(
                session,
                list(self.handlers),
                worker_id=self.worker_id,
                lease_seconds=self.config.lease_seconds,
                limit=room,
                running=Counter(job.fairness_key for job in self._running.values()),
                due_keys=self._due_keys,
            )
        if not jobs:
            return 0
        # A second transaction, subjects first: the claim above locked job rows only, and
        # locking a subject while holding its job would invert the order the API keeps.
        ready: list[tuple[Job, Any]] = []
        async with self.db.session() as session:
            found = [await self.handlers[job.kind].lock(session, job) for job in jobs]
            for job, exists in zip(jobs, found, strict=True):
                JOB_ATTEMPTS.labels(job.kind).inc()
                if not await queue.renew(session, job, self.config.lease_seconds):
                    continue  # cancelled since the claim (its note was edited or deleted)
                if not exists:
                    await self._record_failure(session, job, SubjectGone(), transient=False)
                    continue
                ready.append((job, await self.handlers[job.kind].started(session, job)))
        for job, subject in ready:
            task = asyncio.create_task(self._execute(job, subject), name=f"job-{job.id}")
            self._running[task] = job
            task.add_done_callback(self._done)
        return len(jobs)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self.wake.set()  # a slot is free

    async def _execute(self, job: Job, prepared: Any) -> None:
        handler = self.handlers[job.kind]
        heartbeat = asyncio.create_task(self._heartbeat(job, asyncio.current_task()))
        started = time.perf_counter()
        try:
            result = await handler.run(job, prepared)
        except asyncio.CancelledError:
            heartbeat.cancel()
            raise
        except Exception as exc:
            heartbeat.cancel()
            await self._finish_failed(job, exc)
        else:
            heartbeat.cancel()
            await self._finish_done(job, result)
        finally:
            JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)

    async def _heartbeat(self, job: Job, runner: asyncio.Task[Any] | None) -> None:
        while True:
            await asyncio.sleep(self.config.lease_seconds / 3)
            try:
                async with self.db.session() as session:
                    held = await queue.renew(session, job, self.config.lease_seconds)
            except Exception:
                log.warning("worker.renew_failed", job_id=str(job.id))
                continue
            if not held:
                log.info("worker.lease_lost", job_id=str(job.id))
                if runner is not None:
                    runner.cancel()
                return

    @contextlib.asynccontextmanager
    async def _locked(self, job: Job) -> AsyncIterator[AsyncSession]:
        """A unit of work that has locked the job's subject: every change of a claimed job
        runs in one, so the engine keeps the lock order of jobs/handler.py everywhere."""
        async with self.db.session() as session:
            await self.handlers[job.kind].lock(session, job)
            yield session

    async def _finish_done(self, job: Job, result: Any) -> None:
        try:
            async with self._locked(job) as session:
                if await queue.complete(session, job):
                    await self.handlers[job.kind].finished(
                        session, job, JobStatus.DONE, result, None
                    )
                    queue.announce_finished(session, job)
                    JOB_OUTCOMES.labels(job.kind, "done").inc()
                else:
                    log.info("worker.result_discarded", job_id=str(job.id))
        except Exception:
            # The lease will run out and another attempt will be made: nothing is lost.
            log.exception("worker.complete_failed", job_id=str(job.id))

    async def _finish_failed(self, job: Job, exc: Exception) -> None:
        try:
            async with self._locked(job) as session:
                await self._record_failure(session, job, exc, transient=is_transient(exc))
        except Exception:
            log.exception("worker.fail_record_failed", job_id=str(job.id))

    async def _record_failure(
        self, session: AsyncSession, job: Job, exc: BaseException, *, transient: bool
    ) -> None:
        error = str(exc) or type(exc).__name__
        handler = self.handlers[job.kind]
        policy = getattr(handler, "retry_delay", None)
        delay = float(policy(job.attempts)) if policy is not None else None
        status = await queue.fail(
            session,
            job,
            error,
            transient=transient,
            base=self.config.backoff_base,
            cap=self.config.backoff_max,
            retry_after=retry_after(exc),
            delay=delay,
            max_attempts=getattr(handler, "max_attempts", None),
        )
        if status is None:
            return
        await self.handlers[job.kind].finished(session, job, status, None, error)
        outcome = "retried" if status is JobStatus.QUEUED else "failed"
        JOB_OUTCOMES.labels(job.kind, outcome).inc()
        log.info("worker.job_" + outcome, job_id=str(job.id), attempts=job.attempts, error=error)
        if status is JobStatus.FAILED:
            queue.announce_finished(session, job)

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
            if job.kind not in self.handlers:
                continue
            log.warning("worker.lease_expired", job_id=str(job.id), worker=job.worker_id)
            # Fenced by the token read above: a job renewed or finished meanwhile is left be.
            async with self._locked(job) as session:
                await self._record_failure(session, job, LeaseExpired(), transient=True)
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
            if job is None:
                continue
            try:
                async with self._locked(job) as session:
                    if await queue.release(session, job):
                        await self.handlers[job.kind].finished(
                            session, job, JobStatus.QUEUED, None, None
                        )
                        signals.mark_queued(session)
            except Exception:
                log.exception("worker.release_failed", job_id=str(job.id))


class LeaseExpired(Exception):
    transient = True

    def __str__(self) -> str:
        return "the worker running this attempt stopped responding (lease expired)"


class SubjectGone(Exception):
    transient = False

    def __str__(self) -> str:
        return "what this job was about no longer exists"
