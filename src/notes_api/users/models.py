from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Boolean, ForeignKey, String, Table, Uuid, and_, bindparam
from sqlalchemy.orm import Mapped, mapped_column

from notes_api.core.identity import Role
from notes_api.core.models import Base, TimestampMixin, new_id, text_enum


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Stored case-folded, so the unique constraint is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(text_enum(Role, "user_role"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


users = cast(Table, User.__table__)

# A token's user, while it is an active member of the organization it signed in to. The
# parameters are `member_params(...)`; statements that check a caller share them. (Typed:
# a foreign-key column's type is only known once the table it points at is defined.)
MEMBER_ID = bindparam("member_id", type_=Uuid())
MEMBER_ORGANIZATION_ID = bindparam("member_organization_id", type_=Uuid())
ACTIVE_MEMBER = and_(
    users.c.id == MEMBER_ID,
    users.c.organization_id == MEMBER_ORGANIZATION_ID,
    users.c.is_active,
)


def member_params(user_id: uuid.UUID, organization_id: uuid.UUID) -> dict[str, uuid.UUID]:
    return {"member_id": user_id, "member_organization_id": organization_id}
