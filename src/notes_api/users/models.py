from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Boolean, ForeignKey, Index, String, Table, Uuid, and_, bindparam, text
from sqlalchemy.orm import Mapped, mapped_column

from notes_api.core.identity import Role
from notes_api.core.models import Base, TimestampMixin, UTCDateTime, new_id, text_enum, utcnow


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


class RefreshToken(Base):
    """One issued refresh token. Only its SHA-256 is stored; the tokens of one sign-in session,
    rotated one from the other, share a family (`family_id`, the access tokens' `sid`)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        # The caller check: does this session (family) still have an unrevoked token?
        Index(
            "ix_refresh_tokens_family_live",
            "family_id",
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
