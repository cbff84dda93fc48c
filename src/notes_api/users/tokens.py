"""Access tokens are short-lived HS256 JWTs; refresh tokens are opaque random strings
stored only as their SHA-256, so a database leak gives no usable token."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from notes_api.core.identity import Role
from notes_api.core.models import utcnow

ALGORITHM = "HS256"
ISSUER = "notes-api"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    session_id: uuid.UUID  # the refresh-token family the token was issued with


def create_access_token(
    secret: str,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    role: str,
    session_id: uuid.UUID,
    ttl: int,
    now: datetime | None = None,
) -> str:
    issued = now or utcnow()
    claims = {
        "sub": str(user_id),
        "org": str(organization_id),
        "role": role,
        "sid": str(session_id),
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl),
        "jti": secrets.token_hex(8),
        "iss": ISSUER,
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Our tokens are about 300 bytes; anything far longer is refused before any work.
MAX_TOKEN_LENGTH = 2048


def decode_access_token(secret: str, token: str) -> AccessClaims | None:
    """The claims of a valid, unexpired token, or None for anything else (tampered, expired,
    alg=none, absurdly long). A token that verified is remembered (see `_verified`), so its
    signature is checked once; its expiry is checked on every call."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    key = (secret, token)
    verified = _verified.get(key)
    if verified is None:
        verified = _verify(secret, token)
        if verified is None:
            return None  # failures are not remembered: a flood of forged tokens costs nothing
        _verified[key] = verified
        if len(_verified) > _REMEMBERED:
            del _verified[next(iter(_verified))]
    claims, expires_at = verified
    return claims if time.time() < expires_at else None


# A client sends the same token on every request until it expires; HMAC and claim checks
# were a tenth of a note read's CPU. Only verified tokens, at most _REMEMBERED of them, the
# oldest forgotten first.
_REMEMBERED = 4096
_verified: dict[tuple[str, str], tuple[AccessClaims, float]] = {}


def _verify(secret: str, token: str) -> tuple[AccessClaims, float] | None:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "org", "role", "sid", "exp", "iat", "jti"]},
        )
        if claims.get("typ") != "access":
            return None
        user = AccessClaims(
            uuid.UUID(claims["sub"]),
            uuid.UUID(claims["org"]),
            Role(claims["role"]),
            uuid.UUID(claims["sid"]),
        )
        return user, float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
