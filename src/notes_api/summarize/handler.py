"""The summarize job: the one place where the job engine and notes meet. Each state change
of the job is mirrored on the note in the same transaction, so the status a client sees is
always the truth."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.events import outbox
from notes_api.events.models import EventType
from notes_api.jobs.handler import PermanentJobError
from notes_api.jobs.models import Job, JobStatus
from notes_api.notes import repository
from notes_api.notes.models import NoteStatus
from notes_api.summarize.base import Summarizer

_NOTE_STATUS = {
    JobStatus.DONE: NoteStatus.DONE,
    JobStatus.FAILED: NoteStatus.FAILED,
    JobStatus.QUEUED: NoteStatus.QUEUED,
}
_EVENT = {
    NoteStatus.DONE: EventType.DONE,
    NoteStatus.FAILED: EventType.FAILED,
    NoteStatus.QUEUED: EventType.QUEUED,
}


class SummarizeHandler:
    kind = "summarize"

    def __init__(self, summarizer: Summarizer) -> None:
        self.summarizer = summarizer

    async def started(self, session: AsyncSession, job: Job) -> Any:
        found = await repository.mark_processing(session, _note_id(job), job.attempts)
        if found is None:
            raise PermanentJobError("the note no longer exists")
        await outbox.record(session, EventType.PROCESSING, found)
        return found.raw_text, found.title

    async def run(self, job: Job, prepared: Any) -> Any:
        text, title = prepared
        return await self.summarizer.summarize(text, title=title)

    async def finished(
        self, session: AsyncSession, job: Job, status: JobStatus, result: Any, error: str | None
    ) -> None:
        note_status = _NOTE_STATUS.get(status)
        if note_status is not None:
            note = await repository.record_job_state(
                session,
                _note_id(job),
                note_status,
                attempts=job.attempts,
                summary=result,
                error=error,
            )
            if note is not None:
                await outbox.record(session, _EVENT[note_status], note)


def _note_id(job: Job) -> uuid.UUID:
    return uuid.UUID(str(job.payload["note_id"]))
