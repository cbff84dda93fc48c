from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.jobs.models import Job, JobStatus


class JobError(Exception):
    """Raise from a handler to say whether another attempt may succeed, and (`retry_after`,
    seconds) how long the next one must wait at least."""

    transient: bool = True
    retry_after: float | None = None

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(JobError):
    transient = False


def is_transient(exc: BaseException) -> bool:
    """Errors say so with a `transient` attribute; anything else is assumed to pass."""
    return bool(getattr(exc, "transient", True))


def retry_after(exc: BaseException) -> float | None:
    """The least wait an error asks for before the next attempt (a `retry_after` attribute,
    as `JobError` and the summarizer's errors carry), if any."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value > 0 else None


class JobHandler(Protocol):
    """One kind of job. `lock`, `started` and `finished` run inside the engine's own
    transactions, so whatever they write commits together with the job's new state.

    Lock order: whatever a job is about (its subject: a note, say) is locked before the job
    row, by every writer. The API changes a subject and then its jobs; so before the engine
    changes a job's row it calls `lock`, and no two transactions can wait on each other.

    A handler may also set its own retry policy: `max_attempts` (an int, instead of the
    job's) and `retry_delay(attempts) -> seconds` (instead of the worker's backoff), and
    an `aclose()` that the worker awaits once it has stopped (to close an HTTP client)."""

    kind: str

    async def lock(self, session: AsyncSession, job: Job) -> bool:
        """Lock the job's subject; False when it is gone."""

    async def started(self, session: AsyncSession, job: Job) -> Any:
        """The job was claimed and its subject is locked: returns what `run` needs."""

    async def run(self, job: Job, subject: Any) -> Any:
        """The work itself, outside any transaction."""

    async def finished(
        self, session: AsyncSession, job: Job, status: JobStatus, result: Any, error: str | None
    ) -> None:
        """The job moved to `status` (done, failed, or queued again for a retry)."""
