from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from notes_api.core.models import Base, UTCDateTime


class LoginAttempt(Base):
    """Login attempts in the current window, per key (see auth/throttle.py), shared by every
    API process through the database."""

    __tablename__ = "login_attempts"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
