"""Who is calling: the one way a request learns its caller. The token names a user, an
organization, a role and a session; the database confirms them (`users.callers.confirm_caller`),
and the process remembers the confirmation until the database announces a change
(`users.callers.CallerRecord`), so deactivation, role changes and sign-outs take effect within
a moment on every process, not when the access token expires."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from notes_api.core.deps import SessionDep
from notes_api.core.errors import Forbidden, Unauthorized
from notes_api.core.identity import Caller, Role
from notes_api.users.callers import confirm_caller
from notes_api.users.passwords import Passwords
from notes_api.users.tokens import AccessClaims, decode_access_token

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def _claims(request: Request, token: str | None) -> AccessClaims:
    if not token:
        # A token pasted without its scheme (Swagger's Authorize, curl -H) is a common slip.
        if request.headers.get("Authorization", "").strip():
            raise Unauthorized("Send the token as 'Authorization: Bearer <access_token>'")
        raise Unauthorized("Not signed in")
    claims = decode_access_token(request.app.state.settings.jwt_secret.get_secret_value(), token)
    if claims is None:
        raise Unauthorized("Invalid or expired access token")
    return claims


Token = Annotated[str | None, Depends(oauth2_scheme)]


async def token_claims(request: Request, token: Token) -> AccessClaims:
    """What a valid bearer token says, before the database confirms it (an event stream
    keeps them, to confirm its caller again at every wake)."""
    return _claims(request, token)


TokenClaims = Annotated[AccessClaims, Depends(token_claims)]


async def current_caller(request: Request, session: SessionDep, token: Token) -> Caller:
    """The caller, confirmed in the request's own unit of work (`confirm_caller`), or
    remembered from a confirmation the database has not since announced a change to."""
    claims = _claims(request, token)
    return await confirm_caller(session, claims, request.app.state.callers)


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if caller.role is not Role.ADMIN:
        raise Forbidden("Administrators only")
    return caller


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
