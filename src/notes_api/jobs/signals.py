"""In-process signals: wake idle workers after a commit that queued work, and tell waiters
that a job finished. Postgres NOTIFY (see listener.py) feeds the same signals across processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

# Postgres NOTIFY channels; a trigger on the jobs table sends on them (migration 20261130_0001).
QUEUED_CHANNEL = "notes_api_jobs_queued"
FINISHED_CHANNEL = "notes_api_jobs_finished"

_SESSION_QUEUED = "jobs.queued"
_SESSION_FINISHED = "jobs.finished"

FinishedListener = Callable[[str, str | None], None]

_wake_events: set[asyncio.Event] = set()
_finished_listeners: set[FinishedListener] = set()


def add_wake_event(evt: asyncio.Event) -> None:
    _wake_events.add(evt)


def remove_wake_event(evt: asyncio.Event) -> None:
    _wake_events.discard(evt)


def add_finished_listener(listener: FinishedListener) -> None:
    _finished_listeners.add(listener)


def remove_finished_listener(listener: FinishedListener) -> None:
    _finished_listeners.discard(listener)


def wake_workers() -> None:
    for evt in list(_wake_events):
        evt.set()


def job_finished(kind: str, dedupe_key: str | None) -> None:
    for listener in list(_finished_listeners):
        listener(kind, dedupe_key)


def mark_queued(session: Any) -> None:
    session.info[_SESSION_QUEUED] = True


def mark_finished(session: Any, kind: str, dedupe_key: str | None) -> None:
    session.info.setdefault(_SESSION_FINISHED, []).append((kind, dedupe_key))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_SESSION_QUEUED, False):
        wake_workers()
    for kind, key in session.info.pop(_SESSION_FINISHED, []):
        job_finished(kind, key)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_QUEUED, None)
    session.info.pop(_SESSION_FINISHED, None)
