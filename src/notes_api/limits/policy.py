"""Which limits a write counts against, and how they read in the IETF RateLimit headers
(draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "user";q=60;w=60` states a
policy, `RateLimit: "user";r=59;t=30` what is left of it and when its window ends)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from notes_api.core.config import Settings

DAY = 86_400
MINUTE = 60
MODEL = "model"  # the daily summaries of an organization with a paid summarizer


@dataclass(frozen=True)
class Policy:
    name: str  # the policy's name in the headers
    key: str  # the counter it is held in
    quota: int
    window: int  # seconds; windows are aligned to the Unix epoch (a day's to UTC midnight)

    def window_start(self, now: datetime) -> datetime:
        epoch = int(now.timestamp())
        return datetime.fromtimestamp(epoch - epoch % self.window, UTC)

    def reset(self, now: datetime) -> int:
        """Whole seconds until the current window ends (at least 1)."""
        end = self.window_start(now) + timedelta(seconds=self.window)
        return max(1, math.ceil((end - now).total_seconds()))


def write_policies(
    settings: Settings, user_id: uuid.UUID, organization_id: uuid.UUID
) -> list[Policy]:
    """A write (create, edit, retry) counts against its user's and its organization's
    per-minute limits; one that queues a summary, with a paid summarizer, also against the
    organization's daily summaries (`Quota.spend`). A quota of 0 is no limit."""
    policies = [
        Policy(
            "user", f"user:{user_id}:writes", settings.rate_limit_user_writes_per_minute, MINUTE
        ),
        Policy(
            "org",
            f"org:{organization_id}:writes",
            settings.rate_limit_org_writes_per_minute,
            MINUTE,
        ),
    ]
    if settings.summarizer == "openai":
        policies.append(
            Policy(MODEL, f"org:{organization_id}:model", settings.summaries_per_org_per_day, DAY)
        )
    return [p for p in policies if p.quota > 0]


@dataclass(frozen=True)
class Standing:
    policy: Policy
    count: int  # requests in the current window, this one included
    reset: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.policy.quota

    @property
    def remaining(self) -> int:
        return max(0, self.policy.quota - self.count)


def headers(standings: list[Standing]) -> dict[str, str]:
    return {
        "RateLimit-Policy": ", ".join(
            f'"{s.policy.name}";q={s.policy.quota};w={s.policy.window}' for s in standings
        ),
        "RateLimit": ", ".join(f'"{s.policy.name}";r={s.remaining};t={s.reset}' for s in standings),
    }
