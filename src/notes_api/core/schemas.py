"""Shared pieces of the API's schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)


def _clean_text(value: str) -> str:
    """Text any database can store: Postgres refuses NUL, and lone surrogates are not UTF-8."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def is_storable_text(value: str) -> bool:
    try:
        _clean_text(value)
    except ValueError:
        return False
    return True


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 has no UTC equivalent
        raise ValueError("is out of range in UTC") from None


def normalize_email(value: str) -> str:
    try:
        # Deliverability needs DNS, which a sign-up must not wait for; reserved test
        # domains (example.test) are fine for an internal CRM.
        info = validate_email(value, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return info.normalized.lower()


Email = Annotated[
    str,
    StringConstraints(max_length=254),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
    AfterValidator(_clean_text),
    AfterValidator(normalize_email),
]
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=128),
    # The schema states what `_clean_text` enforces, so a client knows NUL is refused.
    Field(
        description="8 to 128 characters, any but NUL (U+0000)",
        json_schema_extra={"pattern": "^[^\\u0000]*$"},
    ),
    AfterValidator(_clean_text),
]


MAX_NOTE_CHARS = 100_000
NoteText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NOTE_CHARS),
    AfterValidator(_clean_text),
    AfterValidator(_not_blank),
]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_clean_text)
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=120),
    AfterValidator(_clean_text),
    # Blank is refused as blank (" " and a no-break space alike), then the name is trimmed.
    AfterValidator(_not_blank),
    AfterValidator(str.strip),
]
SearchText = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_clean_text)
]
_ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _iso_8601_only(value: object) -> object:
    """pydantic would read `0.5` or `1700000000` as Unix time, which `date-time` does not say."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_8601.match(value):
        raise ValueError("must be an ISO 8601 date-time with an offset, e.g. 2026-01-31T09:00:00Z")
    return value


# A naive time would be guessed at; the columns compare instants, so an offset is required.
UTCTimestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only), AfterValidator(_to_utc)]


# Unknown fields named in one 422: a body of 90,000 unknown keys would otherwise cost 90,000
# errors, seconds of CPU and a 5 MB answer, before anyone is signed in.
MAX_UNKNOWN_FIELDS = 20


def _check_stored(value: Any) -> None:
    """Every string a request carries, however deeply nested, keys included. A loop, not
    recursion: JSON nested as deep as the parser allows must not exhaust the stack here."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _clean_text(item)
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())


class RequestModel(BaseModel):
    """Request bodies reject unknown fields: a typo or a smuggled `role` is an error. Every
    text a body carries is text every database can store (no NUL, no lone surrogate): one
    rule for every field of every body, present and future, so none reaches Postgres to be
    refused there as a 500."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > len(cls.__pydantic_fields__) + MAX_UNKNOWN_FIELDS:
            known = {field.alias or name for name, field in cls.__pydantic_fields__.items()}
            unknown = [k for k in data if k not in known][:MAX_UNKNOWN_FIELDS]
            # The known ones and the first few unknown ones, which extra="forbid" refuses.
            return {k: data[k] for k in (*(k for k in data if k in known), *unknown)}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        _check_stored(value)
        return value


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
