"""Races are inputs too: two clicks, two tabs, two processes. Each test sends its requests at
once, from parallel clients, to a real server (uvicorn on a local port) on SQLite and on
Postgres, where SQLite's one writer at a time cannot hide a missing lock. A loser must answer
as if it had come second (404 after a delete, 409 for a second retry), never 5xx."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.jobs.models import ACTIVE_STATUSES, Job
from notes_api.jobs.worker import Worker, WorkerConfig
from notes_api.notes.models import SUMMARIZE, Note, NoteStatus
from notes_api.summarize.handler import SummarizeHandler
from notes_api.users.passwords import Passwords
from tests.conftest import Account, create_note, make_settings, running_app, serve, signup

pytestmark = pytest.mark.timeout(120)
ROUNDS = 20


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        yield client


async def together(*requests: Any) -> list[httpx.Response]:
    """Start every request before any is answered."""
    return list(await asyncio.gather(*requests))


async def active_jobs(db: Database, note_id: str) -> int:
    async with db.session(write=False) as session:
        stmt = select(func.count()).where(
            Job.kind == SUMMARIZE, Job.dedupe_key == note_id, Job.status.in_(ACTIVE_STATUSES)
        )
        return int(await session.scalar(stmt) or 0)


async def set_status(db: Database, note_id: str, status: NoteStatus) -> None:
    async with db.session() as session:
        await session.execute(
            update(Note).where(Note.id == uuid.UUID(note_id)).values(status=status)
        )


async def test_edit_racing_delete_answers_200_or_404_and_never_5xx(
    http: httpx.AsyncClient, db: Database
) -> None:
    who = await signup(http)
    seen: Counter[tuple[int, int]] = Counter()
    for i in range(ROUNDS):
        note = await create_note(http, who, f"Round {i}. Two sentences here.")
        path = f"/notes/{note['id']}"
        edit, gone = await together(
            http.patch(path, headers=who.headers, json={"raw_text": f"Edited {i}."}),
            http.delete(path, headers=who.headers),
        )
        seen[edit.status_code, gone.status_code] += 1
        assert gone.status_code == 204, gone.text
        assert edit.status_code in (200, 404), edit.text
        assert (await http.get(path, headers=who.headers)).status_code == 404
        assert await active_jobs(db, note["id"]) == 0  # the edit's job went with the note
    assert set(seen) <= {(200, 204), (404, 204)}


async def test_two_edits_at_once_both_succeed_and_leave_one_queued_summary(
    http: httpx.AsyncClient, db: Database
) -> None:
    who = await signup(http)
    for i in range(ROUNDS):
        note = await create_note(http, who)
        path = f"/notes/{note['id']}"
        texts = {f"First edit {i}. It has words.", f"Second edit {i}. It has others."}
        answers = await together(
            *(http.patch(path, headers=who.headers, json={"raw_text": t}) for t in texts)
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        final = (await http.get(path, headers=who.headers)).json()
        assert final["raw_text"] in texts
        assert final["status"] == "queued"
        assert final["summary"] is None
        assert await active_jobs(db, note["id"]) == 1


async def test_a_double_clicked_retry_queues_once_and_the_second_click_gets_409(
    http: httpx.AsyncClient, db: Database
) -> None:
    who = await signup(http)
    for i in range(ROUNDS):
        note = await create_note(http, who, f"Note {i}. It failed.")
        await set_status(db, note["id"], NoteStatus.FAILED)
        async with db.session() as session:  # its job failed too, as the worker leaves it
            await session.execute(
                update(Job).where(Job.dedupe_key == note["id"]).values(status="failed")
            )
        path = f"/notes/{note['id']}/retry"
        answers = await together(*(http.post(path, headers=who.headers) for _ in range(2)))
        assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
        second = next(a for a in answers if a.status_code == 409)
        # Refused because it came second (the note is queued by now), not by a constraint.
        assert second.json()["detail"].startswith("Only a failed note can be retried")
        assert await active_jobs(db, note["id"]) == 1


# ------------------------------------------------------------------ login guesses


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, login_max_failures=5, login_lockout_seconds=300)


class CountingPasswords(Passwords):
    checked = 0

    async def verify(self, password: str, hashed: str | None) -> bool:
        type(self).checked += 1
        return await super().verify(password, hashed)


async def guess(
    http: httpx.AsyncClient, email: str, password: str, client: str = "203.0.113.7"
) -> httpx.Response:
    # The server trusts the local proxy (uvicorn's default), so this is the client's address.
    headers = {"X-Forwarded-For": client}
    return await http.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )


async def test_a_parallel_burst_of_guesses_checks_at_most_the_limit(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    who = await signup(http)
    app.state.passwords.__class__ = CountingPasswords
    CountingPasswords.checked = 0
    answers = await together(*(guess(http, who.email, f"wrong-{i}") for i in range(40)))
    codes = Counter(a.status_code for a in answers)
    assert codes == {401: 5, 429: 35}, codes
    assert CountingPasswords.checked == 5
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)
    # The right password from the same client is refused too until the window ends.
    late = await guess(http, who.email, who.password)
    assert late.status_code == 429
    assert CountingPasswords.checked == 5


async def test_guesses_from_one_client_do_not_lock_the_owner_out(http: httpx.AsyncClient) -> None:
    who = await signup(http)
    answers = await together(*(guess(http, who.email, f"wrong-{i}") for i in range(12)))
    assert Counter(a.status_code for a in answers) == {401: 5, 429: 7}
    owner = await guess(http, who.email, who.password, client="198.51.100.20")
    assert owner.status_code == 200, owner.text


async def test_the_account_wide_ceiling_holds_against_many_clients(
    http: httpx.AsyncClient,
) -> None:
    who = await signup(http)
    # 10 clients x 5 guesses is the ceiling (10 x the per-client limit); the 11th is refused.
    for n in range(10):
        answers = await together(*(guess(http, who.email, "nope", f"10.0.0.{n}") for _ in range(5)))
        assert {a.status_code for a in answers} == {401}
    assert (await guess(http, who.email, who.password, "10.0.0.99")).status_code == 429


async def test_the_longest_email_from_the_longest_address_is_counted_not_a_500(
    http: httpx.AsyncClient,
) -> None:
    # 254 characters, the most an address may have, from an IPv4-mapped IPv6 client (45): the
    # per-client counter's key is 307 characters long and must fit its column.
    domain = f"{'b' * 63}.{'c' * 63}.{'d' * 57}.com"
    email = f"{uuid.uuid4().hex * 2}@{domain}"
    assert len(email) == 254
    who = await signup(http, email=email)
    client = "0000:0000:0000:0000:0000:ffff:255.255.255.255"
    for _ in range(5):
        assert (await guess(http, who.email, "nope", client)).status_code == 401
    assert (await guess(http, who.email, who.password, client)).status_code == 429


# ------------------------------------------------------------------ tokens and hashing


async def test_forged_tokens_are_not_remembered(http: httpx.AsyncClient) -> None:
    from notes_api.users import tokens

    before = len(tokens._verified)
    for i in range(300):
        forged = f"eyJhbGciOiJIUzI1NiJ9.{'A' * 1500}{i}.{'B' * 40}"
        response = await http.get("/notes", headers={"Authorization": f"Bearer {forged}"})
        assert response.status_code == 401
    huge = "x" * 12_000
    response = await http.get("/notes", headers={"Authorization": f"Bearer {huge}"})
    assert response.status_code == 401
    assert len(tokens._verified) == before


async def test_absurdly_long_tokens_are_refused_before_any_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from notes_api.users import tokens

    calls: list[str] = []
    monkeypatch.setattr(tokens, "_verify", lambda secret, token: calls.append(token))
    assert tokens.decode_access_token("s" * 32, "x" * 12_000) is None
    assert calls == []


async def test_signups_hashing_slowly_hold_no_connection_from_note_creation(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow_hash(self: Passwords, password: str) -> str:
        await asyncio.sleep(2.5)
        return "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

    # A signup that held its connection while hashing would keep both for 2.5 s, longer than
    # a note creation waits for one (2 s): 503s. The 2 s leaves room for a loaded machine
    # (0.5 s did not, with two CPU-bound processes beside the suite).
    settings = make_settings(database_url, db_pool_size=2, db_pool_timeout=2.0)
    async with (
        running_app(settings) as app,
        serve(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        who = await signup(http)
        monkeypatch.setattr(Passwords, "hash", slow_hash)
        signups = [
            http.post(
                "/auth/signup",
                json={
                    "email": f"burst-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "x" * 12,
                },
            )
            for _ in range(8)
        ]
        notes = [
            http.post("/notes", headers=who.headers, json={"raw_text": f"Note {i}."})
            for i in range(8)
        ]
        answers = await together(*signups, *notes)
    assert [a.status_code for a in answers[8:]] == [202] * 8, [a.text for a in answers[8:]]
    assert {a.status_code for a in answers[:8]} == {201}


# ------------------------------------------------------------------ an edit during a summary


class GatedSummarizer:
    """Summarizes on command, so a test can edit a note while its summary is being made."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def summarize(self, text: str, *, title: str | None = None) -> str:
        self.started.set()
        await self.release.wait()
        return f"summary of: {text}"

    async def aclose(self) -> None:
        return None


async def test_an_edit_during_a_summary_never_keeps_the_old_summary(
    http: httpx.AsyncClient, db: Database
) -> None:
    who: Account = await signup(http)
    for i in range(ROUNDS // 2):
        summarizer = GatedSummarizer()
        config = WorkerConfig(concurrency=1, lease_seconds=10, poll_interval=0.05)
        worker = Worker(db, [SummarizeHandler(summarizer)], config)  # type: ignore[arg-type]
        running = asyncio.create_task(worker.run())
        note = await create_note(http, who, f"Old text {i}. Two sentences.")
        await asyncio.wait_for(summarizer.started.wait(), 10)
        new_text = f"New text {i}. Also two sentences."
        summarizer.release.set()  # the worker commits its summary while the edit runs
        edit = await http.patch(
            f"/notes/{note['id']}", headers=who.headers, json={"raw_text": new_text}
        )
        assert edit.status_code == 200, edit.text
        settled = await http.get(f"/notes/{note['id']}?wait=10", headers=who.headers)
        worker.stop()
        await running
        final = settled.json()
        assert final["raw_text"] == new_text
        assert final["status"] == "done", final
        assert final["summary"] == f"summary of: {new_text}"
