"""Postgres LISTEN: turns other processes' NOTIFYs into this process's signals.

It needs a real session, so it connects to DATABASE_URL_DIRECT when given: a transaction-mode
pooler (Neon's `-pooler` host) cannot hold a LISTEN. A lost notification only delays work
until the next poll, so this is an accelerator, never the source of truth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import psycopg
import structlog
from sqlalchemy.engine import make_url

from notes_api.jobs import signals

log = structlog.get_logger("notes_api.listener")


def libpq_url(sqlalchemy_url: str) -> str:
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


Handler = Callable[[str], None]


def job_channels(*, queued: bool, finished: bool) -> dict[str, Handler]:
    """The job engine's channels, for a process that runs a worker (`queued`: a new job
    wakes it) or that waits for jobs to end (`finished`: `GET /notes/{id}?wait`). A process
    listens to what it uses only: every job sends on both, and each notification heard is
    work for the listening process and for Postgres."""
    channels: dict[str, Handler] = {}
    if queued:
        channels[signals.QUEUED_CHANNEL] = lambda _payload: signals.wake_workers()
    if finished:
        channels[signals.FINISHED_CHANNEL] = _finished
    return channels


def _finished(payload: str) -> None:
    kind, _, key = payload.partition(":")
    signals.job_finished(kind, key or None)  # "*" (listening anew): any job may have ended


async def listen_forever(
    sqlalchemy_url: str,
    channels: Mapping[str, Handler],
    *,
    retry_max: float = 10.0,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """LISTEN on `channels` (each handler called with a notification's payload, and with "*"
    once listening, when anything may have been missed): one connection for all of them.
    `on_lost` is called whenever the connection is lost, before it is tried again."""
    url = libpq_url(sqlalchemy_url)
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, prepare_threshold=None
            ) as conn:
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                delay = 0.5
                # Anything may have been sent while we were away: each handler hears "*".
                for handler in channels.values():
                    handler("*")
                async for note in conn.notifies():
                    channels[note.channel](note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_lost is not None:
                on_lost()
            log.warning("listener.disconnected", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(retry_max, delay * 2)
