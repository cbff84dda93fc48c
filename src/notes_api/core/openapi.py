"""The problem+json error shape, declared once for the OpenAPI document."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

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


# Per status: what it means here, and the problem a client typically gets. 404 and 429 have
# no usual problem: each route names its own resource and its own limit.
_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: (
        "Malformed request (for example, a body that is not JSON)",
        "Malformed request",
        "The request body is not valid JSON",
    ),
    401: ("Missing, invalid or expired credentials", "Unauthorized", "Not signed in"),
    403: ("Signed in, but not allowed", "Forbidden", "Administrators only"),
    404: ("Not found, or not visible to you", "Not found", None),
    409: ("Conflicts with the current state", "Conflict", None),
    413: (
        "Request body too large",
        "Request body too large",
        "The body must be at most 1048576 bytes",
    ),
    415: (
        "The body is not sent as `Content-Type: application/json`",
        "Unsupported media type",
        "Send the body as JSON with the header 'Content-Type: application/json' "
        "(this request said 'text/plain')",
    ),
    422: ("Invalid input", "Invalid input", "The request is not valid; see errors"),
    429: ("Too many requests; see Retry-After", "Too many requests", None),
    503: (
        "Database unavailable; see Retry-After",
        "Service unavailable",
        "The database is unavailable; try again shortly",
    ),
}


def _example(code: int, detail: str | None) -> dict[str, Any]:
    _, title, usual = _ERRORS[code]
    detail = detail or usual
    if detail is None:
        raise ValueError(f"a {code} example needs the route's own detail (details={{{code}: ...}})")
    return {"type": "about:blank", "title": title, "status": code, "detail": detail}


def errors(
    *codes: int, details: dict[int, str] | None = None, database: bool = True
) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route. `details` gives the example's detail where the route
    answers its own (404 names the resource, 409 the conflict, 429 the limit: these have no
    usual one). A 422 example's `errors` are filled in from the route's own parameters and
    body when the document is built (`install`)."""
    # 503 is added to all that read the database (database=False: a route that answers
    # without it). A route that can answer 400 takes a JSON body, which may come under the
    # wrong media type: 415.
    wanted = {*codes} | ({503} if database else set()) | ({415} if 400 in codes else set())
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


BAD_UUID = "not-a-uuid"  # what the 422 example of a path id was sent


def _uuid_message() -> str:
    """pydantic's own words for BAD_UUID, so the example is what the answer says."""
    try:
        TypeAdapter(uuid.UUID).validate_python(BAD_UUID)
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"])
    raise AssertionError("unreachable")


def _field_errors(
    operation: dict[str, Any], schemas: dict[str, Any], converted: set[str]
) -> list[dict[str, Any]]:
    """The `errors` this operation answers for its most likely mistake, in the order the
    request is read: a body left out (each required field), a path id that is not a UUID, a
    number past its bound, a field the body does not have."""
    body: dict[str, Any] = {}
    for media in operation.get("requestBody", {}).get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        body = schemas.get(ref.rsplit("/", 1)[-1], {})
    if body.get("required"):
        return [{"loc": ["body", name], "msg": "Field required"} for name in body["required"]]
    params = operation.get("parameters", [])
    for param in params:
        schema = param.get("schema", {})
        # A `{id:uuid}` route (`converted`) never sees a non-UUID: that path is a 404.
        uuid_path = param["in"] == "path" and schema.get("format") == "uuid"
        if uuid_path and param["name"] not in converted:
            return [{"loc": ["path", param["name"]], "msg": _uuid_message()}]
    for param in params:
        limits = bounds(param.get("schema", {}))
        if "maximum" in limits:
            msg = f"Input should be less than or equal to {limits['maximum']}"
            return [{"loc": [param["in"], param["name"]], "msg": msg}]
        if "minimum" in limits:
            msg = f"Input should be greater than or equal to {limits['minimum']}"
            return [{"loc": [param["in"], param["name"]], "msg": msg}]
    if body.get("additionalProperties") is False:
        return [{"loc": ["body", "unknown_field"], "msg": "Extra inputs are not permitted"}]
    return []


def bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's `maximum`/`minimum`, also when it is optional (`anyOf` with null)."""
    for option in [schema, *schema.get("anyOf", [])]:
        found = {k: option[k] for k in ("maximum", "minimum") if k in option}
        if found:
            return found
    return {}


def field_errors_in_examples(document: dict[str, Any], converted: set[str]) -> dict[str, Any]:
    """Each operation's 422 example gets that operation's own `errors`; an operation that has
    no input to get wrong has no 422."""
    schemas = document.get("components", {}).get("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            found = _field_errors(operation, schemas, converted)
            if not found:
                del operation["responses"]["422"]
                continue
            response["content"][PROBLEM_JSON]["example"]["errors"] = found
    return document


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
    """The app's OpenAPI document, built once, with errors as problem+json only and each
    422 example drawn from its own operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # Path parameters with a `:uuid` convertor: a non-UUID there is a 404, not a 422.
            converted = {
                name
                for route in iter_route_contexts(app.routes)
                for name in re.findall(r"{(\w+):uuid}", getattr(route, "path", ""))
            }
            document = problem_json_only(build())
            app.openapi_schema = field_errors_in_examples(document, converted)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
