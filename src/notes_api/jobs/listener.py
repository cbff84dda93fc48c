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


async def listen_forever(
    sqlalchemy_url: str,
    *,
    retry_max: float = 10.0,
    channels: Mapping[str, Handler] | None = None,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """LISTEN on the job engine's channels, and on `channels` for other parts of the process
    (each called with a notification's payload, and with "*" once listening, when anything
    may have been missed): one connection for all of them. `on_lost` is called whenever the
    connection is lost, before it is tried again."""
    url = libpq_url(sqlalchemy_url)
    others = dict(channels or {})
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, prepare_threshold=None
            ) as conn:
                await conn.execute(f"LISTEN {signals.QUEUED_CHANNEL}")
                await conn.execute(f"LISTEN {signals.FINISHED_CHANNEL}")
                for channel in others:
                    await conn.execute(f"LISTEN {channel}")
                delay = 0.5
                # Anything sent while we were away is found by the workers' next claim.
                signals.wake_workers()
                signals.job_finished("*", None)
                for handler in others.values():
                    handler("*")
                async for note in conn.notifies():
                    if note.channel in others:
                        others[note.channel](note.payload)
                    else:
                        _dispatch(note.channel, note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_lost is not None:
                on_lost()
            log.warning("listener.disconnected", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(retry_max, delay * 2)


def _dispatch(channel: str, payload: str) -> None:
    if channel == signals.QUEUED_CHANNEL:
        signals.wake_workers()
    elif channel == signals.FINISHED_CHANNEL:
        kind, _, key = payload.partition(":")
        signals.job_finished(kind, key or None)
