"""The contract between the job engine and a kind of job.

A kind says how it locks what its jobs are about (their subjects), what it records when they
start, how one runs, and what it records when they end. The engine works in batches: it
hands `lock`, `start` and `record` every job of the kind in one transaction, and a run says
how it went by its `Outcome` (done, retry after, failed), which carries whatever `record`
needs: nothing about a job is kept on the kind between calls.

Lock order: a job's subject (a note, say) is locked before the job's row, by every writer.
The API changes a subject and then its jobs; so before the engine changes a job's row, its
kind's `lock` locks the subjects, in one statement in id order, and no two transactions can
wait on each other."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.jobs.models import Claimed, JobStatus


@dataclass(frozen=True)
class Done:
    result: Any = None


@dataclass(frozen=True)
class Retry:
    """Another attempt may succeed, not sooner than `after` seconds when that is given (a
    `Retry-After`, say); once the attempts are spent the job fails with `error`."""

    error: str
    after: float | None = None
    detail: Any = None  # what `record` needs of this attempt (a delivery's log line)


@dataclass(frozen=True)
class Failed:
    """No attempt can succeed."""

    error: str
    detail: Any = None


Outcome = Done | Retry | Failed


class JobError(Exception):
    """The one way for code a job runs to say what its failure means: whether another
    attempt may succeed (`transient`), and how long it must wait at least (`retry_after`).
    Any other exception that escapes a run counts as transient (see `outcome_of`)."""

    transient: bool = True

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(JobError):
    transient = False


def outcome_of(exc: Exception) -> Retry | Failed:
    """The outcome of a run that raised `exc`."""
    error = str(exc) or type(exc).__name__
    if isinstance(exc, JobError) and not exc.transient:
        return Failed(error)
    after = exc.retry_after if isinstance(exc, JobError) else None
    return Retry(error, after=after)


@dataclass(frozen=True)
class RetryPolicy:
    """When a job that may succeed later runs again: exponential backoff from `base` up to
    `cap` seconds with equal jitter (half fixed, half random, so retries spread), never
    sooner than its `Retry.after`; at most `max_attempts` tries (None: the job's own)."""

    base: float
    cap: float
    max_attempts: int | None = None

    def delay(self, attempts: int, after: float | None = None) -> float:
        delay = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security
        return max(delay, after or 0.0)

    def allows_another(self, job: Claimed) -> bool:
        return job.attempts < (self.max_attempts or job.max_attempts)


@dataclass(frozen=True)
class Ended:
    """A job left `processing`: to `status` (done, failed, or queued again) after a run that
    went as `outcome`; `outcome` is None when the job was given back unfinished (shutdown)."""

    job: Claimed
    status: JobStatus
    outcome: Outcome | None

    @property
    def error(self) -> str | None:
        return None if isinstance(self.outcome, Done | None) else self.outcome.error


class JobKind(Protocol):
    """One kind of job. `lock`, `start` and `record` run inside the engine's transactions,
    so whatever they write commits together with the jobs' new states; `run` runs outside
    any. `retry` is the kind's retry policy, or None for the worker's."""

    kind: str
    retry: RetryPolicy | None

    async def lock(self, session: AsyncSession, jobs: Sequence[Claimed]) -> set[uuid.UUID]:
        """Lock the subjects of `jobs`, in one statement in id order: the ids of the jobs
        whose subject still exists."""

    async def start(self, session: AsyncSession, jobs: Sequence[Claimed]) -> list[Any]:
        """`jobs` are leased and their subjects locked: record that they started, and return
        what each one's `run` needs (in the same order)."""

    async def run(self, job: Claimed, subject: Any) -> Outcome:
        """The work itself, outside any transaction."""

    async def record(self, session: AsyncSession, ended: Sequence[Ended]) -> None:
        """`ended` left `processing` (their subjects are locked): record what that means."""

    async def aclose(self) -> None:
        """The worker has stopped: release what the kind holds (an HTTP client, say)."""
