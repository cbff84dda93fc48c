"""New events, announced after commit: in this process through `published`, in others
through Postgres NOTIFY on `CHANNEL` (see jobs/listener.py). A missed announcement only
delays a stream until the feed's next poll."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

CHANNEL = "notes_api_note_events"
_SESSION_KEY = "events.recorded"

Listener = Callable[[], None]
_listeners: set[Listener] = set()


def add_listener(listener: Listener) -> None:
    _listeners.add(listener)


def remove_listener(listener: Listener) -> None:
    _listeners.discard(listener)


def published() -> None:
    for listener in list(_listeners):
        listener()


def mark_recorded(session: Any) -> None:
    session.info[_SESSION_KEY] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_SESSION_KEY, False):
        published()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)
