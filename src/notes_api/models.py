"""Every table, imported in one place so Alembic sees the whole schema."""

from notes_api.auth.models import LoginAttempt
from notes_api.core.models import Base
from notes_api.events.models import NoteEvent
from notes_api.jobs.models import Job
from notes_api.limits.models import RateLimitCounter
from notes_api.notes.models import IdempotencyKey, Note
from notes_api.organizations.models import Organization
from notes_api.summarize.models import NoteUsage, OrganizationUsage
from notes_api.users.models import RefreshToken, User
from notes_api.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Base",
    "IdempotencyKey",
    "Job",
    "LoginAttempt",
    "Note",
    "NoteEvent",
    "NoteUsage",
    "Organization",
    "OrganizationUsage",
    "RateLimitCounter",
    "RefreshToken",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
