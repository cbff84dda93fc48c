"""Liveness, readiness and metrics."""

from __future__ import annotations

import hmac

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.deps import UnitOfWorkRoute
from notes_api.core.errors import ServiceUnavailable, Unauthorized
from notes_api.core.migrations import current_revision
from notes_api.core.openapi import errors
from notes_api.jobs import queue
from notes_api.jobs.metrics import QUEUE_DEPTH

log = structlog.get_logger("notes_api.ops")

router = APIRouter(route_class=UnitOfWorkRoute, tags=["operations"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    database: str
    migration: str | None


@router.get("/healthz")
async def healthz() -> Health:
    """The process is alive (does not touch the database)."""
    return Health(status="ok")


@router.get("/readyz", responses=errors(503, details={503: "The database is unreachable"}))
async def readyz(request: Request) -> Ready:
    """The database answers and its schema is at the latest migration."""
    db: Database = request.app.state.db
    head: str | None = request.app.state.migration_head
    try:
        async with db.session(write=False) as session:
            current = await current_revision(await session.connection())
    except Exception:
        raise ServiceUnavailable("The database is unreachable") from None
    if current != head:
        raise ServiceUnavailable(f"The database schema is at {current}, expected {head}")
    return Ready(status="ok", database=db.engine.dialect.name, migration=current)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
        **errors(401, details={401: "This endpoint needs the metrics token"}, database=False),
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: HTTP traffic, jobs waiting and running, job durations and outcomes.
    With METRICS_TOKEN set, send it as a bearer token; in production, without it, this
    answers 401 to everyone (per-route counts tell a stranger how the login is answering)."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token is None and settings.app_env == "production":
        raise Unauthorized("Metrics are off: set METRICS_TOKEN to read them in production")
    if settings.metrics_token is not None:
        sent = request.headers.get("authorization", "")
        expected = "Bearer " + settings.metrics_token.get_secret_value()
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized("This endpoint needs the metrics token")
    db: Database = request.app.state.db
    try:
        async with db.session(write=False) as session:
            depth = await queue.active_depth(session)
        for status, count in depth.items():
            QUEUE_DEPTH.labels(status).set(count)
    except Exception as exc:  # metrics must still answer while the database is away
        log.warning("metrics.queue_depth_unavailable", error=type(exc).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
