"""The summarize job: the one place where the job engine and notes meet. Each state change
of the job is mirrored on the note in the same transaction, so the status a client sees is
always the truth."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.events import outbox
from notes_api.events.models import EventType
from notes_api.jobs.models import Job, JobStatus
from notes_api.notes import repository
from notes_api.notes.models import SUMMARIZE, NoteStatus
from notes_api.summarize import usage
from notes_api.summarize.base import MeteredSummarizer, Summarizer, Usage

_EVENT = {
    NoteStatus.PROCESSING: EventType.PROCESSING,
    NoteStatus.DONE: EventType.DONE,
    NoteStatus.FAILED: EventType.FAILED,
    NoteStatus.QUEUED: EventType.QUEUED,
}
_NOTE_STATUS = {
    JobStatus.DONE: NoteStatus.DONE,
    JobStatus.FAILED: NoteStatus.FAILED,
    JobStatus.QUEUED: NoteStatus.QUEUED,
}


class SummarizeHandler:
    kind = SUMMARIZE

    def __init__(self, summarizer: Summarizer) -> None:
        self.summarizer = summarizer

    async def lock(self, session: AsyncSession, job: Job) -> bool:
        return await repository.lock_for_job(session, _note_id(job))

    async def started(self, session: AsyncSession, job: Job) -> Any:
        note = await self._record(session, job, NoteStatus.PROCESSING)
        return (note.raw_text, note.title) if note is not None else None

    async def run(self, job: Job, subject: Any) -> tuple[str, Usage | None]:
        text, title = subject
        if isinstance(self.summarizer, MeteredSummarizer):
            return await self.summarizer.summarize_metered(text, title=title)
        return await self.summarizer.summarize(text, title=title), None

    async def finished(
        self, session: AsyncSession, job: Job, status: JobStatus, result: Any, error: str | None
    ) -> None:
        note_status = _NOTE_STATUS.get(status)
        summary, used = result if result is not None else (None, None)
        if note_status is not None:
            await self._record(session, job, note_status, summary=summary, error=error)
        if used is not None:
            await usage.record(session, _note_id(job), used)

    async def _record(
        self,
        session: AsyncSession,
        job: Job,
        status: NoteStatus,
        *,
        summary: str | None = None,
        error: str | None = None,
    ) -> Row[Any] | None:
        """The note shows the job's new state, and its event says so, in one transaction."""
        note = await repository.record_job_state(
            session, _note_id(job), status, attempts=job.attempts, summary=summary, error=error
        )
        if note is not None:
            await outbox.record(session, _EVENT[status], note)
        return note


def _note_id(job: Job) -> uuid.UUID:
    return uuid.UUID(str(job.payload["note_id"]))
