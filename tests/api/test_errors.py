"""Every error is RFC 9457 problem+json, and hostile input gets a 4xx, never a 500."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from notes_api.main import MAX_BODY_BYTES
from tests.conftest import Account, create_note, serve, signup

PROBLEM_FIELDS = {"type", "title", "status", "detail"}


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == response.status_code
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert "Traceback" not in response.text
    return body


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    return await signup(client)


async def post_raw(
    client: httpx.AsyncClient, account: Account, content: bytes | Any
) -> httpx.Response:
    headers = {**account.headers, "Content-Type": "application/json"}
    return await client.post("/notes", headers=headers, content=content)


@pytest.mark.parametrize("path", ["/nope", "/notes/x/y/z", "/users/me/extra"])
async def test_unknown_route_is_404_problem(client: httpx.AsyncClient, path: str) -> None:
    assert_problem(await client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/notes"),
        ("DELETE", "/notes"),
        # A fixed id, not uuid4(): the test's id must be the same in every xdist worker.
        ("PUT", "/notes/3f2a9c4e-8d1b-4e6a-9b7c-2d5e8f1a0c43"),
        ("POST", "/healthz"),
    ],
)
async def test_wrong_method_is_405_problem(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert_problem(response, 405)
    assert "allow" in response.headers


@pytest.mark.parametrize(
    "content",
    [b'{"raw_text": ', b"{raw_text: 'x'}", b'{"raw_text": "x",}', b"not json at all"],
    ids=["truncated", "js-object", "trailing-comma", "text"],
)
async def test_malformed_json_is_400_problem(
    client: httpx.AsyncClient, account: Account, content: bytes
) -> None:
    assert_problem(await post_raw(client, account, content), 400)


async def test_validation_error_lists_loc_and_msg(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        "/notes", headers=account.headers, json={"title": 5, "colour": "red"}
    )
    body = assert_problem(response, 422)
    assert body["errors"]
    for error in body["errors"]:
        assert set(error) == {"loc", "msg"}
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str)
    locs = [e["loc"] for e in body["errors"]]
    assert ["body", "raw_text"] in locs
    assert ["body", "title"] in locs
    assert ["body", "colour"] in locs


async def test_unknown_json_field_is_422(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post(
        "/notes", headers=account.headers, json={"raw_text": "fine", "tittle": "typo"}
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", "tittle"]


@pytest.mark.parametrize("content", [b"[]", b'"text"', b"42", b"null", b""])
async def test_body_that_is_not_an_object_is_422(
    client: httpx.AsyncClient, account: Account, content: bytes
) -> None:
    assert_problem(await post_raw(client, account, content), 422)


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body streamed without Content-Length (Transfer-Encoding: chunked)."""
    yield b'{"raw_text": "'
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size
    yield b'"}'


def padded_body(size: int) -> bytes:
    """A valid note body of exactly `size` bytes (JSON allows trailing whitespace)."""
    body = json.dumps({"raw_text": "Padded note."}).encode()
    return body + b" " * (size - len(body))


async def test_body_over_1_mib_with_content_length_is_413(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await post_raw(client, account, padded_body(MAX_BODY_BYTES + 1))
    assert_problem(response, 413)


async def test_body_of_exactly_1_mib_is_accepted(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await post_raw(client, account, padded_body(MAX_BODY_BYTES))
    assert response.status_code == 202, response.text


async def test_streamed_body_over_1_mib_without_content_length_is_413(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await post_raw(client, account, chunks(2 * MAX_BODY_BYTES))
    assert_problem(response, 413)
    listed = await client.get("/notes", headers=account.headers)
    assert listed.json()["items"] == []


async def test_streamed_small_body_without_content_length_is_accepted(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await post_raw(client, account, chunks(1000, size=100))
    assert response.status_code == 202, response.text
    assert response.json()["raw_text"] == "x" * 1000


async def test_oversized_bodies_are_413_over_real_http(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as tcp:
        declared = await post_raw(tcp, account, padded_body(MAX_BODY_BYTES + 1))
        assert_problem(declared, 413)
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=30) as tcp:
        streamed = await post_raw(tcp, account, chunks(2 * MAX_BODY_BYTES))
        assert_problem(streamed, 413)
        fine = await post_raw(tcp, account, chunks(1000, size=100))
        assert fine.status_code == 202, fine.text
    listed = await client.get("/notes", headers=account.headers)
    assert len(listed.json()["items"]) == 1


async def test_note_of_100000_chars_is_accepted_100001_is_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    longest = await client.post("/notes", headers=account.headers, json={"raw_text": "a" * 100_000})
    assert longest.status_code == 202
    assert len(longest.json()["raw_text"]) == 100_000
    multibyte = await client.post(
        "/notes", headers=account.headers, json={"raw_text": "\u00e9" * 100_000}
    )
    assert multibyte.status_code == 202  # characters are counted, not bytes
    too_long = await client.post(
        "/notes", headers=account.headers, json={"raw_text": "a" * 100_001}
    )
    body = assert_problem(too_long, 422)
    assert body["errors"][0]["loc"] == ["body", "raw_text"]


@pytest.mark.parametrize(
    "text",
    ["", " ", "   \n\t  ", "\u00a0\u2003"],
    ids=["empty", "space", "whitespace", "unicode-spaces"],
)
async def test_blank_raw_text_is_422(
    client: httpx.AsyncClient, account: Account, text: str
) -> None:
    response = await client.post("/notes", headers=account.headers, json={"raw_text": text})
    assert_problem(response, 422)


async def test_blank_raw_text_in_patch_is_422(client: httpx.AsyncClient, account: Account) -> None:
    note = await create_note(client, account)
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"raw_text": "  "}
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "content",
    [b'{"raw_text": "a\\u0000b"}', b'{"raw_text": "ok", "title": "a\\u0000b"}'],
    ids=["raw_text", "title"],
)
async def test_nul_character_is_422(
    client: httpx.AsyncClient, account: Account, content: bytes
) -> None:
    assert_problem(await post_raw(client, account, content), 422)


async def test_nul_character_in_patch_is_422(client: httpx.AsyncClient, account: Account) -> None:
    note = await create_note(client, account)
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, content=b'{"raw_text": "a\\u0000b"}'
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "content",
    [
        b'{"raw_text": "\\ud800"}',
        b'{"raw_text": "a\\udfffb"}',
        b'{"raw_text": "ok", "title": "\\ud800"}',
    ],
    ids=["high", "low", "title"],
)
async def test_lone_surrogate_escape_is_422(
    client: httpx.AsyncClient, account: Account, content: bytes
) -> None:
    assert_problem(await post_raw(client, account, content), 422)


async def test_surrogate_pair_escape_is_a_valid_character(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await post_raw(client, account, b'{"raw_text": "smile \\ud83d\\ude00"}')
    assert response.status_code == 202
    assert response.json()["raw_text"] == "smile \U0001f600"


@pytest.mark.parametrize(
    "content",
    [b'{"raw_text": "\xff\xfe"}', b'{"raw_text": "\xed\xa0\x80"}', b"\xc3\x28"],
    ids=["ff-fe", "encoded-surrogate", "bad-continuation"],
)
async def test_invalid_utf8_body_is_400_or_422(
    client: httpx.AsyncClient, account: Account, content: bytes
) -> None:
    assert_problem(await post_raw(client, account, content), 400, 422)


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 10_000,
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000,
        b'{"raw_text": "x", "title": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    ],
    ids=["open-arrays", "closed-arrays", "objects", "inside-field"],
)
async def test_deeply_nested_json_is_4xx(
    client: httpx.AsyncClient, account: Account, content: bytes
) -> None:
    response = await post_raw(client, account, content)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)


