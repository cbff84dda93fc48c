from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from notes_api.auth import service
from notes_api.auth.deps import AuthDep, CurrentCaller
from notes_api.auth.schemas import (
    LoginRequest,
    RefreshRequest,
    SignupRequest,
    SignupResponse,
    TokenPair,
)
from notes_api.core.deps import DatabaseDep, SessionDep, SettingsDep
from notes_api.core.openapi import errors
from notes_api.users import service as users
from notes_api.users.schemas import UserPublic

router = APIRouter(tags=["auth"])
# The examples of this router's errors (core/openapi.py).
_SIGNUP = {
    403: "Sign-up is closed; ask an administrator for an account",
    409: "An account with this email already exists",
}
_LOGIN = {401: "Incorrect email or password", 429: "Too many failed logins; try again later"}


@router.post(
    "/auth/signup",
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 403, 409, 413, 422, details=_SIGNUP),
)
async def signup(body: SignupRequest, session: SessionDep, auth: AuthDep) -> SignupResponse:
    """Create an account. Without `organization_name` you join the default organization as an
    AGENT; with it, a new organization is created and you are its ADMIN."""
    user, tokens = await service.signup(session, auth, body)
    return SignupResponse(user=UserPublic.model_validate(user), **tokens.model_dump())


@router.post("/auth/login", responses=errors(400, 401, 413, 422, 429, details=_LOGIN))
async def login(body: LoginRequest, request: Request, db: DatabaseDep, auth: AuthDep) -> TokenPair:
    """Exchange email and password for an access token and a refresh token."""
    return await service.login(db, auth, body.email, body.password, client=_client(request))


@router.post("/auth/token", responses=errors(401, 413, 422, 429, details=_LOGIN))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    db: DatabaseDep,
    auth: AuthDep,
) -> TokenPair:
    """The same as `/auth/login` as an OAuth2 password form (for Swagger UI's Authorize):
    put the email in `username`."""
    return await service.login(
        db, auth, form.username[:254], form.password[:128], client=_client(request)
    )


@router.post(
    "/auth/refresh",
    responses=errors(400, 401, 413, 422, details={401: "Invalid or expired refresh token"}),
)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once; presenting a
    spent one signs out that whole session."""
    return await service.refresh(session, settings, body.refresh_token)


@router.post(
    "/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(400, 401, 413, 422)
)
async def logout(body: RefreshRequest, caller: CurrentCaller, session: SessionDep) -> Response:
    """Sign out: the refresh token (and every token rotated from it) stops working."""
    await service.logout(session, caller, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/me", responses=errors(401))
async def me(caller: CurrentCaller, session: SessionDep) -> UserPublic:
    """The signed-in user."""
    return UserPublic.model_validate(await users.get_me(session, caller))


def _client(request: Request) -> str:
    """The client's address: the proxy's X-Forwarded-For only when the proxy is trusted
    (uvicorn applies it for FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"
