from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from notes_api.core.identity import Role
from notes_api.core.schemas import Email, Password, RequestModel, ResponseModel


class UserPublic(ResponseModel):
    id: uuid.UUID
    email: str
    role: Role
    organization_id: uuid.UUID
    is_active: bool
    created_at: datetime


class UserCreate(RequestModel):
    email: Email = Field(examples=["agent@example.com"])
    password: Password = Field(examples=["correct horse battery staple"])
    role: Role = Field(default=Role.AGENT, description="ADMIN or AGENT")


class UserUpdate(RequestModel):
    role: Role | None = None
    is_active: bool | None = Field(default=None, description="false deactivates the account")


class UserPage(ResponseModel):
    items: list[UserPublic]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class TokenPair(ResponseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="access token lifetime in seconds")
