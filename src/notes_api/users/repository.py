"""The users' table as the flows outside the admins' own (users/service.py) use it:
sign-up and login (auth/service.py), a session's refresh (users/sessions.py) and the first
admin (bootstrap.py). The caller check that every request runs (users/callers.py) reads a
member and its session in one statement, with `ACTIVE_MEMBER` (users/models.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.errors import Conflict
from notes_api.core.identity import Role
from notes_api.users.models import User

_STILL_ACTIVE = select(User.is_active).where(User.id == bindparam("id"), User.is_active)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password_hash: str,
    role: Role,
    organization_id: uuid.UUID,
) -> User:
    """Add a user whose password was hashed before the unit of work took a connection (a
    hash costs tens of milliseconds of CPU; a connection is the pool's scarcest thing)."""
    user = User(
        email=email,
        password_hash=password_hash,
        role=role,
        organization_id=organization_id,
        is_active=True,
    )
    try:
        # Added inside the savepoint, so a conflict also takes the user out of the session
        # and a caller that goes on (bootstrap) can still commit.
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise Conflict("An account with this email already exists") from None
    return user


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this email (stored case-folded), if any."""
    found: User | None = await session.scalar(select(User).where(User.email == email))
    return found


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email)) is not None


async def is_active(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the user is active now (a login checks again after the password)."""
    return bool(await session.scalar(_STILL_ACTIVE, {"id": user_id}))
