"""Device cookies: OWASP's answer to an account-wide login lockout that anyone could set off
("Slow Down Online Guessing Attacks with Device Cookies").

A client that logs in to an account gets a cookie signed by the server and bound to that
account's email. When it logs in again with the cookie, its attempts are counted on the
cookie alone, with the per-client limit, and the account-wide limit, which strangers' guesses
from many addresses can exhaust, does not apply to it: whoever holds no such cookie cannot
lock its owner out. A forged, expired or other account's cookie is no cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

COOKIE = "notes_device"
LIFETIME = 180 * 24 * 3600  # seconds
_MAX_LENGTH = 200  # a real cookie is about 60 characters; anything longer is not one of ours
_PURPOSE = b"notes-api device cookie v1"


def _key(secret: str) -> bytes:
    # A key of its own, so a device cookie can never pass for anything else signed with the
    # JWT secret, nor the other way round.
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _signature(secret: str, payload: str, email: str) -> str:
    message = f"{payload}.{email.strip().lower()}".encode()
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(secret: str, email: str, *, now: float | None = None) -> str:
    """A new cookie for a client that has just logged in to `email`."""
    expires = int(now if now is not None else time.time()) + LIFETIME
    payload = f"{secrets.token_urlsafe(16)}.{expires}"
    return f"{payload}.{_signature(secret, payload, email)}"


def verify(secret: str, email: str, cookie: str | None) -> str | None:
    """The cookie's device id when it is ours, unexpired and issued for `email`; else None."""
    if not cookie or len(cookie) > _MAX_LENGTH:
        return None
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
        return None
    device, expires, signature = parts
    expected = _signature(secret, f"{device}.{expires}", email)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    return device
