"""Secrets and Standard Webhooks signatures (https://www.standardwebhooks.com): receivers
verify with the same `standardwebhooks` package."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(msg_id: str, body: str, keys: list[str], now: datetime) -> dict[str, str]:
    """The headers of a delivery: one `v1,` signature per secret that is still valid."""
    signature = " ".join(Webhook(key).sign(msg_id, now, body) for key in keys)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
