from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from notes_api.auth import devices, service, throttle
from notes_api.auth.deps import AuthDep
from notes_api.auth.schemas import (
    LoginRequest,
    RefreshRequest,
    SignupRequest,
    SignupResponse,
)
from notes_api.auth.service import AuthContext
from notes_api.core.deps import DatabaseDep, SessionDep, SettingsDep, UnitOfWorkRoute
from notes_api.core.openapi import errors
from notes_api.users import service as users
from notes_api.users import sessions
from notes_api.users.deps import CallerWork
from notes_api.users.schemas import TokenPair, UserPublic

router = APIRouter(route_class=UnitOfWorkRoute, tags=["auth"])
# The examples of this router's errors (core/openapi.py).
_SIGNUP = {
    403: "Sign-up is closed; ask an administrator for an account",
    409: "An account with this email already exists",
    429: "Too many sign-ups from this address; try later",
}
_LOGIN = {401: "Incorrect email or password", 429: "Too many failed logins; try again later"}

DeviceCookie = Annotated[
    str | None,
    Cookie(
        alias=devices.COOKIE,
        description="The device cookie an earlier login to this account set (optional)",
    ),
]


@router.post(
    "/auth/signup",
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 403, 409, 413, 422, 429, details=_SIGNUP),
)
async def signup(
    body: SignupRequest, request: Request, db: DatabaseDep, session: SessionDep, auth: AuthDep
) -> SignupResponse:
    """Create an account. Without `organization_name` you join the default organization as an
    AGENT; with it, a new organization is created and you are its ADMIN. One client address
    may sign up a limited number of times per hour (429 with Retry-After beyond)."""
    if auth.settings.signup_open:
        await throttle.admit_signup(db, _client(request), auth.settings.signup_per_client_per_hour)
    user, tokens = await service.signup(session, auth, body)
    return SignupResponse(user=UserPublic.model_validate(user), **tokens.model_dump())


@router.post("/auth/login", responses=errors(400, 401, 413, 422, 429, details=_LOGIN))
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    db: DatabaseDep,
    auth: AuthDep,
    device: DeviceCookie = None,
) -> TokenPair:
    """Exchange email and password for an access token and a refresh token. The answer sets
    a device cookie: sent back with later logins to this account, it keeps them apart from
    other clients' failed attempts (which can only lock out clients without one)."""
    tokens = await service.login(
        db, auth, body.email, body.password, client=_client(request), device_cookie=device
    )
    _set_device_cookie(response, auth, body.email)
    return tokens


@router.post("/auth/token", responses=errors(401, 413, 422, 429, details=_LOGIN))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    db: DatabaseDep,
    auth: AuthDep,
    device: DeviceCookie = None,
) -> TokenPair:
    """The same as `/auth/login` as an OAuth2 password form (for Swagger UI's Authorize):
    put the email in `username`."""
    email = form.username[:254]
    tokens = await service.login(
        db, auth, email, form.password[:128], client=_client(request), device_cookie=device
    )
    _set_device_cookie(response, auth, email)
    return tokens


@router.post(
    "/auth/refresh",
    responses=errors(400, 401, 413, 422, details={401: "Invalid or expired refresh token"}),
)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once; presenting a
    spent one signs out that whole session."""
    return await sessions.refresh(session, settings, body.refresh_token)


@router.post(
    "/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 413, 422)
)
async def logout(body: RefreshRequest, work: CallerWork) -> Response:
    """Sign out: the refresh token (and every token rotated from it) stops working."""
    await sessions.logout(work.session, work.caller, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/me", responses=errors(401))
async def me(work: CallerWork) -> UserPublic:
    """The signed-in user."""
    return UserPublic.model_validate(await users.get_me(work.session, work.caller))


def _client(request: Request) -> str:
    """The client's address: behind a trusted proxy (FORWARDED_ALLOW_IPS), the address that
    proxy appended to X-Forwarded-For, never one the client wrote (server.ForwardedFor)."""
    return request.client.host if request.client else "unknown"


def _set_device_cookie(response: Response, auth: AuthContext, email: str) -> None:
    settings = auth.settings
    response.set_cookie(
        devices.COOKIE,
        devices.issue(settings.jwt_secret.get_secret_value(), email),
        max_age=devices.LIFETIME,
        path="/auth",
        httponly=True,
        samesite="strict",
        secure=settings.app_env == "production",  # served over TLS there; local runs are not
    )
