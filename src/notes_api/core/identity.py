"""Who acts: the roles a member can hold, and the caller every domain is handed once the
request's token has been confirmed (`users.callers.confirm_caller`)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class Role(enum.StrEnum):
    ADMIN = "ADMIN"
    AGENT = "AGENT"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a user, its organization, and the role it holds there now."""

    id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
