"""GET /notes: keyset pages, cursor hygiene, and the filters."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from notes_api.core.db import Database
from notes_api.notes.models import Note, NoteStatus
from tests.conftest import NOTE_FIELDS, Account, create_note, signup


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def walk(
    client: httpx.AsyncClient, account: Account, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/notes", headers=account.headers, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor never ends"


async def set_created(db: Database, note_id: str, when: datetime) -> None:
    async with db.session(write=True) as session:
        await session.execute(
            update(Note).where(Note.id == uuid.UUID(note_id)).values(created_at=when)
        )


def assert_problem_422(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "errors"} <= body.keys()
    return body


async def test_pages_of_7_visit_25_notes_once_newest_first(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    created = [(await create_note(client, account, f"note {i}"))["id"] for i in range(25)]
    pages = await walk(client, account, limit=7)
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    seen = [item["id"] for page in pages for item in page]
    assert seen == list(reversed(created))
    assert all(set(item) == NOTE_FIELDS for page in pages for item in page)
    stamps = [item["created_at"] for page in pages for item in page]
    assert stamps == sorted(stamps, reverse=True)


async def test_exactly_full_last_page_has_null_cursor(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    for i in range(6):
        await create_note(client, account, f"note {i}")
    pages = await walk(client, account, limit=3)
    assert [len(p) for p in pages] == [3, 3]


async def test_default_page_size_is_20(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    for i in range(21):
        await create_note(client, account, f"note {i}")
    first = await client.get("/notes", headers=account.headers)
    assert len(first.json()["items"]) == 20
    assert first.json()["next_cursor"]


async def test_empty_list_has_no_cursor(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.get("/notes", headers=account.headers)
    assert response.json() == {"items": [], "next_cursor": None}


async def test_notes_sharing_a_timestamp_are_each_listed_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    ids = [(await create_note(client, account, f"note {i}"))["id"] for i in range(7)]
    same = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    for note_id in ids:
        await set_created(db, note_id, same)
    pages = await walk(client, account, limit=2)
    seen = [item["id"] for page in pages for item in page]
    assert seen == sorted(ids, reverse=True)  # once each, the tie broken by id, as the cursor is


async def test_cursor_does_not_leak_other_users_notes(client: httpx.AsyncClient) -> None:
    alice, bob = await signup(client), await signup(client)
    for i in range(3):
        await create_note(client, alice, f"alice {i}")
        await create_note(client, bob, f"bob {i}")
    first = await client.get("/notes", headers=alice.headers, params={"limit": 1})
    cursor = first.json()["next_cursor"]
    # Bob replays Alice's cursor: he only ever moves within his own notes.
    bobs = await client.get("/notes", headers=bob.headers, params={"cursor": cursor})
    assert all(item["owner_id"] == bob.id for item in bobs.json()["items"])


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", ""])
async def test_limit_outside_1_to_100_is_422(client: httpx.AsyncClient, limit: str) -> None:
    account = await signup(client)
    response = await client.get("/notes", headers=account.headers, params={"limit": limit})
    body = assert_problem_422(response)
    assert body["errors"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("limit", [1, 100])
async def test_limit_bounds_are_accepted(client: httpx.AsyncClient, limit: int) -> None:
    account = await signup(client)
    response = await client.get("/notes", headers=account.headers, params={"limit": limit})
    assert response.status_code == 200


FORGED_CURSORS = {
    "random-base64": base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode(),
    "garbage": "!!!not a cursor!!!",
    "non-ascii": "caf\u00e9",
    "bad-date": cursor_of(["not-a-date", str(uuid.uuid4())]),
    "naive-date": cursor_of(["2025-01-01T00:00:00", str(uuid.uuid4())]),
    "bad-uuid": cursor_of(["2025-01-01T00:00:00+00:00", "not-a-uuid"]),
    "number-as-id": cursor_of(["2025-01-01T00:00:00+00:00", 5]),
    "list-as-id": cursor_of(["2025-01-01T00:00:00+00:00", [1]]),
    "number-as-date": cursor_of([20250101, str(uuid.uuid4())]),
    "date-out-of-range": cursor_of(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
    "three-items": cursor_of(["2025-01-01T00:00:00+00:00", str(uuid.uuid4()), 1]),
    "object": cursor_of({"created_at": "2025-01-01T00:00:00+00:00"}),
    "null": cursor_of(None),
    "too-long": "A" * 201,
}


@pytest.mark.parametrize("cursor", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
async def test_forged_cursor_is_422_problem(client: httpx.AsyncClient, cursor: str) -> None:
    account = await signup(client)
    await create_note(client, account)
    response = await client.get("/notes", headers=account.headers, params={"cursor": cursor})
    body = assert_problem_422(response)
    assert body["errors"][0]["loc"] == ["query", "cursor"]


async def test_cursor_from_another_timezone_is_honoured(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    older = await create_note(client, account, "older")
    newer = await create_note(client, account, "newer")
    await set_created(db, older["id"], datetime(2025, 1, 1, 10, 0, tzinfo=UTC))
    await set_created(db, newer["id"], datetime(2025, 1, 1, 12, 0, tzinfo=UTC))
    # 11:00 UTC written as 13:00+02:00: only the older note comes after it.
    cursor = cursor_of(["2025-01-01T13:00:00+02:00", str(uuid.UUID(int=0))])
    response = await client.get("/notes", headers=account.headers, params={"cursor": cursor})
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [older["id"]]


async def test_status_filter(client: httpx.AsyncClient, db: Database) -> None:
    account = await signup(client)
    notes = [await create_note(client, account, f"note {i}") for i in range(3)]
    async with db.session(write=True) as session:
        await session.execute(
            update(Note)
            .where(Note.id == uuid.UUID(notes[0]["id"]))
            .values(status=NoteStatus.DONE, summary="S.")
        )
        await session.execute(
            update(Note)
            .where(Note.id == uuid.UUID(notes[1]["id"]))
            .values(status=NoteStatus.FAILED, error="boom")
        )

    async def listed(status: str) -> set[str]:
        response = await client.get("/notes", headers=account.headers, params={"status": status})
        assert response.status_code == 200
        return {item["id"] for item in response.json()["items"]}

    assert await listed("done") == {notes[0]["id"]}
    assert await listed("failed") == {notes[1]["id"]}
    assert await listed("queued") == {notes[2]["id"]}
    assert await listed("processing") == set()
    bad = await client.get("/notes", headers=account.headers, params={"status": "cancelled"})
    assert_problem_422(bad)


async def test_status_filter_pages_through_matches_only(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    notes = [await create_note(client, account, f"note {i}") for i in range(9)]
    done = {n["id"] for n in notes[::2]}
    async with db.session(write=True) as session:
        await session.execute(
            update(Note)
            .where(Note.id.in_([uuid.UUID(i) for i in done]))
            .values(status=NoteStatus.DONE)
        )
    pages = await walk(client, account, limit=2, status="done")
    assert {item["id"] for page in pages for item in page} == done


@pytest.fixture
async def texts(client: httpx.AsyncClient) -> tuple[Account, dict[str, str]]:
    account = await signup(client)
    made = {
        "percent": await create_note(client, account, "We are 100% sure about the deal."),
        "percentless": await create_note(client, account, "We are 100 sure about the deal."),
        "underscore": await create_note(client, account, "Field snake_case is required."),
        "no-underscore": await create_note(client, account, "Field snakeXcase is required."),
        "backslash": await create_note(client, account, r"Path C:\temp\acme is shared."),
        "titled": await create_note(client, account, "Body says nothing.", title="Globex"),
        "percent-title": await create_note(client, account, "Up, says the body.", title="Up 5%"),
        "mixed": await create_note(client, account, "Meeting with GLOBEX tomorrow."),
    }
    return account, {name: note["id"] for name, note in made.items()}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("globex", {"titled", "mixed"}),
        ("GlObEx", {"titled", "mixed"}),
        ("%", {"percent", "percent-title"}),
        ("5%", {"percent-title"}),  # in a title, as literal as in a body
        ("100%", {"percent"}),
        ("_", {"underscore"}),
        ("snake_case", {"underscore"}),
        ("\\", {"backslash"}),
        (r"\temp", {"backslash"}),
        ("deal", {"percent", "percentless"}),
        ("nowhere to be found", set()),
    ],
)
async def test_q_is_case_insensitive_literal_substring(
    client: httpx.AsyncClient,
    texts: tuple[Account, dict[str, str]],
    q: str,
    expected: set[str],
) -> None:
    account, ids = texts
    response = await client.get("/notes", headers=account.headers, params={"q": q})
    assert response.status_code == 200, response.text
    found = {item["id"] for item in response.json()["items"]}
    assert found == {ids[name] for name in expected}


@pytest.mark.parametrize("q", ["", "x" * 201, "a\x00b"], ids=["empty", "201-chars", "nul"])
async def test_unusable_q_is_422(client: httpx.AsyncClient, q: str) -> None:
    account = await signup(client)
    await create_note(client, account)
    response = await client.get("/notes", headers=account.headers, params={"q": q})
    assert_problem_422(response)


@pytest.mark.parametrize("raw", ["%ED%A0%80", "%FF", "%C3%28"], ids=["surrogate", "ff", "bad-2"])
async def test_q_with_undecodable_bytes_never_fails_the_server(
    client: httpx.AsyncClient, raw: str
) -> None:
    account = await signup(client)
    await create_note(client, account)
    response = await client.get(f"/notes?q={raw}", headers=account.headers)
    assert response.status_code in (200, 422), response.text


async def test_created_after_and_before(client: httpx.AsyncClient, db: Database) -> None:
    account = await signup(client)
    base = datetime(2025, 6, 1, tzinfo=UTC)
    ids = []
    for day in range(5):
        note = await create_note(client, account, f"day {day}")
        await set_created(db, note["id"], base + timedelta(days=day))
        ids.append(note["id"])

    async def listed(**params: str) -> list[str]:
        response = await client.get("/notes", headers=account.headers, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await listed(created_after="2025-06-02T12:00:00Z") == ids[:1:-1]
    assert await listed(created_before="2025-06-02T12:00:00Z") == [ids[1], ids[0]]
    both = await listed(
        created_after="2025-06-01T12:00:00Z", created_before="2025-06-04T00:00:00+00:00"
    )
    assert both == [ids[2], ids[1]]
    # Bounds are exclusive, and offsets other than UTC mean the same instant.
    assert await listed(created_after="2025-06-03T02:00:00+02:00") == [ids[4], ids[3]]
    assert await listed(created_after="2025-06-05T00:00:00Z") == []
    pages = await walk(client, account, limit=1, created_before="2025-06-04T00:00:01Z")
    assert [item["id"] for page in pages for item in page] == [ids[3], ids[2], ids[1], ids[0]]


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-06-01T00:00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
    ],
    ids=["word", "bad-month", "naive", "underflows-utc", "overflows-utc"],
)
@pytest.mark.parametrize("param", ["created_after", "created_before"])
async def test_unusable_created_bound_is_422(
    client: httpx.AsyncClient, param: str, value: str
) -> None:
    account = await signup(client)
    await create_note(client, account)
    response = await client.get("/notes", headers=account.headers, params={param: value})
    body = assert_problem_422(response)
    assert body["errors"][0]["loc"] == ["query", param]


async def test_owner_id_must_be_a_uuid(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.get("/notes", headers=account.headers, params={"owner_id": "1"})
    assert_problem_422(response)
