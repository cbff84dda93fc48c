from __future__ import annotations

from fastapi import APIRouter

from notes_api.auth.deps import AdminCaller
from notes_api.core.deps import SessionDep
from notes_api.core.openapi import errors
from notes_api.organizations import usage
from notes_api.organizations.schemas import OrganizationUsagePublic

router = APIRouter(prefix="/organizations", tags=["organizations"])


@router.get("/me/usage", responses=errors(401, 403))
async def my_usage(admin: AdminCaller, session: SessionDep) -> OrganizationUsagePublic:
    """Your organization's notes created, model calls and tokens, today and this month
    (UTC). Administrators only."""
    return await usage.usage_of(session, admin.organization_id)
