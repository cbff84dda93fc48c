"""Domain errors carry their HTTP status; one set of handlers renders RFC 9457 problems."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status: int = 400
    title: str = "Bad request"
    # Some refusals must still persist what led to them (a failed-login count, a revoked
    # token family): the request's transaction commits instead of rolling back.
    keep_writes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.errors = errors


class NotFound(AppError):
    status, title = 404, "Not found"


class Conflict(AppError):
    status, title = 409, "Conflict"


class Forbidden(AppError):
    status, title = 403, "Forbidden"


class Unauthorized(AppError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidInput(AppError):
    status, title = 422, "Invalid input"


class TooManyRequests(AppError):
    status, title = 429, "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(AppError):
    status, title = 503, "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 2) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem answer sent straight through ASGI, for middleware that answers before (or
    instead of) the app."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
