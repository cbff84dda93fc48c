from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from notes_api.core.deps import UnitOfWorkRoute
from notes_api.core.openapi import errors
from notes_api.users import service
from notes_api.users.deps import AdminWork, PasswordsDep
from notes_api.users.schemas import UserCreate, UserPage, UserPublic, UserUpdate

# The examples of this router's errors (core/openapi.py).
_TAKEN = "An account with this email already exists"
_UPDATE = {404: "User not found", 409: "An organization must keep at least one active admin"}

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/users", tags=["users"])


@router.get("", responses=errors(401, 403, 422))
async def list_users(
    work: AdminWork,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> UserPage:
    """The users of your organization, oldest first (admins only)."""
    return await service.list_users(work.session, work.caller, limit=limit, cursor=cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 409, 413, 422, details={409: _TAKEN}),
)
async def create_user(body: UserCreate, work: AdminWork, passwords: PasswordsDep) -> UserPublic:
    """Provision an agent or an admin in your organization (admins only)."""
    return UserPublic.model_validate(
        await service.provision(work.session, passwords, work.caller, body)
    )


@router.patch(
    "/{user_id:uuid}",
    responses=errors(400, 401, 403, 404, 409, 413, 422, details=_UPDATE),
)
async def update_user(user_id: uuid.UUID, body: UserUpdate, work: AdminWork) -> UserPublic:
    """Change a user's role or deactivate them (admins only). Deactivation signs them out
    everywhere at once. An organization always keeps one active admin."""
    return UserPublic.model_validate(
        await service.update_user(work.session, work.caller, user_id, body)
    )
