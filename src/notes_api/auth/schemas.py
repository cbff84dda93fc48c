from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from notes_api.core.schemas import Email, Name, Password, RequestModel
from notes_api.users.schemas import TokenPair, UserPublic

OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class SignupRequest(RequestModel):
    email: Email = Field(examples=["ada@example.com"])
    password: Password = Field(
        description="8 to 128 characters", examples=["correct horse battery staple"]
    )
    organization_name: Name | None = Field(
        default=None,
        description="Create this organization with you as its ADMIN. "
        "Leave out to join the default organization as an AGENT.",
        examples=["Acme Inc"],
    )


class LoginRequest(RequestModel):
    email: Annotated[str, StringConstraints(min_length=1, max_length=254)] = Field(
        examples=["ada@example.com"]
    )
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        examples=["correct horse battery staple"]
    )


class RefreshRequest(RequestModel):
    refresh_token: OpaqueToken


class SignupResponse(TokenPair):
    user: UserPublic
