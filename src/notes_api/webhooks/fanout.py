"""The delivery jobs of events: one per enabled endpoint of an event's organization that
subscribed to its type, enqueued in the events' own transaction by one INSERT ... SELECT
built by the engine's `queue.enqueue_each`. A job names what it delivers in its dedupe key,
`<event id>:<endpoint id>`, so at most one delivery of an event to an endpoint is live at a
time (the jobs' unique index); its fairness key is the organization, so one organization's
burst of deliveries takes turns with every other organization's jobs."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import BigInteger, ColumnElement, Integer, String, Table, bindparam, case, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Uuid

from notes_api.core.config import get_settings
from notes_api.jobs import queue
from notes_api.webhooks.models import EVENT_BITS, WebhookEndpoint

WEBHOOK = "webhook"

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


class uuid_text(FunctionElement[Any]):
    """A UUID column as `str(uuid)` writes it (the fairness key of an organization)."""

    type = String()
    inherit_cache = True


@compiles(uuid_text, "postgresql")
def _pg_uuid_text(element: Any, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS VARCHAR)"


@compiles(uuid_text, "sqlite")
def _sqlite_uuid_text(element: Any, compiler: Any, **kw: Any) -> str:
    hexed = compiler.process(element.clauses, **kw)
    parts = [f"substr({hexed}, {start}, {length})" for start, length in _GROUPS]
    return " || '-' || ".join(parts)


_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _dedupe_key(event_id: ColumnElement[Any], endpoint_id: ColumnElement[Any]) -> Any:
    return sql_cast(event_id, String) + ":" + sql_cast(endpoint_id, String)


def _deliveries(event_id: ColumnElement[Any], *conditions: ColumnElement[bool]) -> Any:
    rows = select(
        _dedupe_key(event_id, endpoints.c.id).label("dedupe_key"),
        uuid_text(endpoints.c.organization_id).label("fairness_key"),
        bindparam("hook_max_attempts", type_=Integer()).label("max_attempts"),
    ).where(*conditions)
    return queue.enqueue_each(WEBHOOK, rows, random_uuid())


def deliveries_of(events: Any, *conditions: ColumnElement[bool]) -> Any:
    """The INSERT of the delivery jobs of `events` (the events table, or a CTE of events just
    written: their `id`, `organization_id` and `type`). Parameters: `fan_out_params()`."""
    bit = case({kind.value: bit for kind, bit in EVENT_BITS.items()}, value=events.c.type, else_=0)
    return _deliveries(
        events.c.id,
        *conditions,
        endpoints.c.organization_id == events.c.organization_id,
        endpoints.c.enabled,
        endpoints.c.event_mask.op("&")(bit) != 0,
    )


# One more delivery of an event to one endpoint (no subscription test: asked for by hand).
_RESEND = _deliveries(
    bindparam("hook_event_id", type_=BigInteger()),
    endpoints.c.id == bindparam("hook_endpoint_id", type_=Uuid()),
    endpoints.c.organization_id == bindparam("hook_organization_id", type_=Uuid()),
)


def _max_attempts() -> int:
    """The rows say what the webhook kind's retry policy allows (the same setting)."""
    return get_settings().webhook_max_attempts


def fan_out_params() -> dict[str, Any]:
    """The parameters of a `deliveries_of` statement that the webhooks set."""
    return {"hook_max_attempts": _max_attempts(), **queue.enqueue_params()}


async def resend(session: AsyncSession, event_id: int, endpoint: WebhookEndpoint) -> None:
    """Queue one more delivery of an event to an endpoint, unless one is queued already."""
    params = {
        "hook_event_id": event_id,
        "hook_organization_id": endpoint.organization_id,
        "hook_endpoint_id": endpoint.id,
        "hook_max_attempts": _max_attempts(),
    }
    try:
        async with session.begin_nested():
            await queue.enqueue_selected(session, _RESEND, params)
    except IntegrityError:
        return  # the live delivery of this event to this endpoint will do
