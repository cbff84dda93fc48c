"""Streams on one API process with its embedded worker, on SQLite and Postgres: a note's
life as it happens, resuming with Last-Event-ID, tenancy, limits, and the end of a stream
whose caller may no longer see it."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.events import repository as event_log
from notes_api.users.tokens import create_access_token
from tests.conftest import add_user, create_note, make_settings, signup
from tests.events.sse import Reader, open_stream

lags: dict[int, float] = {}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        worker_embedded=True,
        # The production lease, not the suite's 2 s: these tests count each note's events,
        # and on a loaded machine a 2 s lease can run out before its renewal gets the CPU,
        # so the job is (rightly) run again. Leases have their own tests in tests/jobs/.
        job_lease_seconds=30.0,
        event_heartbeat_seconds=0.5,
        event_poll_interval=0.5,
        event_streams_per_user=3,
    )


async def _types_until(reader: Reader, last: str, note_id: str) -> list[tuple[str, float, int]]:
    """(type, arrival, id) of `note_id`'s events, up to the first of type `last`; each
    event's delay from its commit to its arrival goes in `lags`."""
    seen: list[tuple[str, float, int]] = []
    while True:
        event = await reader.next()
        body = event.json
        assert event.id == str(body["id"]) and event.event == body["type"]
        if body["data"]["id"] != note_id:
            continue
        lags[body["id"]] = time.time() - datetime.fromisoformat(body["occurred_at"]).timestamp()
        seen.append((body["type"], event.at, body["id"]))
        if body["type"] == last:
            return seen


