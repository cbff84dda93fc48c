"""Builds what both entry points share: the summarizer, and the worker (standalone or
embedded) with its job handlers and house-keeping."""

from __future__ import annotations

import gc
from datetime import timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth.service import purge_expired
from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.events.repository import purge_events
from notes_api.jobs.worker import Worker, WorkerConfig
from notes_api.limits.counter import purge_old_windows
from notes_api.notes import idempotency
from notes_api.summarize.base import Summarizer
from notes_api.summarize.factory import build_summarizer
from notes_api.summarize.handler import SummarizeHandler
from notes_api.webhooks.delivery import WebhookHandler
from notes_api.webhooks.service import purge_deliveries


def settle_memory() -> None:
    """Called once start-up is done, by the API and the standalone worker alike.

    What start-up made (modules, the app, its routes and schemas: ~150k objects) lives as
    long as the process: frozen, out of the collector's sight, full collections stop walking
    it. A request or a job then allocates a few thousand objects and frees nearly all of them
    by reference counting: at the default threshold (700 more allocations than frees) the
    collector still ran about 70 times a second under load, walking the objects of the
    requests in flight each time, 5% of the API's CPU; at 10,000 it runs a few times a
    minute, and what reference counting leaves (cycles) waits for it at most that long."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def make_summarizer(settings: Settings) -> Summarizer:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return build_summarizer(
        settings.summarizer,
        openai_base_url=settings.openai_base_url,
        openai_api_key=key,
        openai_model=settings.openai_model,
        openai_timeout=settings.openai_timeout,
        openai_max_input_tokens=settings.openai_max_input_tokens,
    )


def make_worker(db: Database, settings: Settings, summarizer: Summarizer) -> Worker:
    config = WorkerConfig(
        concurrency=settings.worker_concurrency,
        lease_seconds=settings.job_lease_seconds,
        poll_interval=settings.job_poll_interval,
        backoff_base=settings.job_backoff_base,
        backoff_max=settings.job_backoff_max,
        shutdown_grace=settings.job_shutdown_grace,
        retention=timedelta(hours=settings.job_retention_hours),
    )
    worker = Worker(db, [SummarizeHandler(summarizer), WebhookHandler(settings)], config)
    worker.add_periodic(300.0, idempotency.purge_expired)
    worker.add_periodic(300.0, lambda session: purge_expired(session, settings))
    worker.add_periodic(3600.0, purge_old_windows)
    worker.add_periodic(
        600.0, partial(purge_events_and_deliveries, hours=settings.event_retention_hours)
    )
    return worker


async def purge_events_and_deliveries(session: AsyncSession, *, hours: float) -> int:
    """Events, and the webhook attempt logs, older than the retention period."""
    older_than = utcnow() - timedelta(hours=hours)
    await purge_deliveries(session, older_than)
    return await purge_events(session, older_than)
