"""Who is calling. The user is loaded on every request, so deactivation and role changes
take effect at once, not when the access token expires."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from notes_api.auth.passwords import Passwords
from notes_api.auth.service import AuthContext
from notes_api.auth.tokens import decode_access_token
from notes_api.core.deps import SessionDep, SettingsDep
from notes_api.core.errors import Forbidden, Unauthorized
from notes_api.users.models import Role, User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def current_user(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if not token:
        raise Unauthorized("Not signed in")
    claims = decode_access_token(settings.jwt_secret.get_secret_value(), token)
    if claims is None:
        raise Unauthorized("Invalid or expired access token")
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active or user.organization_id != claims.organization_id:
        raise Unauthorized("Invalid or expired access token")
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role is not Role.ADMIN:
        raise Forbidden("Administrators only")
    return user


def auth_context(request: Request, settings: SettingsDep) -> AuthContext:
    passwords: Passwords = request.app.state.passwords
    return AuthContext(settings=settings, passwords=passwords)


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
AuthDep = Annotated[AuthContext, Depends(auth_context)]
