from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Column, Index, Integer, String, Table, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from notes_api.core.models import Base, TimestampMixin, UTCDateTime, new_id, text_enum, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.PROCESSING)
FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
_ACTIVE = "status IN ({})".format(", ".join(f"'{s.value}'" for s in ACTIVE_STATUSES))


class Job(TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # What a claim scans: only runnable jobs, by fairness key, oldest due first (the
        # distinct keys with queued jobs are read from it too, one probe per key).
        Index(
            "ix_jobs_queued_key_run_after",
            "fairness_key",
            "run_after",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # What the reaper scans: leases that may have run out.
        Index(
            "ix_jobs_processing_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'processing'"),
            sqlite_where=text("status = 'processing'"),
        ),
        # At most one live job per subject (for notes: per note).
        Index(
            "uq_jobs_active_dedupe",
            "kind",
            "dedupe_key",
            unique=True,
            postgresql_where=text(_ACTIVE),
            sqlite_where=text(_ACTIVE),
        ),
        Index("ix_jobs_finished_at", "finished_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Jobs with different keys share the workers; "" is the key of jobs that name none.
    fairness_key: Mapped[str] = mapped_column(String(200), default="", server_default="")
    status: Mapped[JobStatus] = mapped_column(
        text_enum(JobStatus, "job_status"),
        default=JobStatus.QUEUED,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


jobs = cast(Table, Job.__table__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job as the worker that leased it holds it: what its run and its fenced writes need
    (read from the claim's RETURNING, or the reaper's SELECT, in `columns()` order)."""

    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    dedupe_key: str | None
    fairness_key: str
    status: JobStatus
    attempts: int
    max_attempts: int
    lease_token: uuid.UUID | None
    lease_expires_at: datetime | None
    worker_id: str | None
    created_at: datetime

    @staticmethod
    def columns() -> list[Column[Any]]:
        return [jobs.c[name] for name in Claimed.__slots__]
