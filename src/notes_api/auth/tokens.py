"""Access tokens are short-lived HS256 JWTs; refresh tokens are opaque random strings
stored only as their SHA-256, so a database leak gives no usable token."""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from notes_api.core.models import utcnow
from notes_api.users.models import Role

ALGORITHM = "HS256"
ISSUER = "notes-api"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a user, its organization, and its role."""

    id: uuid.UUID
    organization_id: uuid.UUID
    role: Role


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: Role

    @property
    def caller(self) -> Caller:
        """The caller as the token describes it, until the database confirms it."""
        return Caller(self.user_id, self.organization_id, self.role)


def create_access_token(
    secret: str,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    role: str,
    ttl: int,
    now: datetime | None = None,
) -> str:
    issued = now or utcnow()
    claims = {
        "sub": str(user_id),
        "org": str(organization_id),
        "role": role,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl),
        "jti": secrets.token_hex(8),
        "iss": ISSUER,
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(secret: str, token: str) -> AccessClaims | None:
    """The claims of a valid token, or None for anything else (tampered, expired, alg=none).
    The signature is checked once per token (see `_verify`); the expiry on every call."""
    verified = _verify(secret, token)
    if verified is None:
        return None
    claims, expires_at = verified
    return claims if time.time() < expires_at else None


# A client sends the same token on every request until it expires; HMAC and claim checks
# were a tenth of a note read's CPU. Bounded, so a flood of forged tokens only evicts.
@functools.lru_cache(maxsize=4096)
def _verify(secret: str, token: str) -> tuple[AccessClaims, float] | None:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "org", "role", "exp", "iat", "jti"]},
        )
        if claims.get("typ") != "access":
            return None
        user = AccessClaims(
            uuid.UUID(claims["sub"]), uuid.UUID(claims["org"]), Role(claims["role"])
        )
        return user, float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
