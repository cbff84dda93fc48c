"""`Idempotency-Key` on POST /notes: replay, conflict, per-user scope, expiry, and one note
for many concurrent requests, through the ASGI client and through a real server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.notes.models import IdempotencyKey, Note
from tests.conftest import Account, serve, signup

BODY = {"raw_text": "Renewal call with Acme. They asked for a discount.", "title": "Acme"}


async def post(
    client: httpx.AsyncClient, account: Account, key: str, body: dict[str, str] = BODY
) -> httpx.Response:
    return await client.post(
        "/notes", headers={**account.headers, "Idempotency-Key": key}, json=body
    )


async def note_count(client: httpx.AsyncClient, account: Account) -> int:
    listed = await client.get("/notes", headers=account.headers, params={"limit": 100})
    assert listed.status_code == 200
    return len(listed.json()["items"])


async def rows(db: Database, model: type[Note] | type[IdempotencyKey]) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_same_key_and_body_replays_the_first_note(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    key = str(uuid.uuid4())
    first = await post(client, account, key)
    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers
    second = await post(client, account, key)
    assert second.status_code == 202
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"]
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["raw_text"] == BODY["raw_text"]
    assert await note_count(client, account) == 1


async def test_replay_shows_the_note_as_it_is_now(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    first = await post(client, account, "k-1")
    await client.patch(
        f"/notes/{first.json()['id']}", headers=account.headers, json={"title": "renamed"}
    )
    replay = await post(client, account, "k-1")
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["title"] == "renamed"


async def test_same_key_with_a_different_body_is_422(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    first = await post(client, account, "k-1")
    assert first.status_code == 202
    for other in (
        {"raw_text": "Something else entirely."},
        {"raw_text": BODY["raw_text"]},  # same text, title missing
        {**BODY, "title": "Other"},
    ):
        response = await post(client, account, "k-1", other)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422
        assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        assert problem["errors"][0]["msg"] == "reused with a different request body"
        assert problem["detail"] == "This Idempotency-Key was already used with a different body"
    assert await note_count(client, account) == 1


async def test_keys_are_scoped_per_user(client: httpx.AsyncClient) -> None:
    alice, bob = await signup(client), await signup(client)
    from_alice = await post(client, alice, "shared-key")
    from_bob = await post(client, bob, "shared-key")
    assert from_alice.status_code == from_bob.status_code == 202
    assert "idempotent-replayed" not in from_bob.headers
    assert from_bob.json()["id"] != from_alice.json()["id"]
    assert from_bob.json()["owner_id"] == bob.id
    assert await note_count(client, alice) == 1
    assert await note_count(client, bob) == 1


async def test_without_a_key_every_post_creates_a_note(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    for _ in range(2):
        response = await client.post("/notes", headers=account.headers, json=BODY)
        assert response.status_code == 202
        assert "idempotent-replayed" not in response.headers
    assert await note_count(client, account) == 2


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "with space", "tab\there", "del\x7fchar", "", "caf\u00e9"],
    ids=["256-chars", "space", "tab", "del", "empty", "non-ascii"],
)
async def test_malformed_key_is_422(client: httpx.AsyncClient, db: Database, key: str) -> None:
    account = await signup(client)
    headers = [
        (b"authorization", account.headers["Authorization"].encode()),
        (b"idempotency-key", key.encode("latin-1")),
    ]
    response = await client.post("/notes", headers=headers, json=BODY)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await rows(db, Note) == 0


async def test_key_of_255_printable_chars_is_accepted(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    key = ("!~" * 128)[:255]
    assert (await post(client, account, key)).status_code == 202
    assert (await post(client, account, key)).headers["idempotent-replayed"] == "true"


async def test_expired_key_creates_a_new_note(client: httpx.AsyncClient, db: Database) -> None:
    account = await signup(client)
    first = await post(client, account, "k-1")
    async with db.session(write=True) as session:
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    again = await post(client, account, "k-1")
    assert again.status_code == 202
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    # The new request owns the key now, for another 24 hours.
    replay = await post(client, account, "k-1")
    assert replay.json()["id"] == again.json()["id"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert await note_count(client, account) == 2


async def test_expired_key_may_be_reused_with_another_body(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    await post(client, account, "k-1")
    async with db.session(write=True) as session:
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(hours=1))
        )
    other = await post(client, account, "k-1", {"raw_text": "A different note."})
    assert other.status_code == 202
    assert await note_count(client, account) == 2


async def test_key_expires_24_hours_after_first_use(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    before = utcnow()
    await post(client, account, "k-1")
    async with db.session() as session:
        claim = (await session.scalars(select(IdempotencyKey))).one()
    assert timedelta(hours=24) <= claim.expires_at - before < timedelta(hours=24, seconds=30)


async def test_deleting_the_note_frees_its_key(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    first = await post(client, account, "k-1")
    deleted = await client.delete(f"/notes/{first.json()['id']}", headers=account.headers)
    assert deleted.status_code == 204
    again = await post(client, account, "k-1")
    assert again.status_code == 202
    assert again.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in again.headers


async def fire(client: httpx.AsyncClient, account: Account, key: str, n: int = 20) -> set[str]:
    responses = await asyncio.gather(*(post(client, account, key) for _ in range(n)))
    assert [r.status_code for r in responses] == [202] * n, [r.text for r in responses]
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == n - 1
    return {r.json()["id"] for r in responses}


async def test_concurrent_requests_with_one_key_create_one_note(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    ids = await fire(client, account, "race")
    assert len(ids) == 1
    assert await note_count(client, account) == 1
    assert await rows(db, Note) == 1
    assert await rows(db, IdempotencyKey) == 1


async def test_concurrent_requests_over_tcp_with_one_key_create_one_note(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    async with (
        serve(app) as base_url,
        httpx.AsyncClient(
            base_url=base_url, limits=httpx.Limits(max_connections=20), timeout=30
        ) as tcp,
    ):
        ids = await fire(tcp, account, "race-over-tcp")
        assert len(ids) == 1
        assert await note_count(tcp, account) == 1
    assert await rows(db, Note) == 1


async def test_one_users_different_keys_each_create_a_note(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    first = await post(client, account, "key-a")
    second = await post(client, account, "key-b", {"raw_text": "Another call, another note."})
    assert first.status_code == second.status_code == 202, second.text
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert await note_count(client, account) == 2


async def test_a_key_whose_first_request_is_still_in_progress_is_409(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    assert (await post(client, account, "slow")).status_code == 202
    async with db.session(write=True) as session:  # as while the first request runs
        await session.execute(update(IdempotencyKey).values(note_id=None))
    response = await post(client, account, "slow")
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["detail"] == "A request with this Idempotency-Key is still in progress"
    assert await note_count(client, account) == 1
