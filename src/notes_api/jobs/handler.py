from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.jobs.models import Job, JobStatus


class JobError(Exception):
    """Raise from a handler to say whether another attempt may succeed, and (`retry_after`,
    seconds) when, if the other side said so."""

    transient: bool = True

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentJobError(JobError):
    transient = False


def is_transient(exc: BaseException) -> bool:
    """Errors say so with a `transient` attribute; anything else is assumed to pass."""
    return bool(getattr(exc, "transient", True))


class JobHandler(Protocol):
    """One kind of job. `started` and `finished` run inside the engine's own transactions,
    so whatever they write commits together with the job's new state.

    A handler may also set its own retry policy: `max_attempts` (an int, instead of the
    job's) and `retry_delay(attempts) -> seconds` (instead of the worker's backoff)."""

    kind: str

    async def started(self, session: AsyncSession, job: Job) -> Any:
        """The job was claimed; returns what `run` needs. Raise PermanentJobError to give up."""

    async def run(self, job: Job, prepared: Any) -> Any:
        """The work itself, outside any transaction."""

    async def finished(
        self, session: AsyncSession, job: Job, status: JobStatus, result: Any, error: str | None
    ) -> None:
        """The job moved to `status` (done, failed, or queued again for a retry)."""
