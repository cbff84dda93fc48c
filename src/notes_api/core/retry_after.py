"""`Retry-After` (RFC 9110, 10.2.3), as the model provider and webhook receivers send it."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 86_400.0  # a "come back in a year" is read as a day


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from now, from delay-seconds or an HTTP date, at most a day; None when absent,
    unreadable or already past."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, said to be of unknown origin
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    seconds = min(seconds, MAX_RETRY_AFTER)
    return seconds if seconds > 0 else None
