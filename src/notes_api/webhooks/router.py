from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from notes_api.core.deps import UnitOfWorkRoute
from notes_api.core.openapi import errors
from notes_api.users.deps import AdminWork
from notes_api.webhooks import service
from notes_api.webhooks.schemas import (
    DeliveryPage,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookPublic,
    WebhookSecret,
    WebhookUpdate,
)

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/webhooks", tags=["webhooks"])
# The examples of this router's errors (core/openapi.py).
_FULL = "An organization may have at most 10 webhook endpoints"
_HOOK = {404: "Webhook endpoint not found"}
_RESEND = {**_HOOK, 409: "This endpoint is disabled; enable it first"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 409, 413, 422, details={409: _FULL}),
)
async def create_webhook(body: WebhookCreate, work: AdminWork) -> WebhookCreated:
    """Register an endpoint for your organization's note events (admins only). The answer
    holds the signing secret: it is shown only here."""
    return await service.create(
        work.session,
        work.caller,
        body,
        allow_private=work.settings.webhook_allow_private,
        limit=work.settings.webhook_max_endpoints,
    )


@router.get("", responses=errors(401, 403))
async def list_webhooks(work: AdminWork) -> WebhookPage:
    """Your organization's endpoints (admins only)."""
    return WebhookPage(items=await service.list_endpoints(work.session, work.caller))


@router.get("/{webhook_id}", responses=errors(401, 403, 404, 422, details=_HOOK))
async def get_webhook(webhook_id: uuid.UUID, work: AdminWork) -> WebhookPublic:
    """One endpoint; `disabled_reason` says why it stopped receiving, if it did."""
    return await service.get(work.session, work.caller, webhook_id)


@router.patch("/{webhook_id}", responses=errors(400, 401, 403, 404, 413, 422, details=_HOOK))
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    work: AdminWork,
) -> WebhookPublic:
    """Change an endpoint; `enabled: true` turns a disabled one back on."""
    return await service.update(
        work.session,
        work.caller,
        webhook_id,
        body,
        allow_private=work.settings.webhook_allow_private,
    )


@router.post("/{webhook_id}/rotate-secret", responses=errors(401, 403, 404, 422, details=_HOOK))
async def rotate_webhook_secret(webhook_id: uuid.UUID, work: AdminWork) -> WebhookSecret:
    """A new signing secret. For 24 hours deliveries carry signatures by both the new and
    the previous one, so receivers can switch at their pace."""
    return WebhookSecret(secret=await service.rotate_secret(work.session, work.caller, webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 422, details=_HOOK),
)
async def delete_webhook(webhook_id: uuid.UUID, work: AdminWork) -> Response:
    await service.delete(work.session, work.caller, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", responses=errors(401, 403, 404, 422, details=_HOOK))
async def list_deliveries(
    webhook_id: uuid.UUID,
    work: AdminWork,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    """Delivery attempts to this endpoint, newest first: status code, latency, error."""
    return await service.list_deliveries(
        work.session, work.caller, webhook_id, limit=limit, cursor=cursor
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/resend",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409, 422, details=_RESEND),
)
async def resend_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, work: AdminWork
) -> Response:
    """Deliver that attempt's event again."""
    await service.resend(work.session, work.caller, webhook_id, delivery_id)
    return Response(status_code=status.HTTP_202_ACCEPTED)
