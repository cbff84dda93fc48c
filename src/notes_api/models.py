"""Every table, imported in one place so Alembic sees the whole schema."""

from notes_api.auth.models import LoginAttempt, RefreshToken
from notes_api.core.models import Base
from notes_api.jobs.models import Job
from notes_api.limits.models import RateLimitCounter
from notes_api.notes.models import IdempotencyKey, Note
from notes_api.organizations.models import Organization, OrganizationUsage
from notes_api.summarize.models import NoteUsage
from notes_api.users.models import User

__all__ = [
    "Base",
    "IdempotencyKey",
    "Job",
    "LoginAttempt",
    "Note",
    "NoteUsage",
    "Organization",
    "OrganizationUsage",
    "RateLimitCounter",
    "RefreshToken",
    "User",
]
