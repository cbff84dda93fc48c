"""The delivery jobs of an event: one per enabled endpoint of the event's organization that
subscribed to its type, inserted in the event's own transaction by one INSERT ... SELECT.
A job names what it delivers in its dedupe key, `<event id>:<endpoint id>`, so at most one
delivery of an event to an endpoint is live at a time (the jobs' unique index)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Insert,
    String,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Uuid

from notes_api.core.models import utcnow
from notes_api.events.models import EventType
from notes_api.jobs import signals
from notes_api.jobs.models import Job, JobStatus
from notes_api.webhooks.models import EVENT_BITS, WebhookEndpoint

WEBHOOK = "webhook"
# What a delivery job's row says; the handler's own `max_attempts` (a setting) decides.
ROW_MAX_ATTEMPTS = 24

jobs = cast(Table, Job.__table__)
endpoints = cast(Table, WebhookEndpoint.__table__)


class random_uuid(FunctionElement[Any]):
    type = Uuid()
    inherit_cache = True


@compiles(random_uuid, "postgresql")
def _pg_uuid(element: Any, compiler: Any, **kw: Any) -> str:
    return "gen_random_uuid()"


@compiles(random_uuid, "sqlite")
def _sqlite_uuid(element: Any, compiler: Any, **kw: Any) -> str:
    # The Uuid type stores 32 lowercase hex digits on SQLite.
    return "lower(hex(randomblob(16)))"


def dedupe_key(event_id: ColumnElement[Any], endpoint_id: ColumnElement[Any]) -> Any:
    return sql_cast(event_id, String) + ":" + sql_cast(endpoint_id, String)


def delivery_jobs(
    event_id: ColumnElement[Any],
    organization_id: ColumnElement[Any],
    *sources: Any,
    only_endpoint: bool = False,
) -> Insert:
    """INSERT the delivery jobs of the event `event_id` (a column of `sources`, or a bound
    parameter). Parameters: `hook_bit`, `hook_now` (and `hook_endpoint_id` with
    `only_endpoint`, for a resend, which skips the subscription test)."""
    now = bindparam("hook_now", type_=jobs.c.run_after.type)
    conditions: list[ColumnElement[bool]] = [endpoints.c.organization_id == organization_id]
    if only_endpoint:
        conditions.append(endpoints.c.id == bindparam("hook_endpoint_id", type_=Uuid()))
    else:
        conditions += [
            endpoints.c.enabled,
            endpoints.c.event_mask.op("&")(bindparam("hook_bit")) != 0,
        ]
    rows = select(
        random_uuid(),
        bindparam("hook_kind", WEBHOOK, type_=String()),
        bindparam("hook_payload", {}, type_=JSON()),
        dedupe_key(event_id, endpoints.c.id),
        bindparam("hook_status", JobStatus.QUEUED, type_=jobs.c.status.type),
        bindparam("hook_attempts", 0),
        bindparam("hook_max_attempts", ROW_MAX_ATTEMPTS),
        now,
        now,
        now,
    ).where(*conditions)
    if sources:
        rows = rows.select_from(*sources, endpoints)
    columns = [
        "id",
        "kind",
        "payload",
        "dedupe_key",
        "status",
        "attempts",
        "max_attempts",
        "run_after",
        "created_at",
        "updated_at",
    ]
    return insert(jobs).from_select(columns, rows)


def hook_params(event_type: str) -> dict[str, Any]:
    return {"hook_bit": EVENT_BITS[EventType(event_type)], "hook_now": utcnow()}


_RESEND = delivery_jobs(
    bindparam("hook_event_id", type_=BigInteger()),
    bindparam("hook_organization_id", type_=Uuid()),
    only_endpoint=True,
)


async def resend(session: AsyncSession, event_id: int, endpoint: WebhookEndpoint) -> None:
    """Queue one more delivery of an event to an endpoint, unless one is queued already."""
    params = {
        "hook_now": utcnow(),
        "hook_event_id": event_id,
        "hook_organization_id": endpoint.organization_id,
        "hook_endpoint_id": endpoint.id,
    }
    try:
        async with session.begin_nested():
            await session.execute(_RESEND, params)
    except IntegrityError:
        return  # the live delivery of this event to this endpoint will do
    signals.mark_queued(session)
