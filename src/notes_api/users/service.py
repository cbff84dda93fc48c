from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.errors import Conflict, NotFound
from notes_api.core.identity import Caller, Role
from notes_api.core.pagination import keyset_page, split_page
from notes_api.organizations import service as organizations
from notes_api.users import callers, repository, sessions
from notes_api.users.models import User
from notes_api.users.passwords import Passwords
from notes_api.users.schemas import UserCreate, UserPage, UserPublic, UserUpdate


async def get_me(session: AsyncSession, caller: Caller) -> User:
    user = await session.get(User, caller.id)
    assert user is not None  # the caller was confirmed in this unit of work
    return user


async def list_users(
    session: AsyncSession, admin: Caller, *, limit: int, cursor: str | None
) -> UserPage:
    stmt = select(User).where(User.organization_id == admin.organization_id)
    stmt = keyset_page(
        stmt, User.created_at, User.id, cursor=cursor, limit=limit, newest_first=False
    )
    rows = list((await session.scalars(stmt)).all())
    page, next_cursor = split_page(rows, limit)
    return UserPage(items=[UserPublic.model_validate(u) for u in page], next_cursor=next_cursor)


async def provision(
    session: AsyncSession, passwords: Passwords, admin: Caller, body: UserCreate
) -> User:
    password_hash = await passwords.hash(body.password)
    return await repository.create_user(
        session,
        email=body.email,
        password_hash=password_hash,
        role=body.role,
        organization_id=admin.organization_id,
    )


async def update_user(
    session: AsyncSession, admin: Caller, user_id: uuid.UUID, body: UserUpdate
) -> User:
    # Lock the organization so two admins demoting each other cannot both succeed.
    await organizations.lock(session, admin.organization_id)
    user = await session.scalar(
        select(User).where(User.id == user_id, User.organization_id == admin.organization_id)
    )
    if user is None:
        raise NotFound("User not found")
    callers.changed(session, user.id)  # its confirmations, on every process, are stale
    if body.role is not None:
        user.role = body.role
    if body.is_active is not None:
        user.is_active = body.is_active
        if not body.is_active:
            await sessions.revoke_user_tokens(session, user.id)
    await session.flush()
    admins = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(
            User.organization_id == admin.organization_id,
            User.role == Role.ADMIN,
            User.is_active.is_(True),
        )
    )
    if not admins:
        raise Conflict("An organization must keep at least one active admin")
    return user
