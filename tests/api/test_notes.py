"""Notes CRUD, re-queueing on edit, retry, and `?wait=` against the HTTP contract."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update

from notes_api.core.db import Database
from notes_api.events.models import NoteEvent
from notes_api.jobs.models import Job, JobStatus
from notes_api.notes import repository
from notes_api.notes.models import Note, NoteStatus
from notes_api.notes.repository import JobState
from notes_api.notes.schemas import NoteState
from notes_api.notes.service import SUMMARIZE
from notes_api.notes.watcher import NoteWatcher
from tests.conftest import (
    NOTE_FIELDS,
    client_for,
    create_note,
    empty_pg,
    make_settings,
    running_app,
    signup,
)

PROBLEM_FIELDS = {"type", "title", "status", "detail"}
TEXT = "Call with Dana from Acme. They want the CRM export by Friday. Budget is approved."


async def set_note(db: Database, note_id: str, **values: Any) -> None:
    """Write a note's columns directly, standing in for the worker."""
    async with db.session(write=True) as session:
        await session.execute(update(Note).where(Note.id == uuid.UUID(note_id)).values(**values))


async def jobs_of(db: Database, note_id: str) -> list[Job]:
    async with db.session() as session:
        stmt = select(Job).where(Job.kind == SUMMARIZE, Job.dedupe_key == note_id)
        return list((await session.scalars(stmt)).all())


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    return body


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_create_note_answers_202_queued_with_location(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.post(
        "/notes", headers=account.headers, json={"raw_text": TEXT, "title": "Acme"}
    )
    assert response.status_code == 202, response.text
    note = response.json()
    assert set(note) == NOTE_FIELDS
    assert response.headers["location"] == f"/notes/{note['id']}"
    assert note["status"] == "queued"
    assert note["summary"] is None
    assert note["summarized_at"] is None
    assert note["error"] is None
    assert note["attempts"] == 0
    assert note["owner_id"] == account.id
    assert note["raw_text"] == TEXT
    assert note["title"] == "Acme"
    assert uuid.UUID(note["id"]).version == 4
    assert note["updated_at"] == note["created_at"]  # never changed yet


async def test_create_note_without_title_has_null_title(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    assert note["title"] is None


async def test_get_note_returns_the_created_note(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    created = await create_note(client, account, TEXT, title="Acme")
    response = await client.get(f"/notes/{created['id']}", headers=account.headers)
    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_note_is_404_problem(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.get(f"/notes/{uuid.uuid4()}", headers=account.headers)
    assert_problem(response, 404)


async def test_patch_title_only_keeps_status_and_summary(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT, title="Old")
    await set_note(db, note["id"], status=NoteStatus.DONE, summary="Dana wants the export.")
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"title": "New"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == NOTE_FIELDS
    assert body["title"] == "New"
    assert body["status"] == "done"
    assert body["summary"] == "Dana wants the export."
    assert body["raw_text"] == TEXT
    assert body["updated_at"] >= note["updated_at"]


async def test_patch_same_raw_text_does_not_requeue(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    await set_note(db, note["id"], status=NoteStatus.DONE, summary="S.")
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"raw_text": TEXT}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "done"
    assert response.json()["summary"] == "S."


async def test_patch_raw_text_of_failed_note_requeues_and_clears_error(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    await set_note(
        db, note["id"], status=NoteStatus.FAILED, summary=None, attempts=5, error="timed out"
    )
    response = await client.patch(
        f"/notes/{note['id']}",
        headers=account.headers,
        json={"raw_text": "Completely new text about a renewal."},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["raw_text"] == "Completely new text about a renewal."
    assert body["status"] == "queued"
    assert body["summary"] is None
    assert body["summarized_at"] is None
    assert body["attempts"] == 0
    assert body["error"] is None
    fetched = await client.get(f"/notes/{note['id']}", headers=account.headers)
    assert fetched.json() == body
    # The job for the old text is cancelled (its lease revoked); exactly one is live.
    statuses = sorted(job.status.value for job in await jobs_of(db, note["id"]))
    assert statuses == [JobStatus.CANCELLED.value, JobStatus.QUEUED.value]


async def test_patch_raw_text_of_done_note_drops_old_summary(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    await set_note(db, note["id"], status=NoteStatus.DONE, summary="Old summary.", attempts=1)
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"raw_text": "New text."}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    assert response.json()["summary"] is None
    assert response.json()["summarized_at"] is None


async def test_patch_clears_title_with_null(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT, title="Old")
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"title": None}
    )
    assert response.status_code == 200
    assert response.json()["title"] is None


@pytest.mark.parametrize(
    "field",
    [
        {"status": "done"},
        {"summary": "forged summary"},
        {"owner_id": str(uuid.uuid4())},
        {"attempts": 0},
        {"id": str(uuid.uuid4())},
        {"error": None},
        {"summarized_at": "2024-01-01T00:00:00Z"},
    ],
    ids=lambda f: next(iter(f)),
)
async def test_patch_rejects_server_owned_fields(
    client: httpx.AsyncClient, field: dict[str, Any]
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    response = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"title": "T", **field}
    )
    body = assert_problem(response, 422)
    assert any(err["loc"][-1] == next(iter(field)) for err in body["errors"])
    unchanged = await client.get(f"/notes/{note['id']}", headers=account.headers)
    assert unchanged.json() == note


@pytest.mark.parametrize(
    "field",
    [{"status": "done"}, {"summary": "x"}, {"owner_id": str(uuid.uuid4())}],
    ids=lambda f: next(iter(f)),
)
async def test_create_rejects_server_owned_fields(
    client: httpx.AsyncClient, field: dict[str, Any]
) -> None:
    account = await signup(client)
    response = await client.post(
        "/notes", headers=account.headers, json={"raw_text": TEXT, **field}
    )
    assert_problem(response, 422)
    listed = await client.get("/notes", headers=account.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize("status", [NoteStatus.QUEUED, NoteStatus.PROCESSING, NoteStatus.DONE])
async def test_retry_of_a_note_that_has_not_failed_is_409(
    client: httpx.AsyncClient, db: Database, status: NoteStatus
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    await set_note(db, note["id"], status=status)
    response = await client.post(f"/notes/{note['id']}/retry", headers=account.headers)
    assert_problem(response, 409)
    fetched = await client.get(f"/notes/{note['id']}", headers=account.headers)
    assert fetched.json()["status"] == status.value


async def test_retry_of_a_failed_note_requeues_it(client: httpx.AsyncClient, db: Database) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    for job in await jobs_of(db, note["id"]):  # the job ended as the note did
        async with db.session(write=True) as session:
            await session.execute(
                update(Job).where(Job.id == job.id).values(status=JobStatus.FAILED, attempts=5)
            )
    await set_note(db, note["id"], status=NoteStatus.FAILED, error="model said no", attempts=5)
    response = await client.post(f"/notes/{note['id']}/retry", headers=account.headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == NOTE_FIELDS
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["summary"] is None
    statuses = sorted(job.status.value for job in await jobs_of(db, note["id"]))
    assert statuses == [JobStatus.FAILED.value, JobStatus.QUEUED.value]
    again = await client.post(f"/notes/{note['id']}/retry", headers=account.headers)
    assert_problem(again, 409)


async def test_delete_note_answers_204_then_404(client: httpx.AsyncClient, db: Database) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    response = await client.delete(f"/notes/{note['id']}", headers=account.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(f"/notes/{note['id']}", headers=account.headers), 404)
    assert_problem(await client.delete(f"/notes/{note['id']}", headers=account.headers), 404)
    listed = await client.get("/notes", headers=account.headers)
    assert listed.json()["items"] == []
    # Its summary job is cancelled with it, so no worker picks it up.
    assert all(job.status is not JobStatus.QUEUED for job in await jobs_of(db, note["id"]))


async def test_wait_returns_done_summary_with_embedded_worker(database_url: str) -> None:
    settings = make_settings(database_url, worker_embedded=True)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        note = await create_note(client, account, TEXT, title="Acme")
        started = time.monotonic()
        response = await client.get(
            f"/notes/{note['id']}", headers=account.headers, params={"wait": 10}
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done", body
    assert body["summary"]
    assert body["summary"].strip()
    assert body["summarized_at"] is not None
    assert body["error"] is None
    assert body["attempts"] == 1
    assert elapsed < 5


async def test_wait_returns_after_timeout_while_still_queued(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    started = time.monotonic()
    response = await client.get(f"/notes/{note['id']}", headers=account.headers, params={"wait": 1})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert 0.9 <= elapsed < 3


async def test_wait_answers_at_once_for_a_finished_note(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    await set_note(db, note["id"], status=NoteStatus.DONE, summary="S.")
    started = time.monotonic()
    response = await client.get(
        f"/notes/{note['id']}", headers=account.headers, params={"wait": 30}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "done"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("wait", ["30.5", "31", "1000", "-1", "abc", "nan", "inf"])
async def test_wait_outside_0_to_30_is_422(client: httpx.AsyncClient, wait: str) -> None:
    account = await signup(client)
    note = await create_note(client, account, TEXT)
    started = time.monotonic()
    response = await client.get(
        f"/notes/{note['id']}", headers=account.headers, params={"wait": wait}
    )
    assert_problem(response, 422)
    assert time.monotonic() - started < 1


async def test_failing_summarizer_fails_the_note_and_retry_requeues_it(database_url: str) -> None:
    settings = make_settings(
        database_url,
        worker_embedded=True,
        summarizer="openai",
        job_max_attempts=1,
        openai_base_url=f"http://127.0.0.1:{closed_port()}/v1",
        openai_timeout=2.0,
    )
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        note = await create_note(client, account, TEXT)
        failed = await client.get(
            f"/notes/{note['id']}", headers=account.headers, params={"wait": 10}
        )
        assert failed.status_code == 200
        assert failed.json()["status"] == "failed", failed.json()
        assert failed.json()["error"]
        assert failed.json()["summary"] is None
        assert failed.json()["attempts"] == 1

        retried = await client.post(f"/notes/{note['id']}/retry", headers=account.headers)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "queued"
        assert retried.json()["attempts"] == 0

        again = await client.get(
            f"/notes/{note['id']}", headers=account.headers, params={"wait": 10}
        )
        assert again.json()["status"] == "failed"
        assert again.json()["attempts"] == 1


async def test_editing_or_deleting_a_note_leaves_the_callers_other_notes_alone(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    kept = await create_note(client, account, "Kept as it is.", title="kept")
    note = await create_note(client, account, TEXT, title="before")
    edited = await client.patch(
        f"/notes/{note['id']}", headers=account.headers, json={"title": "after"}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["title"] == "after"
    deleted = await client.delete(f"/notes/{note['id']}", headers=account.headers)
    assert deleted.status_code == 204
    still = await client.get(f"/notes/{kept['id']}", headers=account.headers)
    assert still.status_code == 200
    assert (still.json()["title"], still.json()["raw_text"]) == ("kept", "Kept as it is.")


async def test_a_summary_that_lands_after_a_failed_attempt_clears_its_error(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await signup(client)
    note_id = uuid.UUID((await create_note(client, account, TEXT))["id"])
    async with db.session(write=True) as session:
        queued = JobState(note_id, NoteStatus.QUEUED, 1, None, "model timed out")
        (retried,) = await repository.record_job_states(session, [queued])
        assert retried.error == "model timed out"
        landed = JobState(note_id, NoteStatus.DONE, 2, "Dana wants the export.", None)
        (done,) = await repository.record_job_states(session, [landed])
    assert (done.status, done.summary, done.error) == (
        NoteStatus.DONE,
        "Dana wants the export.",
        None,
    )


async def test_the_watchers_poll_finds_a_note_finished_unannounced(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A note finished by a process whose announcement never came: the watcher's poll reads
    the statuses (repository.status_of) and lets its waiter go; a waiter on a note still
    queued keeps waiting."""
    account = await signup(client)
    finished = uuid.UUID((await create_note(client, account, TEXT))["id"])
    queued = uuid.UUID((await create_note(client, account, TEXT))["id"])
    await set_note(db, str(finished), status=NoteStatus.DONE)  # no signal: as from elsewhere
    watcher = NoteWatcher(db, kind=SUMMARIZE, poll_interval=0.05)
    watcher.start()
    try:
        started = time.monotonic()
        await watcher.wait(finished, 3)
        assert time.monotonic() - started < 2.5  # let go by the poll, not by the timeout
        waiting = asyncio.ensure_future(watcher.wait(queued, 10))
        await asyncio.sleep(0.3)  # several polls
        assert not waiting.done()
        waiting.cancel()
    finally:
        await watcher.stop()


async def test_a_new_note_is_written_with_its_job_its_event_and_the_events_deliveries(
    app: Any, client: httpx.AsyncClient
) -> None:
    """One statement on Postgres, four on SQLite: either way the same rows."""
    admin = await signup(client, organization="Acme")
    hook = await client.post(
        "/webhooks",
        headers=admin.headers,
        json={"url": "https://hooks.example.com/in", "events": ["note.queued"]},
    )
    assert hook.status_code == 201, hook.text
    note = await create_note(client, admin, TEXT)
    stored = (await client.get(f"/notes/{note['id']}", headers=admin.headers)).json()
    assert stored == note

    db: Database = app.state.db
    async with db.session() as session:
        [job] = await jobs_of(db, note["id"])
        events = list((await session.scalars(select(NoteEvent))).all())
        deliveries = list((await session.scalars(select(Job).where(Job.kind == "webhook"))).all())
        organization_id = await session.scalar(
            select(Note.organization_id).where(Note.id == uuid.UUID(note["id"]))
        )
    assert (job.status, job.attempts, job.payload) == (JobStatus.QUEUED, 0, {"note_id": note["id"]})
    assert job.fairness_key == str(organization_id)
    [event] = [e for e in events if e.note_id == uuid.UUID(note["id"])]
    assert (event.organization_id, str(event.owner_id)) == (organization_id, note["owner_id"])
    assert event.type == "note.queued"
    assert event.data == NoteState.model_validate(
        {k: v for k, v in note.items() if k != "raw_text"}
    ).model_dump(mode="json")
    assert event.occurred_at >= datetime.fromisoformat(note["created_at"])
    # `<event id>:<endpoint id>` (SQLite writes the endpoint's UUID as its stored hex)
    [delivery] = [(d.dedupe_key or "").split(":") for d in deliveries]
    assert (delivery[0], uuid.UUID(delivery[1])) == (str(event.id), uuid.UUID(hook.json()["id"]))
    assert deliveries[0].fairness_key == str(organization_id)


@pytest.mark.parametrize(
    ("key", "overrides", "alone"),
    [
        (None, {}, True),
        ("retry-1", {}, False),
        (None, {"rate_limit_user_writes_per_minute": 1000}, True),
        (None, {"caller_record_seconds": 0}, False),
    ],
    ids=["last-statement", "idempotency-key", "limits-on", "caller-confirmed-first"],
)
async def test_a_create_runs_outside_a_transaction_only_when_it_is_its_units_one_statement(
    pg_url: str, key: str | None, overrides: dict[str, Any], alone: bool
) -> None:
    """Postgres: with no idempotency key to bind afterwards, the create (its limits counted
    in it) is the unit's one statement and runs in autocommit (`core.db.alone`); otherwise every
    statement of the unit, the create's included, runs in one transaction on one connection
    (a caller confirmed by the database first, say: its check began the transaction)."""
    empty_pg(pg_url)
    async with running_app(make_settings(pg_url, **overrides)) as app, client_for(app) as client:
        account = await signup(client)
        for _ in range(100):  # the caller is remembered once the listener is up
            if app.state.callers.live:
                break
            await asyncio.sleep(0.05)
        for _ in range(2):
            await create_note(client, account, TEXT)
        seen: list[tuple[str, bool, int]] = []

        def spy(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            dbapi = conn.connection.dbapi_connection
            seen.append((statement.split()[0], dbapi.autocommit, id(dbapi)))

        db: Database = app.state.db
        for engine in (db.engine, db.reader_engine):
            event.listen(engine.sync_engine, "before_cursor_execute", spy)
        headers = account.headers | ({"Idempotency-Key": key} if key else {})
        r = await client.post("/notes", headers=headers, json={"raw_text": TEXT})
        for engine in (db.engine, db.reader_engine):
            event.remove(engine.sync_engine, "before_cursor_execute", spy)
        assert r.status_code == 202, r.text
        assert (await client.get(r.headers["Location"], headers=account.headers)).json() == r.json()
    if alone:
        assert seen == [("WITH", True, seen[0][2])]
    else:
        assert len(seen) >= 2
        assert "WITH" in [verb for verb, _, _ in seen]
        assert not any(autocommit for _, autocommit, _ in seen)
        assert len({connection for _, _, connection in seen}) == 1


@pytest.mark.parametrize("key", [None, "retry-1"], ids=["alone", "in-a-transaction"])
async def test_a_create_refused_by_a_limit_leaves_nothing_and_counts_nothing(
    pg_url: str, key: str | None
) -> None:
    """Postgres: the limits are counted in the create's own statement, which a count past
    its quota fails whole: a create refused with 429 leaves no note, job or event, and its
    counts are undone with it (alone, or in a transaction with an idempotency key)."""
    empty_pg(pg_url)
    settings = make_settings(
        pg_url, rate_limit_user_writes_per_minute=1, rate_limit_org_writes_per_minute=100
    )
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        await create_note(client, account, TEXT)
        headers = account.headers | ({"Idempotency-Key": key} if key else {})
        for _ in range(2):
            r = await client.post("/notes", headers=headers, json={"raw_text": TEXT})
            assert r.status_code == 429, r.text
            # Each refusal shows the counts with itself in them (98 left), and is undone: the
            # second shows 98 again.
            assert '"org";r=98;' in r.headers["RateLimit"]
            assert '"user";r=0;' in r.headers["RateLimit"]
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        page = (await client.get("/notes", headers=account.headers)).json()
        db: Database = app.state.db
        async with db.session(write=False) as session:
            notes = (await session.execute(select(Note.id))).all()
            events = (await session.execute(select(NoteEvent.id))).all()
            jobs = (await session.execute(select(Job.id))).all()
    assert len(page["items"]) == len(notes) == len(events) == len(jobs) == 1
