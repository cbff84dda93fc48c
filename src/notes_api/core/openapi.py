"""The problem+json error shape, declared once for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from notes_api.core.errors import PROBLEM_JSON


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(default="about:blank")
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


# Per status: what it means here, and the problem a client typically gets.
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "Malformed request (for example, a body that is not JSON)",
        "Malformed request",
        "The request body is not valid JSON",
    ),
    401: (
        "Missing, invalid or expired credentials",
        "Unauthorized",
        "Invalid or expired access token",
    ),
    403: ("Signed in, but not allowed", "Forbidden", "Administrators only"),
    404: ("Not found, or not visible to you", "Not found", "Note not found"),
    409: (
        "Conflicts with the current state",
        "Conflict",
        "The request conflicts with the current state; see detail",
    ),
    413: (
        "Request body too large",
        "Request body too large",
        "The body must be at most 1048576 bytes",
    ),
    415: (
        "The body is not sent as `Content-Type: application/json`",
        "Unsupported media type",
        "Send the body as JSON with the header 'Content-Type: application/json'",
    ),
    422: ("Invalid input", "Invalid input", "The request is not valid; see errors"),
    429: (
        "Too many attempts; see Retry-After",
        "Too many requests",
        "Too many failed logins; try again later",
    ),
    503: (
        "Database unavailable; see Retry-After",
        "Service unavailable",
        "The database is unavailable; try again shortly",
    ),
}
_FIELD_ERRORS = [{"loc": ["body", "raw_text"], "msg": "Field required"}]


def _example(code: int, detail: str | None) -> dict[str, Any]:
    _, title, usual = _ERRORS[code]
    example: dict[str, Any] = {"type": "about:blank", "title": title, "status": code}
    example["detail"] = detail or usual
    if code == 422:
        example["errors"] = _FIELD_ERRORS
    return example


def errors(*codes: int, details: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route; `details` gives an example's detail for a status where
    the usual one would not fit the route."""
    # 503 is added to all: every route that declares errors reads the database. A route that
    # can answer 413 takes a body, which may come under the wrong media type: 415.
    wanted = {*codes, 503} | ({415} if 413 in codes else set())
    return {
        code: {
            "model": Problem,
            "description": _ERRORS[code][0],
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": _example(code, (details or {}).get(code)),
                }
            },
        }
        for code in sorted(wanted)
    }


def problem_json_only(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI files a response `model` under `application/json` as well; errors are only
    ever sent as problem+json, so that is the one media type they list."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON in content:
                    content.pop("application/json", None)
    return document


def install(app: FastAPI) -> None:
    """The app's OpenAPI document, built once, with errors as problem+json only."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_json_only(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
