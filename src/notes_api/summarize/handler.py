"""The summarize job kind: a note's summary. Each state change of the job is mirrored on its
note, and the note's event written, in the engine's transaction, so the status a client sees
is always the truth. (The API enqueues these jobs; notes/service.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.events.models import EventType
from notes_api.jobs.handler import Done, Ended, Failed, Outcome, Retry, RetryPolicy
from notes_api.jobs.models import Claimed, JobStatus
from notes_api.notes import outbox, repository
from notes_api.notes.models import SUMMARIZE, NoteStatus
from notes_api.summarize import usage
from notes_api.summarize.base import MeteredSummarizer, Summarizer, SummarizerError, Usage

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
    retry: RetryPolicy | None = None  # the worker's backoff, each job's max_attempts

    def __init__(self, summarizer: Summarizer) -> None:
        self.summarizer = summarizer
        # Asked once: a runtime Protocol check costs about as much as a short summary.
        self.metered = summarizer if isinstance(summarizer, MeteredSummarizer) else None

    async def lock(self, session: AsyncSession, jobs: Sequence[Claimed]) -> set[uuid.UUID]:
        found = await repository.lock_for_jobs(session, [_note_id(job) for job in jobs])
        return {job.id for job in jobs if _note_id(job) in found}

    async def start(self, session: AsyncSession, jobs: Sequence[Claimed]) -> list[Any]:
        states = [
            repository.JobState(_note_id(job), NoteStatus.PROCESSING, job.attempts) for job in jobs
        ]
        notes = await self._record(session, states)
        return [(n.raw_text, n.title) if (n := notes.get(_note_id(job))) else None for job in jobs]

    async def run(self, job: Claimed, subject: Any) -> Outcome:
        text, title = subject
        try:
            if self.metered is not None:
                return Done(await self.metered.summarize_metered(text, title=title))
            return Done((await self.summarizer.summarize(text, title=title), None))
        except SummarizerError as exc:
            error = str(exc) or type(exc).__name__
            return Retry(error, after=exc.retry_after) if exc.transient else Failed(error)

    async def record(self, session: AsyncSession, ended: Sequence[Ended]) -> None:
        states = []
        used: list[tuple[uuid.UUID, Usage]] = []
        for end in ended:
            job, note_id = end.job, _note_id(end.job)
            if end.outcome is None:  # given back unfinished: the attempt does not count
                states.append(repository.JobState(note_id, NoteStatus.QUEUED, job.attempts - 1))
                continue
            summary = None
            if isinstance(end.outcome, Done):
                summary, cost = end.outcome.result
                if cost is not None:
                    used.append((note_id, cost))
            status = _NOTE_STATUS[end.status]
            states.append(repository.JobState(note_id, status, job.attempts, summary, end.error))
        await self._record(session, states)
        for note_id, cost in used:
            await usage.record(session, note_id, cost)

    async def aclose(self) -> None:
        """The summarizer belongs to whoever built it (it is shared with the API)."""

    async def _record(
        self, session: AsyncSession, states: list[repository.JobState]
    ) -> dict[uuid.UUID, Any]:
        """The notes show their jobs' new states, and their events say so."""
        notes = await repository.record_job_states(session, states)
        status = {state.note_id: state.status for state in states}
        await outbox.record_many(session, [(_EVENT[status[n.id]], n) for n in notes])
        return {note.id: note for note in notes}


def _note_id(job: Claimed) -> uuid.UUID:
    return uuid.UUID(str(job.payload["note_id"]))
