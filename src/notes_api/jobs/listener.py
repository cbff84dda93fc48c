"""Postgres LISTEN: turns other processes' NOTIFYs into this process's signals.

It needs a real session, so it connects to DATABASE_URL_DIRECT when given: a transaction-mode
pooler (Neon's `-pooler` host) cannot hold a LISTEN. A lost notification only delays work
until the next poll, so this is an accelerator, never the source of truth."""

from __future__ import annotations

import asyncio

import psycopg
import structlog
from sqlalchemy.engine import make_url

from notes_api.jobs import signals

log = structlog.get_logger("notes_api.listener")


def libpq_url(sqlalchemy_url: str) -> str:
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


async def listen_forever(sqlalchemy_url: str, *, retry_max: float = 10.0) -> None:
    url = libpq_url(sqlalchemy_url)
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, prepare_threshold=None
            ) as conn:
                await conn.execute(f"LISTEN {signals.QUEUED_CHANNEL}")
                await conn.execute(f"LISTEN {signals.FINISHED_CHANNEL}")
                delay = 0.5
                # Anything sent while we were away is found by the workers' next claim.
                signals.wake_workers()
                signals.job_finished("*", None)
                async for note in conn.notifies():
                    _dispatch(note.channel, note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listener.disconnected", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(retry_max, delay * 2)


def _dispatch(channel: str, payload: str) -> None:
    if channel == signals.QUEUED_CHANNEL:
        signals.wake_workers()
    elif channel == signals.FINISHED_CHANNEL:
        kind, _, key = payload.partition(":")
        signals.job_finished(kind, key or None)
