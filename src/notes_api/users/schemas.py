from __future__ import annotations

import uuid
from datetime import datetime

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