async def test_a_note_is_seen_queued_processing_done_as_it_happens(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    agent = await signup(client)
    async with open_stream(base_url, "/notes/events", agent.access_token) as reader:
        hello = await reader.next(comments=True)
        assert hello.retry == 3000
        note = await create_note(client, agent, "A stream shows this. It has two sentences.")
        posted = time.monotonic()
        seen = await _types_until(reader, "note.done", note["id"])
    assert [t for t, _, _ in seen] == ["note.queued", "note.processing", "note.done"]
    assert seen[0][1] - posted < 1.0
    assert all(lag < 1.0 for lag in lags.values()), lags
    final = await client.get(f"/notes/{note['id']}", headers=agent.headers)
    assert final.json()["status"] == "done"


async def test_an_event_committed_after_connected_is_delivered_even_by_a_slow_server(
    served: tuple[FastAPI, str, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy server takes its time to find where a new stream starts. The note below is
    # created as soon as "connected" arrives; its queued event must still come.
    _, base_url, client = served
    position, slowed = event_log.position, []

    async def slow_position(session: AsyncSession, organization_id: uuid.UUID) -> int:
        if not slowed:
            slowed.append(True)
            await asyncio.sleep(0.5)
        return await position(session, organization_id)

    monkeypatch.setattr(event_log, "position", slow_position)
    agent = await signup(client)
    async with open_stream(base_url, "/notes/events", agent.access_token) as reader:
        await reader.next(comments=True)
        note = await create_note(client, agent, "Created the moment the stream said so.")
        first = (await reader.next()).json
    assert slowed
    assert (first["type"], first["data"]["id"]) == ("note.queued", note["id"])


async def test_event_data_is_the_public_state_without_raw_text(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    agent = await signup(client)
    note = await create_note(client, agent, "Secret body text. Second sentence.", title="T")
    async with open_stream(base_url, f"/notes/{note['id']}/events", agent.access_token, "0") as r:
        first = (await r.next()).json
        assert first["type"] == "note.queued"
        assert set(first["data"]) == {
            "id",
            "title",
            "summary",
            "status",
            "attempts",
            "error",
            "owner_id",
            "created_at",
            "updated_at",
            "summarized_at",
        }
        assert first["data"]["title"] == "T" and first["data"]["status"] == "queued"
        await _types_until(r, "note.done", note["id"])
        renamed = await client.patch(
            f"/notes/{note['id']}", headers=agent.headers, json={"title": "New"}
        )
        assert renamed.status_code == 200
        updated = (await r.next()).json
        assert (updated["type"], updated["data"]["title"]) == ("note.updated", "New")
        deleted = await client.delete(f"/notes/{note['id']}", headers=agent.headers)
        assert deleted.status_code == 204
        gone = (await r.next()).json
        assert gone["type"] == "note.deleted"
        assert gone["data"] == {"id": note["id"], "owner_id": agent.id}
        assert await r.ended()  # a deleted note's stream ends


async def test_a_resumed_stream_gets_every_missed_event_once_in_order(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    agent = await signup(client)
    first = await create_note(client, agent, "Before the cut. Two sentences.")
    async with open_stream(base_url, "/notes/events", agent.access_token, "0") as reader:
        last_id = str((await _types_until(reader, "note.done", first["id"]))[-1][2])
    # Cut. Meanwhile, three notes come and are summarized, and one is edited.
    missed = [
        await create_note(client, agent, f"Missed note {i}. Two sentences.") for i in range(3)
    ]
    for note in missed:
        done = await client.get(f"/notes/{note['id']}?wait=10", headers=agent.headers)
        assert done.json()["status"] == "done"
    await client.patch(f"/notes/{missed[0]['id']}", headers=agent.headers, json={"title": "x"})
    async with open_stream(base_url, "/notes/events", agent.access_token, last_id) as reader:
        ids: list[int] = []
        kinds: dict[str, list[str]] = {n["id"]: [] for n in missed}
        while len(ids) < 10:
            body = (await reader.next()).json
            ids.append(body["id"])
            kinds[body["data"]["id"]].append(body["type"])
        assert ids == sorted(set(ids)) and ids[0] > int(last_id)
        assert kinds[missed[0]["id"]] == [
            "note.queued",
            "note.processing",
            "note.done",
            "note.updated",
        ]
        for note in missed[1:]:
            assert kinds[note["id"]] == ["note.queued", "note.processing", "note.done"]
        # Live again: the next event is new, not a repeat.
        await client.patch(f"/notes/{missed[1]['id']}", headers=agent.headers, json={"title": "y"})
        live = (await reader.next()).json
        assert live["id"] > ids[-1] and live["type"] == "note.updated"


async def test_agents_see_only_their_notes_and_admins_only_their_organization(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    admin = await signup(client, organization="Acme")
    agent = await add_user(client, admin, "AGENT")
    colleague = await add_user(client, admin, "AGENT")
    outsider = await signup(client, organization="Other")
    async with (
        open_stream(base_url, "/notes/events", agent.access_token) as mine,
        open_stream(base_url, "/notes/events", admin.access_token) as org,
        open_stream(base_url, "/notes/events", outsider.access_token) as other,
    ):
        for reader in (mine, org, other):
            await reader.next(comments=True)
        theirs = await create_note(client, colleague, "The colleague's note. Two sentences.")
        foreign = await create_note(client, outsider, "Another organization. Two sentences.")
        own = await create_note(client, agent, "The agent's own note. Two sentences.")
        await _types_until(mine, "note.done", own["id"])
        await _types_until(other, "note.done", foreign["id"])
        await _types_until(org, "note.done", theirs["id"])
        await _types_until(org, "note.done", own["id"])
        # By now every event of all three notes has been sent to whoever may see it.
        marker = await create_note(client, agent, "Marker. Two sentences.")
        await _types_until(mine, "note.queued", marker["id"])
    # Another agent's note (and another organization's) never appears to the agent;
    # another organization's never to the admin; the outsider sees only its own.
    async with open_stream(base_url, "/notes/events", agent.access_token, "0") as replay:
        seen = await _drain(replay)
    assert seen and seen <= {own["id"], marker["id"]}
    async with open_stream(base_url, "/notes/events", admin.access_token, "0") as replay:
        seen = await _drain(replay)
    assert seen == {own["id"], theirs["id"], marker["id"]}
    async with open_stream(base_url, "/notes/events", outsider.access_token, "0") as replay:
        seen = await _drain(replay)
    assert seen == {foreign["id"]}
    hidden = await client.get(
        f"/notes/{theirs['id']}/events", headers=agent.headers | {"Accept": "text/event-stream"}
    )
    assert hidden.status_code == 404
    across = await client.get(f"/notes/{foreign['id']}/events", headers=admin.headers)
    assert across.status_code == 404


async def _drain(reader: Reader) -> set[str]:
    """The note ids of every event the stream sends until it goes quiet (a heartbeat)."""
    seen: set[str] = set()
    while True:
        event = await reader.next(comments=True)
        if event.data is None:
            if "heartbeat" in event.comments:
                return seen
            continue
        seen.add(event.json["data"]["id"])


async def test_streams_beyond_the_per_user_limit_get_429(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    agent = await signup(client)
    async with (
        open_stream(base_url, "/notes/events", agent.access_token) as a,
        open_stream(base_url, "/notes/events", agent.access_token) as b,
        open_stream(base_url, "/notes/events", agent.access_token) as c,
    ):
        for reader in (a, b, c):
            await reader.next(comments=True)
        refused = await client.get("/notes/events", headers=agent.headers)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
    # Closed streams give their places back.
    async with open_stream(base_url, "/notes/events", agent.access_token) as again:
        assert (await again.next(comments=True)).retry is not None


async def test_a_deactivated_users_stream_ends(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    admin = await signup(client, organization="Acme")
    agent = await add_user(client, admin, "AGENT")
    async with open_stream(base_url, "/notes/events", agent.access_token) as reader:
        await reader.next(comments=True)
        off = await client.patch(
            f"/users/{agent.id}", headers=admin.headers, json={"is_active": False}
        )
        assert off.status_code == 200
        assert await reader.ended(timeout=5)  # re-checked at the next heartbeat (0.5 s)


async def test_a_stream_ends_when_its_token_expires(
    served: tuple[FastAPI, str, httpx.AsyncClient], settings: Settings
) -> None:
    _, base_url, client = served
    agent = await signup(client)
    token = create_access_token(
        settings.jwt_secret.get_secret_value(),
        user_id=uuid.UUID(agent.id),
        organization_id=uuid.UUID(agent.user["organization_id"]),
        role="AGENT",
        session_id=agent.session_id,
        ttl=2,
    )
    async with open_stream(base_url, "/notes/events", token) as reader:
        await reader.next(comments=True)
        opened = time.monotonic()
        assert await reader.ended(timeout=6)
        assert time.monotonic() - opened > 1.0  # it lived while the token did


async def test_streams_need_a_bearer_token(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, _, client = served
    assert (await client.get("/notes/events")).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await client.get("/notes/events", headers=bad)).status_code == 401
    agent = await signup(client)
    wrong = agent.headers | {"Last-Event-ID": "yesterday"}
    assert (await client.get("/notes/events", headers=wrong)).status_code == 422


async def test_concurrent_writes_reach_a_stream_each_once_and_in_id_order(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    # On Postgres, ids are taken at insert and rows become visible at commit, in another
    # order under concurrency: the stream must neither skip a late committer nor repeat.
    _, base_url, client = served
    agent = await signup(client)
    async with open_stream(base_url, "/notes/events", agent.access_token) as reader:
        await reader.next(comments=True)
        notes = await asyncio.gather(
            *(create_note(client, agent, f"Concurrent {i}. Two sentences.") for i in range(40))
        )
        await asyncio.gather(
            *(
                client.patch(f"/notes/{n['id']}", headers=agent.headers, json={"title": "t"})
                for n in notes[:20]
            )
        )
        # A marker written after everything above committed: its event comes after theirs.
        marker = await create_note(client, agent, "Marker. Two sentences.")
        ids: list[int] = []
        per_note: dict[str, list[str]] = {}
        while marker["id"] not in per_note:
            body = (await reader.next()).json
            ids.append(body["id"])
            per_note.setdefault(body["data"]["id"], []).append(body["type"])
        while any("note.done" not in per_note.get(n["id"], []) for n in notes):
            body = (await reader.next()).json
            ids.append(body["id"])
            per_note.setdefault(body["data"]["id"], []).append(body["type"])
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    for i, note in enumerate(notes):
        types = per_note[note["id"]]
        assert sorted(types) == sorted(
            ["note.queued", "note.processing", "note.done"] + ["note.updated"] * (i < 20)
        ), types
