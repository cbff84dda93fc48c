"""Every error leaves as RFC 9457 application/problem+json, with no stack trace."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from notes_api.core.errors import PROBLEM_JSON, AppError

log = structlog.get_logger("notes_api.errors")

# A 422 lists at most this many errors: enough to fix a request, and a small answer however
# broken the request (request bodies also stop at MAX_UNKNOWN_FIELDS unknown keys).
MAX_LISTED_ERRORS = 20


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _loc(loc: Any) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in loc]


async def app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem(exc.status, exc.detail, title=exc.title, headers=exc.headers, errors=exc.errors)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette names only the first route matching the path; RFC 9110 wants them all.
        path = request.url.path
        allowed = {
            m
            for r in iter_route_contexts(request.app.routes)
            if r.path_regex.match(path)
            for m in r.methods or ()
        }
        headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
    return problem(exc.status_code, detail, headers=headers)


def _sent_as_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return not media_type or media_type == "application/json" or media_type.endswith("+json")


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem(400, "The request body is not valid JSON", title="Malformed request")
    # A JSON body under another media type (curl -d sends form-urlencoded) reaches the model
    # as bytes, and pydantic's complaint would not say what to change.
    if not _sent_as_json(request) and any(
        tuple(e.get("loc", ())) == ("body",) and e.get("type") == "model_attributes_type"
        for e in errors
    ):
        sent = request.headers.get("content-type", "")
        return problem(
            415,
            f"Send the body as JSON with the header 'Content-Type: application/json' "
            f"(this request said {sent!r})",
            title="Unsupported media type",
        )
    items = [
        {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "invalid"))}
        for e in errors[:MAX_LISTED_ERRORS]
    ]
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        items = _missing_body(request) or items
    detail = "The request is not valid; see errors"
    if len(errors) > MAX_LISTED_ERRORS:
        detail += f" (the first {MAX_LISTED_ERRORS} of {len(errors)})"
    return problem(422, detail, title="Invalid input", errors=items)


def _missing_body(request: Request) -> list[dict[str, Any]]:
    """No body at all: name each field the route requires, as if `{}` had been sent, so the
    answer says what to send instead of `loc: ["body"]`."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    fields = getattr(model, "model_fields", {})
    return [
        {"loc": ["body", f.alias or name], "msg": "Field required"}
        for name, f in fields.items()
        if f.is_required()
    ]


async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("db.unavailable", error=type(exc).__name__)
    return problem(
        503,
        "The database is unavailable; try again shortly",
        title="Service unavailable",  # as every other problem's title: sentence case
        headers={"Retry-After": "2"},
    )


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return await database_unavailable(request, exc)
    if isinstance(exc, IntegrityError):
        # A constraint refused a write that a concurrent request made first: the writes
        # lock rows so this should not happen, but if it does the answer is a conflict.
        log.warning("db.integrity_conflict", constraint=_constraint(exc))
        return problem(409, "The request conflicts with a concurrent change; try again")
    return await unexpected(request, exc)


def _constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


async def unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("http.unhandled", error=type(exc).__name__, exc_info=exc)
    return problem(500, "Something went wrong on our side")


def install(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(PoolTimeout, database_unavailable)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(Exception, unexpected)
