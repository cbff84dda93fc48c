from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from notes_api.auth import throttle
from notes_api.auth.models import RefreshToken
from notes_api.auth.passwords import Passwords
from notes_api.auth.schemas import SignupRequest, TokenPair
from notes_api.auth.tokens import (
    AccessClaims,
    Caller,
    create_access_token,
    hash_refresh_token,
    new_refresh_token,
)
from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.errors import Conflict, Forbidden, TooManyRequests, Unauthorized
from notes_api.core.models import utcnow
from notes_api.core.schemas import is_storable_text
from notes_api.organizations.service import create_organization, ensure_default_organization
from notes_api.users.models import ACTIVE_MEMBER, Role, User, member_params


class InvalidCredentials(Unauthorized):
    keep_writes = True  # the failure count must survive the refusal

    def __init__(self) -> None:
        super().__init__("Incorrect email or password")


class RefreshReused(Unauthorized):
    keep_writes = True  # the family's revocation must survive the refusal

    def __init__(self) -> None:
        super().__init__("Refresh token already used; this session has been signed out")


_STILL_ACTIVE = select(User.is_active).where(User.id == bindparam("id"), User.is_active)
# Built once: the caller check of every write to notes, a primary-key lookup of one column.
_ACTIVE_ROLE = select(User.role).where(ACTIVE_MEMBER)


async def confirm_caller(conn: AsyncConnection, claims: AccessClaims) -> Caller:
    """The token's user while it is an active member of the token's organization, with the
    role it holds now (one small Core statement, no ORM object); 401 otherwise."""
    params = member_params(claims.user_id, claims.organization_id)
    role = (await conn.execute(_ACTIVE_ROLE, params)).scalar_one_or_none()
    if role is None:
        raise Unauthorized("Invalid or expired access token")
    return Caller(claims.user_id, claims.organization_id, role)


@dataclass
class AuthContext:
    settings: Settings
    passwords: Passwords


async def create_user(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    email: str,
    password: str,
    role: Role,
    organization_id: uuid.UUID,
) -> User:
    user = User(
        email=email,
        password_hash=await ctx.passwords.hash(password),
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


async def signup(
    session: AsyncSession, ctx: AuthContext, body: SignupRequest
) -> tuple[User, TokenPair]:
    if not ctx.settings.signup_open:
        raise Forbidden("Sign-up is closed; ask an administrator for an account")
    if body.organization_name:
        org_id, role = (await create_organization(session, body.organization_name)).id, Role.ADMIN
    else:
        org_id, role = await ensure_default_organization(session), Role.AGENT
    user = await create_user(
        session, ctx, email=body.email, password=body.password, role=role, organization_id=org_id
    )
    return user, await issue_tokens(session, ctx.settings, user, family_id=uuid.uuid4())


async def login(db: Database, ctx: AuthContext, email: str, password: str) -> TokenPair:
    """The password is checked between two short transactions, holding no connection and no
    lock: a hash costs ~27 ms of CPU, and on SQLite a writer's lock held across it would let
    one login in at a time."""
    if not is_storable_text(email):  # no account has such an email; the database would refuse it
        raise InvalidCredentials()
    async with db.session() as session:
        blocked = await throttle.seconds_blocked(session, email)
        if blocked:
            raise TooManyRequests("Too many failed logins; try again later", retry_after=blocked)
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    ok = await ctx.passwords.verify(password, user.password_hash if user else None)
    async with db.session(write=True) as session:
        # Still active now, not only when read above.
        if ok and user is not None and await session.scalar(_STILL_ACTIVE, {"id": user.id}):
            await throttle.clear(session, email)
            return await issue_tokens(session, ctx.settings, user, family_id=uuid.uuid4())
        await throttle.record_failure(
            session,
            email,
            max_failures=ctx.settings.login_max_failures,
            window_seconds=ctx.settings.login_lockout_seconds,
        )
    raise InvalidCredentials()


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
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("Invalid or expired refresh token")
    row.used_at = now
    return await issue_tokens(session, settings, user, family_id=row.family_id)


async def logout(session: AsyncSession, user: User, token: str) -> None:
    row = await session.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == hash_refresh_token(token), RefreshToken.user_id == user.id
        )
    )
    if row is not None:
        await revoke_family(session, row.family_id)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


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
        ttl=settings.access_token_ttl,
        now=now,
    )
    return TokenPair(
        access_token=access, refresh_token=refresh_token, expires_in=settings.access_token_ttl
    )
