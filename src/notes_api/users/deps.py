"""Who is calling: the one way a request learns its caller. The token names a user, an
organization, a role and a session; the database confirms them (`users.callers.confirm_caller`),
and the process remembers the confirmation until the database announces a change
(`users.callers.CallerRecord`), so deactivation, role changes and sign-outs take effect within
a moment on every process, not when the access token expires.

A signed-in route has one dependency, `CallerWork` (`AdminWork` for administrators): the
request's unit of work (opened by its route, `core.deps.UnitOfWorkRoute`) with the caller
confirmed in it. FastAPI resolves each dependency of a chain at every request, at about the
cost of the route's own query, so the caller, the session and the settings come as one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.core.deps import takes_unit, unit_of
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


@dataclass(frozen=True, slots=True)
class Work:
    """A request's unit of work (`core.deps.unit_of`) and the caller it is done for,
    confirmed in it; what the caller's token says (an event stream keeps it, to confirm its
    caller again at every wake); and the settings the route reads."""

    caller: Caller
    session: AsyncSession
    settings: Settings
    claims: AccessClaims


@takes_unit
async def caller_work(request: Request, token: Token) -> Work:
    """The caller, confirmed in the request's own unit of work (`confirm_caller`), or
    remembered from a confirmation the database has not since announced a change to. A token
    that is missing or invalid is refused before a connection is taken."""
    claims = _claims(request, token)
    state = request.app.state
    session = unit_of(request)
    caller = await confirm_caller(session, claims, state.callers)
    return Work(caller, session, state.settings, claims)


CallerWork = Annotated[Work, Depends(caller_work)]


async def admin_work(work: CallerWork) -> Work:
    if work.caller.role is not Role.ADMIN:
        raise Forbidden("Administrators only")
    return work


AdminWork = Annotated[Work, Depends(admin_work)]


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
