"""The application factory: routers, error handlers, middleware, and the lifespan that owns
the database, the wait-for-result watcher and (by default) an embedded worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from notes_api import __version__
from notes_api.auth.router import router as auth_router
from notes_api.bootstrap import bootstrap_admin
from notes_api.core import docs, handlers, openapi
from notes_api.core.config import Settings, get_settings
from notes_api.core.db import Database
from notes_api.core.logging import configure_logging
from notes_api.core.middleware import RequestContext
from notes_api.core.migrations import head_revision
from notes_api.events import signals as event_signals
from notes_api.jobs.listener import job_channels, listen_forever
from notes_api.notes.models import SUMMARIZE
from notes_api.notes.router import router as notes_router
from notes_api.notes.watcher import NoteWatcher
from notes_api.ops import router as ops_router
from notes_api.runtime import make_summarizer, make_worker, settle_memory
from notes_api.streams.feed import Feed
from notes_api.streams.router import router as events_router
from notes_api.summarize.router import router as usage_router
from notes_api.users import callers
from notes_api.users.callers import CallerRecord
from notes_api.users.passwords import Passwords
from notes_api.users.router import router as users_router
from notes_api.webhooks.router import router as webhooks_router

log = structlog.get_logger("notes_api")

MAX_BODY_BYTES = 1024 * 1024
BODY_READ_TIMEOUT = 30.0  # seconds a request body may stall before a 408

DESCRIPTION = """
Notes for CRMs, each summarized in the background.

1. `POST /auth/signup` (or **Authorize** above with an existing account: the email goes in
   *username*).
2. `POST /notes` answers `202` with the note `queued`.
3. `GET /notes/{id}?wait=10` answers when the summary is `done` (or `failed`).

Agents see their own notes; admins see all notes of their organization. Errors are
[RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Shutdown runs in this order: on the signal (`server.Server`), `begin_shutdown` stops
    the embedded worker claiming, answers the long polls and ends the event streams; uvicorn
    then drains the open requests; then the code after `yield` lets running jobs finish or
    hands them back within JOB_SHUTDOWN_GRACE, and closes the rest."""
    settings: Settings = app.state.settings
    db = Database(settings)
    app.state.db = db
    app.state.passwords = Passwords(settings)
    app.state.migration_head = head_revision()
    # On Postgres the record comes alive once the listener below is listening.
    record = CallerRecord(settings.caller_record_seconds, live=db.is_sqlite)
    app.state.callers = record
    callers.add_listener(record.forget)
    watcher = NoteWatcher(db, kind=SUMMARIZE)
    app.state.note_watcher = watcher
    feed = Feed(
        db,
        per_user=settings.event_streams_per_user,
        per_process=settings.event_streams_per_process,
        per_organization=settings.event_streams_per_organization,
        poll_interval=settings.event_poll_interval,
    )
    app.state.event_feed = feed
    background: list[asyncio.Task[None]] = []
    await bootstrap_admin(db, settings, app.state.passwords)
    watcher.start()
    feed.start()
    if not db.is_sqlite:
        channels = {
            **job_channels(queued=settings.worker_embedded, finished=True),
            event_signals.CHANNEL: lambda _payload: event_signals.published(),
            callers.CHANNEL: record.on_notify,
        }
        listener = listen_forever(settings.async_direct_url, channels, on_lost=record.on_lost)
        background.append(asyncio.create_task(listener))
    summarizer = worker = worker_task = None
    if settings.worker_embedded:
        summarizer = make_summarizer(settings)
        worker = make_worker(db, settings, summarizer)
        worker_task = asyncio.create_task(worker.run(), name="embedded-worker")
    loop = asyncio.get_running_loop()

    def stop_taking_work() -> None:
        if worker is not None:
            worker.stop()
        watcher.close()
        feed.close()

    # Called from a signal handler: hand the work to the event loop.
    app.state.begin_shutdown = lambda: loop.call_soon_threadsafe(stop_taking_work)
    settle_memory()
    log.info(
        "app.started", database=db.engine.dialect.name, embedded_worker=settings.worker_embedded
    )
    try:
        yield
    finally:
        stop_taking_work()
        if worker_task is not None:
            await worker_task  # running jobs finish or are handed back within the grace
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if summarizer is not None:
            await summarizer.aclose()
        await watcher.stop()
        await feed.stop()
        await db.dispose()
        callers.remove_listener(record.forget)
        app.state.passwords.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)
    app = FastAPI(
        title="Notes API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        debug=False,
        # Swagger UI is served from the service's own files (core/docs.py), ReDoc not at all.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_tags=[
            {"name": tag}
            for tag in (
                "auth",
                "users",
                "notes",
                "events",
                "webhooks",
                "organizations",
                "operations",
            )
        ],
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry hooks would only cost
        # three provider look-ups per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    handlers.install(app)
    openapi.install(app)
    # The notes routes are matched first: they carry the traffic, and each route tried
    # before the right one costs a pattern match. (`/users/me` must stay before `/users/{id}`.)
    # The two event streams come before them: `/notes/events` is not a note's id.
    routers = (
        events_router,
        notes_router,
        auth_router,
        users_router,
        webhooks_router,
        usage_router,
        ops_router,
    )
    for router in routers:
        app.include_router(router)
    docs.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=[
                "Location",
                "Idempotent-Replayed",
                "Retry-After",
                "RateLimit",
                "RateLimit-Policy",
                "X-Request-ID",
            ],
        )
    app.add_middleware(
        RequestContext,
        max_bytes=MAX_BODY_BYTES,
        read_timeout=BODY_READ_TIMEOUT,
        deadline_seconds=settings.request_timeout,
    )
    return app
