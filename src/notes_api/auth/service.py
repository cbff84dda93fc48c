"""Signing up and signing in: an account (and, for a new organization, the organization)
with its first session, and a login that counts failed attempts (auth/throttle.py). The
sessions themselves (refresh, sign-out, revocation) are the users' (users/sessions.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.auth import devices, throttle
from notes_api.auth.schemas import SignupRequest
from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.errors import Forbidden, TooManyRequests, Unauthorized
from notes_api.core.identity import Role
from notes_api.core.schemas import is_storable_text
from notes_api.organizations.service import create_organization, ensure_default_organization
from notes_api.users import repository as users_repository
from notes_api.users import sessions
from notes_api.users.models import User
from notes_api.users.passwords import Passwords
from notes_api.users.schemas import TokenPair


class InvalidCredentials(Unauthorized):
    def __init__(self) -> None:
        super().__init__("Incorrect email or password")


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
    return user, await sessions.issue_tokens(session, ctx.settings, user, family_id=uuid.uuid4())


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
        return await sessions.issue_tokens(session, ctx.settings, user, family_id=uuid.uuid4())


async def purge_expired(session: AsyncSession, settings: Settings) -> None:
    """House-keeping: refresh tokens past their expiry (a spent one is kept until then, to
    recognise its reuse) and login counters whose window has ended."""
    await sessions.purge_expired(session)
    await throttle.purge(session, settings.login_lockout_seconds)
