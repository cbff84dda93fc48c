"""Lets `GET /notes/{id}?wait=S` answer the moment a summary lands, without holding a
database connection or polling per request.

Waiters park on a future. Finished jobs resolve them through the job engine's signals (in
process for the embedded worker, Postgres NOTIFY for separate workers). As a fallback, one
task per process checks the statuses of every watched note in a single query."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict

import structlog

from notes_api.core.db import Database
from notes_api.jobs import signals
from notes_api.notes import repository

log = structlog.get_logger("notes_api.watcher")

_TERMINAL = {"done", "failed"}


class NoteWatcher:
    def __init__(self, db: Database, *, kind: str, poll_interval: float = 1.0) -> None:
        self.db = db
        self.kind = kind
        self.poll_interval = poll_interval
        self._waiters: defaultdict[uuid.UUID, set[asyncio.Future[None]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        # Set when the process begins to shut down: every wait, now or later, returns at once.
        self.closing = False

    def start(self) -> None:
        signals.add_finished_listener(self._on_finished)
        self._task = asyncio.create_task(self._poll(), name="note-watcher")

    def close(self) -> None:
        """Shutdown has begun: answer every long poll now, and let no new one wait."""
        self.closing = True
        self._resolve_all()

    async def stop(self) -> None:
        signals.remove_finished_listener(self._on_finished)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._resolve_all()

    async def wait(self, note_id: uuid.UUID, seconds: float) -> None:
        if self.closing:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[note_id].add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, seconds)
        finally:
            waiters = self._waiters.get(note_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[note_id]

    def _on_finished(self, kind: str, key: str | None) -> None:
        if kind == "*":  # the notification channel was re-established: re-check everything
            self._resolve_all()
        elif kind == self.kind and key:
            with contextlib.suppress(ValueError):
                self._resolve(uuid.UUID(key))

    def _resolve(self, note_id: uuid.UUID) -> None:
        for future in self._waiters.get(note_id, ()):
            if not future.done():
                future.set_result(None)

    def _resolve_all(self) -> None:
        for note_id in list(self._waiters):
            self._resolve(note_id)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if not self._waiters:
                continue
            try:
                async with self.db.session(write=False) as session:
                    statuses = await repository.status_of(session, list(self._waiters)[:500])
            except Exception:
                log.warning("watcher.poll_failed")
                continue
            for note_id, status in statuses.items():
                if status in _TERMINAL:
                    self._resolve(note_id)
