"""The problem+json error shape, declared once for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from notes_api.core.errors import PROBLEM_JSON


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank")
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["Note not found"])
    errors: list[FieldError] | None = None


_DESCRIPTIONS = {
    400: "Malformed request (for example, a body that is not JSON)",
    401: "Missing, invalid or expired credentials",
    403: "Signed in, but not allowed",
    404: "Not found, or not visible to you",
    409: "Conflicts with the current state",
    413: "Request body too large",
    415: "The body is not sent as `Content-Type: application/json`",
    422: "Invalid input",
    429: "Too many attempts; see Retry-After",
    503: "Database unavailable; see Retry-After",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    # 503 is added to all: every route that declares errors reads the database.
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in sorted({*codes, 503})
    }
