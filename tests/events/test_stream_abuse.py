"""What a stranger or a neighbour can do with the streams, against a real server on SQLite
and Postgres: ids that do not count other organizations' events, a Last-Event-ID that is a
422 and never a reset connection, stream limits one organization cannot exhaust for the
others, 405 for methods the stream path does not have, and the note's state first."""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema_rs  # schemathesis's own validator, installed with it
import pytest
from fastapi import FastAPI

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.events.models import EventType
from notes_api.notes.schemas import NoteState
from notes_api.streams.feed import Feed
from tests.conftest import add_user, create_note, make_settings, signup
from tests.events.sse import open_stream


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        worker_embedded=True,
        job_lease_seconds=30.0,
        event_heartbeat_seconds=0.5,
        event_poll_interval=0.5,
        event_streams_per_user=2,
        event_streams_per_organization=4,
        event_streams_per_process=7,
    )


async def _done(client: httpx.AsyncClient, headers: dict[str, str], note_id: str) -> None:
    answer = await client.get(f"/notes/{note_id}?wait=20", headers=headers)
    assert answer.json()["status"] == "done", answer.text


async def test_ids_count_only_the_organizations_own_events(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    acme = await signup(client, organization="Acme")
    other = await signup(client, organization="Other")
    # The two organizations write at the same time; each sees 1, 2, 3... of its own.
    mine: list[dict[str, str]] = []
    for i in range(3):
        noise = await asyncio.gather(
            *(create_note(client, other, f"Other's note {i}.{j}. Two.") for j in range(3))
        )
        mine.append(await create_note(client, acme, f"Acme's note {i}. Two sentences."))
        for note in noise:
            await _done(client, other.headers, note["id"])
        await _done(client, acme.headers, mine[-1]["id"])
    async with open_stream(base_url, "/notes/events", acme.access_token, "0") as reader:
        ids = [int((await reader.next()).id or 0) for _ in range(9)]  # 3 notes x 3 events
    assert ids == list(range(1, 10))
    # Resuming in the middle gives the rest, once each.
    async with open_stream(base_url, "/notes/events", acme.access_token, "4") as reader:
        assert [int((await reader.next()).id or 0) for _ in range(5)] == [5, 6, 7, 8, 9]
    note_id = mine[1]["id"]
    async with open_stream(base_url, f"/notes/{note_id}/events", acme.access_token, "4") as r:
        rest = [await r.next() for _ in range(2)]
    assert [(e.event, e.json["data"]["id"]) for e in rest] == [
        ("note.processing", note_id),
        ("note.done", note_id),
    ]
    assert [int(e.id or 0) for e in rest] == [5, 6]


@pytest.mark.parametrize(
    "value", ["99999999999999999999", "9223372036854775808", "-1", "abc", "1.5", "50"]
)
async def test_a_bad_last_event_id_is_a_422_problem_not_a_reset(
    served: tuple[FastAPI, str, httpx.AsyncClient], value: str
) -> None:
    _, _, client = served
    agent = await signup(client)
    await create_note(client, agent, "One event at least. Two sentences.")
    note = await create_note(client, agent, "And a second note. Two sentences.")
    for path in ("/notes/events", f"/notes/{note['id']}/events"):
        answer = await client.get(path, headers=agent.headers | {"Last-Event-ID": value})
        assert answer.status_code == 422, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_one_organization_cannot_take_every_stream_of_the_process(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    # Strangers sign up into the default organization, two streams each (the user limit),
    # until the organization's share (4 of the process's 7) is gone.
    _, base_url, client = served
    strangers = [await signup(client) for _ in range(3)]
    admin = await signup(client, organization="Acme")
    agent = await add_user(client, admin, "AGENT")
    async with (
        open_stream(base_url, "/notes/events", strangers[0].access_token),
        open_stream(base_url, "/notes/events", strangers[0].access_token),
        open_stream(base_url, "/notes/events", strangers[1].access_token),
        open_stream(base_url, "/notes/events", strangers[1].access_token),
    ):
        refused = await client.get("/notes/events", headers=strangers[2].headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"] == (
            "At most 4 open event streams per organization on this server"
        )
        assert int(refused.headers["retry-after"]) >= 1
        # Another organization still gets its streams, up to the process's limit.
        async with (
            open_stream(base_url, "/notes/events", admin.access_token) as a,
            open_stream(base_url, "/notes/events", agent.access_token) as b,
            open_stream(base_url, "/notes/events", agent.access_token) as c,
        ):
            for reader in (a, b, c):
                assert (await reader.next(comments=True)).retry is not None
            full = await client.get("/notes/events", headers=admin.headers)
            assert full.status_code == 429
            assert full.json()["detail"] == "Too many open event streams on this server"


def test_an_organization_may_not_be_allowed_every_stream(database_url: str) -> None:
    with pytest.raises(ValueError, match="EVENT_STREAMS_PER_ORGANIZATION must be below"):
        make_settings(database_url, event_streams_per_organization=10, event_streams_per_process=10)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_other_methods_on_the_stream_path_are_405_with_allow(
    served: tuple[FastAPI, str, httpx.AsyncClient], method: str
) -> None:
    _, _, client = served
    agent = await signup(client)
    answer = await client.request(method, "/notes/events", headers=agent.headers, json={})
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == "GET"
    assert answer.headers["content-type"] == "application/problem+json"
    note = await create_note(client, agent)
    answer = await client.request(method, f"/notes/{note['id']}/events", headers=agent.headers)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == "GET"


async def test_a_notes_stream_starts_with_its_current_state(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    agent = await signup(client)
    note = await create_note(client, agent, "Already summarized. When the stream opens.")
    await _done(client, agent.headers, note["id"])
    later = await create_note(client, agent, "Another note, after it. Two sentences.")
    await _done(client, agent.headers, later["id"])
    path = f"/notes/{note['id']}/events"
    async with open_stream(base_url, path, agent.access_token) as reader:
        state = await reader.next(timeout=5)
        body = state.json
        assert (state.event, body["type"], body["data"]["status"]) == (
            "note.done",
            "note.done",
            "done",
        )
        assert body["data"]["id"] == note["id"] and body["data"]["summary"]
        assert state.id == str(body["id"]) == "6"  # the organization's newest: resume after
        renamed = await client.patch(path[:-7], headers=agent.headers, json={"title": "T"})
        assert renamed.status_code == 200
        live = await reader.next()
        assert (live.event, live.id, live.json["data"]["title"]) == ("note.updated", "7", "T")
    # Resumed from the state's id, only what came after it.
    async with open_stream(base_url, path, agent.access_token, state.id) as reader:
        again = await reader.next()
        assert (again.event, again.id) == ("note.updated", "7")


async def test_the_document_describes_each_stream_event_as_an_object(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, _, client = served
    document = (await client.get("/openapi.json")).json()
    for path in ("/notes/events", "/notes/{note_id}/events"):
        operation = document["paths"][path]["get"]
        assert set(document["paths"][path]) == {"get"}
        content = operation["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        item = content["text/event-stream"]["itemSchema"]
        assert item["type"] == "object" and item["required"] == ["id", "event", "data"]
        assert item["properties"]["event"]["enum"] == [t.value for t in EventType]
        data = item["properties"]["data"]
        assert data["contentMediaType"] == "application/json"
        inner = data["contentSchema"]
        assert inner["required"] == ["id", "type", "occurred_at", "data"]
        states = inner["properties"]["data"]["anyOf"]
        assert {frozenset(s["properties"]) for s in states} == {
            frozenset(NoteState.model_fields),
            frozenset({"id", "owner_id"}),
        }
        assert "$ref" not in json.dumps(item)  # self-contained: nothing points nowhere
        example = operation["responses"]["429"]["content"]["application/problem+json"]
        assert example["example"]["detail"] == "At most 5 open event streams per user"


async def test_static_paths_answer_405_with_allow_for_undeclared_methods(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, _, client = served
    agent = await signup(client)
    document = (await client.get("/openapi.json")).json()
    wrong: list[tuple[str, str, int, str | None]] = []
    for path, operations in document["paths"].items():
        if "{" in path:
            continue
        declared = {m.upper() for m in operations}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - declared:
            answer = await client.request(method, path, headers=agent.headers)
            allow = answer.headers.get("allow")
            if answer.status_code != 405 or set((allow or "").split(", ")) != declared:
                wrong.append((method, path, answer.status_code, allow))
    assert wrong == []


def test_by_default_an_organization_may_hold_a_fifth_of_the_process(database_url: str) -> None:
    settings = make_settings(database_url)
    assert settings.event_streams_per_organization is None
    feed = Feed(
        Database(settings),
        per_user=settings.event_streams_per_user,
        per_process=settings.event_streams_per_process,
        per_organization=settings.event_streams_per_organization,
    )
    assert (feed.per_organization, feed.per_process) == (200, 1000)


async def test_what_a_stream_sends_matches_the_documented_item_schema(
    served: tuple[FastAPI, str, httpx.AsyncClient],
) -> None:
    _, base_url, client = served
    document = (await client.get("/openapi.json")).json()
    item = document["paths"]["/notes/{note_id}/events"]["get"]["responses"]["200"]["content"][
        "text/event-stream"
    ]["itemSchema"]
    data_schema = jsonschema_rs.Draft202012Validator(item["properties"]["data"]["contentSchema"])
    item_schema = jsonschema_rs.Draft202012Validator(item)
    agent = await signup(client)
    note = await create_note(client, agent, "Checked against the document. Two sentences.")
    await _done(client, agent.headers, note["id"])
    path = f"/notes/{note['id']}/events"
    async with open_stream(base_url, path, agent.access_token) as reader:
        sent = [await reader.next()]  # the state
        await client.patch(path[:-7], headers=agent.headers, json={"title": "T"})
        await client.delete(path[:-7], headers=agent.headers)
        sent += [await reader.next(), await reader.next()]
    assert [e.event for e in sent] == ["note.done", "note.updated", "note.deleted"]
    for event in sent:
        item_schema.validate({"id": event.id, "event": event.event, "data": event.data})
        data_schema.validate(event.json)