async def test_title_is_trimmed_and_limited(client: httpx.AsyncClient, account: Account) -> None:
    ok = await client.post(
        "/notes", headers=account.headers, json={"raw_text": "x", "title": "  " + "t" * 200 + "  "}
    )
    assert ok.status_code == 202
    assert ok.json()["title"] == "t" * 200
    blank = await client.post(
        "/notes", headers=account.headers, json={"raw_text": "x", "title": "   "}
    )
    assert blank.status_code == 202
    assert blank.json()["title"] is None
    too_long = await client.post(
        "/notes", headers=account.headers, json={"raw_text": "x", "title": "t" * 201}
    )
    assert_problem(too_long, 422)


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/retry")]
)
@pytest.mark.parametrize("note_id", ["123", "'%20OR%201=1--"])
async def test_non_uuid_note_id_is_422(
    client: httpx.AsyncClient, account: Account, method: str, suffix: str, note_id: str
) -> None:
    body = {"title": "x"} if method == "PATCH" else None
    response = await client.request(
        method, f"/notes/{note_id}{suffix}", headers=account.headers, json=body
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path", "note_id"]


async def test_missing_token_is_401_problem_with_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/notes")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "text/plain; charset=utf-8"]
)
async def test_json_body_without_json_content_type_is_told_which_header_to_send(
    client: httpx.AsyncClient, account: Account, content_type: str
) -> None:
    body = json.dumps({"raw_text": "Call Dana back."}).encode()
    response = await client.post(
        "/notes", content=body, headers={**account.headers, "Content-Type": content_type}
    )
    problem = assert_problem(response, 415)
    assert "Content-Type: application/json" in problem["detail"]
    assert content_type in problem["detail"]


async def test_a_json_array_sent_as_json_is_still_invalid_input(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/notes", json=["not", "an", "object"], headers=account.headers)
    assert_problem(response, 422)


async def test_allow_on_users_me_names_only_its_own_methods(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.delete("/users/me", headers=account.headers)
    assert_problem(response, 405)
    assert response.headers["Allow"] == "GET"
    response = await client.patch("/users/me", headers=account.headers, json={"role": "ADMIN"})
    assert_problem(response, 405)
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-01-31", "yesterday"])
async def test_time_filters_take_only_iso_8601_date_times(
    client: httpx.AsyncClient, account: Account, value: str
) -> None:
    response = await client.get("/notes", params={"created_before": value}, headers=account.headers)
    problem = assert_problem(response, 422)
    assert "ISO 8601" in problem["errors"][0]["msg"]


async def test_time_filters_accept_iso_8601_with_an_offset(
    client: httpx.AsyncClient, account: Account
) -> None:
    for value in ("2026-01-31T09:00:00Z", "2026-01-31T09:00:00+02:00", "2026-01-31 09:00Z"):
        response = await client.get(
            "/notes", params={"created_after": value}, headers=account.headers
        )
        assert response.status_code == 200, response.text


async def test_the_schema_says_a_password_may_not_hold_nul(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    for model in ("SignupRequest", "UserCreate"):
        pattern = schema["components"]["schemas"][model]["properties"]["password"]["pattern"]
        assert re.fullmatch(pattern, "correct horse")
        assert not re.fullmatch(pattern, "correct\x00horse")
    response = await client.post(
        "/auth/signup", json={"email": "nul@example.com", "password": "correct\x00horse"}
    )
    assert_problem(response, 422)
