"""A user's sign-in sessions: each is a family of refresh tokens, rotated on every refresh,
whose access tokens name it (`sid`). A session ends when its tokens are revoked (sign-out, a
reused refresh token, a deactivation), and its access tokens stop working with it: the caller
check (`users.callers.confirm_caller`) asks for an unrevoked token of the session."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.core.errors import Unauthorized
from notes_api.core.identity import Caller
from notes_api.core.models import utcnow
from notes_api.users import callers, repository
from notes_api.users.models import RefreshToken, User
from notes_api.users.schemas import TokenPair
from notes_api.users.tokens import create_access_token, hash_refresh_token, new_refresh_token


class RefreshReused(Unauthorized):
    keep_writes = True  # the family's revocation must survive the refusal

    def __init__(self) -> None:
        super().__init__("Refresh token already used; this session has been signed out")


async def refresh(session: AsyncSession, settings: Settings, token: str) -> TokenPair:
    now = utcnow()
    row = await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == hash_refresh_token(token))
        .with_for_update()
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthorized("Invalid or expired refresh token")
    if row.used_at is not None:
        # A spent token came back: someone else holds a copy. End the whole session.
        await revoke_family(session, row.family_id)
        raise RefreshReused()
    user = await repository.get(session, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("Invalid or expired refresh token")
    row.used_at = now
    return await issue_tokens(session, settings, user, family_id=row.family_id)


async def logout(session: AsyncSession, caller: Caller, token: str) -> None:
    row = await session.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == hash_refresh_token(token), RefreshToken.user_id == caller.id
        )
    )
    if row is not None:
        await revoke_family(session, row.family_id)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    """End a session: its refresh tokens stop working, and so do its access tokens."""
    revoked = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(RefreshToken.user_id)
    )
    for user_id in set(revoked.scalars()):
        callers.changed(session, user_id)


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    """End every session of a user (a deactivation): reactivating it later brings none back."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    callers.changed(session, user_id)


async def issue_tokens(
    session: AsyncSession, settings: Settings, user: User, *, family_id: uuid.UUID
) -> TokenPair:
    now = utcnow()
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=hash_refresh_token(refresh_token),
            created_at=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl),
        )
    )
    access = create_access_token(
        settings.jwt_secret.get_secret_value(),
        user_id=user.id,
        organization_id=user.organization_id,
        role=user.role.value,
        session_id=family_id,
        ttl=settings.access_token_ttl,
        now=now,
    )
    return TokenPair(
        access_token=access, refresh_token=refresh_token, expires_in=settings.access_token_ttl
    )


async def purge_expired(session: AsyncSession) -> None:
    """House-keeping: refresh tokens past their expiry (a spent one is kept until then, to
    recognise its reuse)."""
    await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < utcnow()))
