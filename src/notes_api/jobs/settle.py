"""Ending jobs: the outcomes of a batch of attempts written in one transaction (a group
commit: the worker collects the runs that ended within a few milliseconds and writes them
together), each fenced by its lease, in the lock order of jobs/handler.py."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.db import Database
from notes_api.jobs import queue, signals
from notes_api.jobs.handler import Done, Ended, JobKind, Outcome, Retry, RetryPolicy
from notes_api.jobs.metrics import JOB_OUTCOMES
from notes_api.jobs.models import Claimed, JobStatus

log = structlog.get_logger("notes_api.worker")

# An attempt's outcome, or None for an attempt given back unfinished (shutdown).
Result = tuple[Claimed, Outcome | None]


def by_kind(jobs: Sequence[Claimed]) -> dict[str, list[Claimed]]:
    """Jobs grouped by kind, the kinds in name order: every writer locks the subjects of
    one kind after another in that order, so two batches cannot wait on each other."""
    groups: dict[str, list[Claimed]] = defaultdict(list)
    for job in jobs:
        groups[job.kind].append(job)
    return dict(sorted(groups.items()))


async def settle(
    session: AsyncSession,
    kinds: Mapping[str, JobKind],
    policy: RetryPolicy,
    results: Sequence[Result],
    *,
    locked: bool = False,
) -> list[Ended]:
    """Write each attempt's outcome, fenced by its lease (an attempt that lost it changes
    nothing), and let each kind record what its ended jobs mean; `locked` when the caller
    has locked their subjects already. Returns the jobs that ended."""
    if not locked:
        for kind, batch in by_kind([job for job, _ in results]).items():
            await kinds[kind].lock(session, batch)
    done = [job for job, outcome in results if isinstance(outcome, Done)]
    given_back = [job for job, outcome in results if outcome is None]
    held = await queue.complete(session, done) | await queue.release(session, given_back)
    ended: list[Ended] = []
    for job, outcome in results:
        if isinstance(outcome, Done):
            status = JobStatus.DONE if job.id in held else None
        elif outcome is None:
            status = JobStatus.QUEUED if job.id in held else None
        else:
            status = await _failed(session, kinds[job.kind].retry or policy, job, outcome)
        if status is None:
            log.info("worker.result_discarded", job_id=str(job.id))
            continue
        ended.append(Ended(job, status, outcome))
    for kind, ends in _ended_by_kind(ended).items():
        await kinds[kind].record(session, ends)
    for end in ended:
        _announce(session, end)
    return ended


async def _failed(
    session: AsyncSession, policy: RetryPolicy, job: Claimed, outcome: Outcome
) -> JobStatus | None:
    if isinstance(outcome, Retry) and policy.allows_another(job):
        delay = policy.delay(job.attempts, outcome.after)
        return JobStatus.QUEUED if await queue.requeue(session, job, outcome.error, delay) else None
    assert not isinstance(outcome, Done)
    return JobStatus.FAILED if await queue.fail(session, job, outcome.error) else None


def _ended_by_kind(ended: list[Ended]) -> dict[str, list[Ended]]:
    groups: dict[str, list[Ended]] = defaultdict(list)
    for end in ended:
        groups[end.job.kind].append(end)
    return groups


def _announce(session: AsyncSession, end: Ended) -> None:
    job = end.job
    if end.outcome is None:
        signals.mark_queued(session)  # given back: another worker may take it now
        return
    outcome = {JobStatus.DONE: "done", JobStatus.FAILED: "failed"}.get(end.status, "retried")
    JOB_OUTCOMES.labels(job.kind, outcome).inc()
    if end.status is not JobStatus.QUEUED:
        queue.announce_finished(session, job)
    if outcome != "done":
        log.info(
            f"worker.job_{outcome}", job_id=str(job.id), attempts=job.attempts, error=end.error
        )


class GroupCommit:
    """Outcomes collected as runs end, written together: each round waits `window` seconds
    after the first outcome for others (none when nothing else is running), then writes
    every outcome it has in one transaction. A round that fails is logged and dropped: the
    leases of its jobs run out and the reaper puts them back, so no job is lost."""

    def __init__(
        self,
        db: Database,
        write: Callable[[AsyncSession, Sequence[Result]], Awaitable[list[Ended]]],
        *,
        window: float,
        busy: Callable[[], bool],
        written: Callable[[], None],
    ) -> None:
        self.db, self.write, self.window = db, write, window
        self.busy, self.written = busy, written
        self.pending: list[Result] = []
        self._arrived = asyncio.Event()
        self._closed = False

    def add(self, job: Claimed, outcome: Outcome | None) -> None:
        self.pending.append((job, outcome))
        self._arrived.set()

    def holds(self) -> list[Claimed]:
        return [job for job, _ in self.pending]

    def close(self) -> None:
        """`run` writes what it has and returns (the worker's runs have all ended)."""
        self._closed = True
        self._arrived.set()

    async def run(self, lock: asyncio.Lock) -> None:
        while not (self._closed and not self.pending):
            await self._arrived.wait()
            if self.busy() and not self._closed:
                await asyncio.sleep(self.window)
            await self.flush(lock)

    async def flush(self, lock: asyncio.Lock) -> None:
        batch, self.pending = self.pending, []
        self._arrived.clear()
        if not batch:
            return
        try:
            async with lock, self.db.session() as session:
                await self.write(session, batch)
        except Exception:
            log.exception("worker.settle_failed", jobs=len(batch))
        self.written()
