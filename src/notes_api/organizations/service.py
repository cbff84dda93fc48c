from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.models import utcnow
from notes_api.core.sql import upsert_insert
from notes_api.organizations.models import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_ORGANIZATION_NAME,
    Organization,
)


async def ensure_default_organization(session: AsyncSession) -> uuid.UUID:
    """Create the default organization once; safe when several processes race to do it."""
    if await session.get(Organization, DEFAULT_ORGANIZATION_ID) is None:
        now = utcnow()
        stmt = upsert_insert(session, Organization).values(
            id=DEFAULT_ORGANIZATION_ID,
            name=DEFAULT_ORGANIZATION_NAME,
            created_at=now,
            updated_at=now,
        )
        await session.execute(stmt.on_conflict_do_nothing())
    return DEFAULT_ORGANIZATION_ID


async def create_organization(session: AsyncSession, name: str) -> Organization:
    org = Organization(name=name)
    session.add(org)
    await session.flush()
    return org


async def lock(session: AsyncSession, organization_id: uuid.UUID) -> None:
    """Lock the organization's row until the transaction ends: the turn two admins' changes
    of its members, or two creations of its webhook endpoints, take one after the other."""
    await session.execute(
        select(Organization.id).where(Organization.id == organization_id).with_for_update()
    )
