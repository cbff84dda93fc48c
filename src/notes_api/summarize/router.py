"""`GET /organizations/me/usage`: an organization's notes created and what their summaries
cost, for its admins (summarize/usage.py)."""

from __future__ import annotations

from fastapi import APIRouter

from notes_api.core.deps import UnitOfWorkRoute
from notes_api.core.openapi import errors
from notes_api.summarize import usage
from notes_api.summarize.schemas import OrganizationUsagePublic
from notes_api.users.deps import AdminWork

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/organizations", tags=["organizations"])


@router.get("/me/usage", responses=errors(401, 403))
async def my_usage(work: AdminWork) -> OrganizationUsagePublic:
    """Your organization's notes created, model calls and tokens, today and this month
    (UTC). Administrators only."""
    return await usage.usage_of(work.session, work.caller.organization_id)
