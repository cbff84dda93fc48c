from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel


class UsagePeriod(BaseModel):
    start: date  # first UTC day of the period
    end: date  # last UTC day of the period (today)
    notes_created: int
    model_calls: int
    prompt_tokens: int
    completion_tokens: int


class OrganizationUsagePublic(BaseModel):
    organization_id: uuid.UUID
    today: UsagePeriod
    month: UsagePeriod
