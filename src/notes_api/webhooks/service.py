"""Webhook endpoints of an organization, managed by its admins. Every query here is scoped
by `_endpoint` or by the admin's organization: another organization's endpoint is 404."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.errors import Conflict, InvalidInput, NotFound
from notes_api.core.identity import Caller
from notes_api.core.models import utcnow
from notes_api.core.pagination import keyset_page, split_page
from notes_api.events import repository as event_log
from notes_api.events.models import EventType
from notes_api.organizations import service as organizations
from notes_api.webhooks import fanout
from notes_api.webhooks.models import EVENT_BITS, WebhookDelivery, WebhookEndpoint
from notes_api.webhooks.schemas import (
    DeliveryPage,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from notes_api.webhooks.signing import new_secret
from notes_api.webhooks.targets import TargetRefused, check_url

ROTATION_OVERLAP = timedelta(hours=24)


def _mask(events: list[EventType]) -> int:
    return sum(EVENT_BITS[e] for e in set(events))


def public(endpoint: WebhookEndpoint) -> WebhookPublic:
    events = [e for e in EventType if endpoint.event_mask & EVENT_BITS[e]]
    return WebhookPublic(
        id=endpoint.id,
        url=endpoint.url,
        events=events,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _checked(url: str, allow_private: bool) -> str:
    try:
        return check_url(url, allow_private=allow_private)
    except TargetRefused as exc:
        raise InvalidInput(
            f"This URL cannot receive webhooks: {exc}",
            errors=[{"loc": ["body", "url"], "msg": str(exc)}],
        ) from None


async def _endpoint(
    session: AsyncSession, admin: Caller, endpoint_id: uuid.UUID, *, for_update: bool = False
) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.organization_id == admin.organization_id,
    )
    found = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if found is None:
        raise NotFound("Webhook endpoint not found")
    return found


async def create(
    session: AsyncSession, admin: Caller, body: WebhookCreate, *, allow_private: bool, limit: int
) -> WebhookCreated:
    url = _checked(body.url, allow_private)
    # The organization's row is the lock two concurrent creations take turns at.
    await organizations.lock(session, admin.organization_id)
    count = await session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == admin.organization_id)
    )
    if (count or 0) >= limit:
        raise Conflict(f"An organization may have at most {limit} webhook endpoints")
    endpoint = WebhookEndpoint(
        organization_id=admin.organization_id,
        url=url,
        description=body.description,
        event_mask=_mask(body.events),
        enabled=True,
        secret=new_secret(),
        consecutive_failures=0,
    )
    session.add(endpoint)
    await session.flush()
    return WebhookCreated(**public(endpoint).model_dump(), secret=endpoint.secret)


async def list_endpoints(session: AsyncSession, admin: Caller) -> list[WebhookPublic]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.organization_id == admin.organization_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return [public(e) for e in rows]


async def get(session: AsyncSession, admin: Caller, endpoint_id: uuid.UUID) -> WebhookPublic:
    return public(await _endpoint(session, admin, endpoint_id))


async def update(
    session: AsyncSession,
    admin: Caller,
    endpoint_id: uuid.UUID,
    body: WebhookUpdate,
    *,
    allow_private: bool,
) -> WebhookPublic:
    endpoint = await _endpoint(session, admin, endpoint_id, for_update=True)
    fields = body.model_fields_set
    if body.url is not None:
        endpoint.url = _checked(body.url, allow_private)
    if body.events is not None:
        endpoint.event_mask = _mask(body.events)
    if "description" in fields:
        endpoint.description = body.description
    if body.enabled is not None:
        endpoint.enabled = body.enabled
        if body.enabled:
            endpoint.disabled_reason, endpoint.consecutive_failures = None, 0
        else:
            endpoint.disabled_reason = "disabled by an administrator"
    endpoint.updated_at = utcnow()
    await session.flush()
    return public(endpoint)


async def rotate_secret(session: AsyncSession, admin: Caller, endpoint_id: uuid.UUID) -> str:
    endpoint = await _endpoint(session, admin, endpoint_id, for_update=True)
    now = utcnow()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.flush()
    return endpoint.secret


async def delete(session: AsyncSession, admin: Caller, endpoint_id: uuid.UUID) -> None:
    endpoint = await _endpoint(session, admin, endpoint_id, for_update=True)
    await session.delete(endpoint)
    await session.flush()


async def list_deliveries(
    session: AsyncSession, admin: Caller, endpoint_id: uuid.UUID, *, limit: int, cursor: str | None
) -> DeliveryPage:
    endpoint = await _endpoint(session, admin, endpoint_id)
    stmt = keyset_page(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id),
        WebhookDelivery.created_at,
        WebhookDelivery.id,
        cursor=cursor,
        limit=limit,
        newest_first=True,
    )
    rows = list((await session.scalars(stmt)).all())
    page, next_cursor = split_page(rows, limit)
    items = [DeliveryPublic.model_validate(d) for d in page]
    return DeliveryPage(items=items, next_cursor=next_cursor)


async def resend(
    session: AsyncSession, admin: Caller, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> None:
    """Deliver that attempt's event to the endpoint again (once more, as a new job). When a
    delivery of it is already queued, that one stands."""
    endpoint = await _endpoint(session, admin, endpoint_id)
    delivery = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    )
    if delivery is None:
        raise NotFound("Delivery not found")
    if not endpoint.enabled:
        raise Conflict("This endpoint is disabled; enable it first")
    # The log names the event by its number in the organization (`seq`).
    event_id = await event_log.id_of(session, endpoint.organization_id, delivery.event_id)
    if event_id is None:
        raise Conflict("This event is no longer kept (EVENT_RETENTION_HOURS)")
    await fanout.resend(session, event_id, endpoint)


async def purge_deliveries(session: AsyncSession, older_than: datetime) -> None:
    """House-keeping: the attempt logs older than the events' retention period."""
    stmt = sql_delete(WebhookDelivery).where(WebhookDelivery.created_at < older_than)
    await session.execute(stmt)
