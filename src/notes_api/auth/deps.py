"""Who is calling. The caller is confirmed against the database on every request, so
deactivation and role changes take effect at once, not when the access token expires."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select

from notes_api.auth.passwords import Passwords
from notes_api.auth.service import AuthContext, confirm_caller
from notes_api.auth.tokens import AccessClaims, Caller, decode_access_token
from notes_api.core.deps import SessionDep, SettingsDep
from notes_api.core.errors import Forbidden, Unauthorized
from notes_api.users.models import ACTIVE_MEMBER, Role, User, member_params

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)

_ACTIVE_USER = select(User).where(ACTIVE_MEMBER)


async def access_claims(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> AccessClaims:
    if not token:
        raise Unauthorized("Not signed in")
    secret = request.app.state.settings.jwt_secret.get_secret_value()
    claims = decode_access_token(secret, token)
    if claims is None:
        raise Unauthorized("Invalid or expired access token")
    return claims


ClaimsDep = Annotated[AccessClaims, Depends(access_claims)]


async def current_caller(session: SessionDep, claims: ClaimsDep) -> Caller:
    """The caller, confirmed in the request's transaction."""
    return await confirm_caller(await session.connection(), claims)


async def current_user(session: SessionDep, claims: ClaimsDep) -> User:
    """The caller's whole row, for the routes that show or change the account itself."""
    params = member_params(claims.user_id, claims.organization_id)
    user = await session.scalar(_ACTIVE_USER, params)
    if user is None:
        raise Unauthorized("Invalid or expired access token")
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role is not Role.ADMIN:
        raise Forbidden("Administrators only")
    return user


async def auth_context(request: Request, settings: SettingsDep) -> AuthContext:
    passwords: Passwords = request.app.state.passwords
    return AuthContext(settings=settings, passwords=passwords)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
AuthDep = Annotated[AuthContext, Depends(auth_context)]
