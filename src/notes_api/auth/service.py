from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth import callers, devices, throttle
from notes_api.auth.callers import CallerRecord
from notes_api.auth.models import RefreshToken
from notes_api.auth.passwords import Passwords
from notes_api.auth.schemas import SignupRequest, TokenPair
from notes_api.auth.tokens import (
    AccessClaims,
    create_access_token,
    hash_refresh_token,
    new_refresh_token,
)
from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.errors import Forbidden, TooManyRequests, Unauthorized
from notes_api.core.identity import Caller, Role
from notes_api.core.models import utcnow
from notes_api.core.schemas import is_storable_text
from notes_api.organizations.service import create_organization, ensure_default_organization
from notes_api.users import repository as users_repository
from notes_api.users.models import ACTIVE_MEMBER, User, member_params, users


class InvalidCredentials(Unauthorized):
    def __init__(self) -> None:
        super().__init__("Incorrect email or password")


class RefreshReused(Unauthorized):
    keep_writes = True  # the family's revocation must survive the refusal

    def __init__(self) -> None:
        super().__init__("Refresh token already used; this session has been signed out")


refresh_tokens = cast(Table, RefreshToken.__table__)

# Built once: the caller check, a primary-key lookup of one column and an index probe of the
# session's refresh tokens (a signed-out, revoked or reused session has none unrevoked).
_LIVE_SESSION = exists().where(
    refresh_tokens.c.family_id == bindparam("session_id", type_=refresh_tokens.c.family_id.type),
    refresh_tokens.c.user_id == users.c.id,
    refresh_tokens.c.revoked_at.is_(None),
)
_ACTIVE_ROLE = select(users.c.role).where(ACTIVE_MEMBER, _LIVE_SESSION)


async def confirm_caller(
    session: AsyncSession, claims: AccessClaims, record: CallerRecord | None = None
) -> Caller:
    """The token's user while it is an active member of the token's organization and the
    token's session is live, with the role it holds now; 401 otherwise. Every request's
    caller (`auth.deps.current_caller`, which passes the process's `record`) and every event
    stream's, at each wake, is confirmed here."""
    key = (claims.user_id, claims.organization_id, claims.session_id)
    epoch = 0
    if record is not None:
        remembered = record.caller(key)
        if remembered is not None:
            return remembered
        epoch = record.epoch
    params = member_params(claims.user_id, claims.organization_id)
    params["session_id"] = claims.session_id
    conn = await session.connection()  # a Core statement: no ORM execution to go through
    role = (await conn.execute(_ACTIVE_ROLE, params)).scalar_one_or_none()
    if role is None:
        raise Unauthorized("Invalid or expired access token")
    caller = Caller(claims.user_id, claims.organization_id, role)
    if record is not None:
        record.remember(key, caller, epoch)
    return caller


@dataclass
class AuthContext:
    settings: Settings
    passwords: Passwords


async def signup(
    session: AsyncSession, ctx: AuthContext, body: SignupRequest
) -> tuple[User, TokenPair]:
    if not ctx.settings.signup_open:
        raise Forbidden("Sign-up is closed; ask an administrator for an account")
    password_hash = await ctx.passwords.hash(body.password)  # before the first statement
    if body.organization_name:
        org_id, role = (await create_organization(session, body.organization_name)).id, Role.ADMIN
    else:
        org_id, role = await ensure_default_organization(session), Role.AGENT
    user = await users_repository.create_user(
        session, email=body.email, password_hash=password_hash, role=role, organization_id=org_id
    )
    return user, await issue_tokens(session, ctx.settings, user, family_id=uuid.uuid4())


async def login(
    db: Database,
    ctx: AuthContext,
    email: str,
    password: str,
    *,
    client: str,
    device_cookie: str | None = None,
) -> TokenPair:
    """Three steps, so no connection or lock is held while the password is checked (a hash
    costs ~27 ms of CPU; on SQLite a writer's lock held across it would let one login in at a
    time): count the attempt and read the user, check the password, then issue tokens.
    A device cookie issued for this email puts the attempt on that device's own counter
    (auth/throttle.py)."""
    if not is_storable_text(email):  # no account has such an email; the database would refuse it
        raise InvalidCredentials()
    secret = ctx.settings.jwt_secret.get_secret_value()
    device = devices.verify(secret, email, device_cookie)
    attempt = throttle.Attempt(email, client, device)
    limit, window = ctx.settings.login_max_failures, ctx.settings.login_lockout_seconds
    async with db.session() as session:
        blocked = await throttle.reserve(session, attempt, limit=limit, window=window)
        user = None
        if not blocked:
            user = await users_repository.by_email(session, email.strip().lower())
    if blocked:
        raise TooManyRequests("Too many failed logins; try again later", retry_after=blocked)
    if not await ctx.passwords.verify(password, user.password_hash if user else None):
        raise InvalidCredentials()
    assert user is not None  # verify() is False without a hash
    async with db.session() as session:
        # Still active now, not only when read above.
        if not await users_repository.is_active(session, user.id):
            raise InvalidCredentials()
        await throttle.clear(session, attempt)
        return await issue_tokens(session, ctx.settings, user, family_id=uuid.uuid4())


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
    user = await users_repository.get(session, row.user_id)
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


async def purge_expired(session: AsyncSession, settings: Settings) -> None:
    """House-keeping: refresh tokens past their expiry (a spent one is kept until then, to
    recognise its reuse) and login counters whose window has ended."""
    await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < utcnow()))
    await throttle.purge(session, settings.login_lockout_seconds)
