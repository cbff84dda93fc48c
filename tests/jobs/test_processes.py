"""Real worker processes (`notes-api worker`) against real Postgres: sharing a burst, being
killed with SIGKILL mid-job, stopping on SIGTERM, retries, and stale attempts after an edit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.events.models import NoteEvent
from notes_api.jobs.models import Job
from notes_api.notes.models import Note
from tests.conftest import Account, client_for, empty_pg, make_settings, running_app, signup
from tests.fake_model import FakeModel, running_fake_model


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with running_fake_model() as fake:
        yield fake


@pytest.fixture
def pg_settings(pg_url: str, model: FakeModel) -> Settings:
    empty_pg(pg_url)
    return make_settings(
        pg_url, summarizer="openai", openai_base_url=model.base_url, openai_timeout=30.0
    )


def start_worker(settings: Settings, **env: Any) -> subprocess.Popen[bytes]:
    values = {
        "DATABASE_URL": settings.database_url,
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "SUMMARIZER": settings.summarizer,
        "OPENAI_BASE_URL": settings.openai_base_url,
        "OPENAI_TIMEOUT": "30",
        # The production lease: on a loaded machine a process can miss a short lease's
        # renewal, and its job is rightly run again (one attempt more), which is not what
        # these tests are about. The lease running out has its own test, with 1.5 s.
        "JOB_LEASE_SECONDS": "30",
        "JOB_POLL_INTERVAL": "0.5",
        "JOB_BACKOFF_BASE": "0.1",
        "JOB_BACKOFF_MAX": "0.2",
        "WORKER_CONCURRENCY": "8",
        "JOB_SHUTDOWN_GRACE": "5",
    }
    values.update({k.upper(): str(v) for k, v in env.items()})
    # Logs go to a file: an unread pipe fills up and blocks the worker.
    with tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", delete=False) as log:
        return subprocess.Popen(
            [sys.executable, "-m", "notes_api.cli", "worker"],
            env={**os.environ, **values},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
async def db(pg_settings: Settings) -> AsyncIterator[Database]:
    """The test's own view of the database the API and the workers share."""
    database = Database(pg_settings)
    yield database
    await database.dispose()


@pytest.fixture
async def api(pg_settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(pg_settings) as app, client_for(app) as client:
        yield app, client


async def post(client: httpx.AsyncClient, who: Account, text: str) -> str:
    response = await client.post("/notes", headers=who.headers, json={"raw_text": text})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def notes_by_status(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = await s.execute(select(Note.status, func.count()).group_by(Note.status))
        return {str(k): v for k, v in rows.all()}


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def note(db: Database, note_id: str) -> Note:
    import uuid

    async with db.session() as s:
        found = await s.get(Note, uuid.UUID(note_id))
        assert found is not None
        return found


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.timeout(240)
async def test_two_workers_share_a_burst_and_finish_each_job_once(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    _, client = api
    who = await signup(client)
    workers = [start_worker(pg_settings, summarizer="extractive") for _ in range(2)]
    try:
        ids = [
            await post(client, who, f"Note number {i}. It is about topic {i}.") for i in range(300)
        ]
        # 17 s alone, 46 s beside other work: the wait leaves room for a loaded machine.
        await wait_until(lambda: _all_done(db, len(ids)), timeout=120)
        async with db.session() as s:
            notes = (await s.scalars(select(Note))).all()
            jobs = (await s.scalars(select(Job))).all()
        assert all(n.attempts == 1 and n.summary and n.summary in n.raw_text for n in notes)
        assert {j.status.value for j in jobs} == {"done"} and len(jobs) == 300
        assert len({j.worker_id for j in jobs}) == 2  # both processes took a share
    finally:
        assert [stop(w) for w in workers] == [0, 0]


async def _all_done(db: Database, count: int) -> bool:
    return (await notes_by_status(db)).get("done", 0) == count


async def test_sigkilled_workers_job_is_taken_over_after_its_lease(
    api: tuple[FastAPI, httpx.AsyncClient],
    pg_settings: Settings,
    model: FakeModel,
    db: Database,
) -> None:
    _, client = api
    who = await signup(client)
    first = start_worker(pg_settings, job_lease_seconds=1.5)
    second = None
    try:
        note_id = await post(client, who, "Killed mid-job [slow:1.5]")
        await wait_until(lambda: _status_is(db, note_id, "processing"))
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        # Its reaper finds the first one's lease run out; its own attempt has the long lease.
        second = start_worker(pg_settings)
        await wait_until(lambda: _status_is(db, note_id, "done"), timeout=30)
        final = await note(db, note_id)
        assert final.attempts == 2
        assert final.summary == "summary: Killed mid-job [slow:1.5]"
    finally:
        if second is not None:
            assert stop(second) == 0


async def _status_is(db: Database, note_id: str, status: str) -> bool:
    return (await note(db, note_id)).status.value == status


async def test_sigterm_lets_the_running_job_finish_then_exits(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    _, client = api
    who = await signup(client)
    worker = start_worker(pg_settings)
    note_id = await post(client, who, "Finish before exit [slow:1]")
    await wait_until(lambda: _status_is(db, note_id, "processing"))
    assert stop(worker, signal.SIGTERM) == 0
    final = await note(db, note_id)
    assert (final.status.value, final.attempts) == ("done", 1)


async def test_sigterm_gives_back_a_job_longer_than_the_grace_period(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    _, client = api
    who = await signup(client)
    worker = start_worker(pg_settings, job_shutdown_grace=0.2)
    note_id = await post(client, who, "Too slow for the grace period [slow:3]")
    await wait_until(lambda: _status_is(db, note_id, "processing"))
    assert stop(worker, signal.SIGTERM) == 0
    back = await note(db, note_id)
    assert (back.status.value, back.attempts) == ("queued", 0)


async def test_transient_model_errors_are_retried_and_permanent_ones_fail_at_once(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    _, client = api
    who = await signup(client)
    worker = start_worker(pg_settings)
    try:
        flaky = await post(client, who, "Overloaded twice [transient:2]")
        rejected = await post(client, who, "Not acceptable [permanent]")
        await wait_until(lambda: _status_is(db, flaky, "done"))
        await wait_until(lambda: _status_is(db, rejected, "failed"))
        assert (await note(db, flaky)).attempts == 3
        failed = await note(db, rejected)
        assert failed.attempts == 1 and failed.error and "400" in failed.error
        assert failed.summary is None
    finally:
        assert stop(worker) == 0


async def test_an_edit_during_summarizing_discards_the_stale_result(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    _, client = api
    who = await signup(client)
    worker = start_worker(pg_settings)
    try:
        note_id = await post(client, who, "Old text [slow:1]")
        await wait_until(lambda: _status_is(db, note_id, "processing"))
        edited = await client.patch(
            f"/notes/{note_id}", headers=who.headers, json={"raw_text": "New text"}
        )
        assert edited.status_code == 200 and edited.json()["status"] == "queued"
        waited = await client.get(f"/notes/{note_id}?wait=20", headers=who.headers)
        assert waited.json()["status"] == "done"
        await asyncio.sleep(1.2)  # the old attempt has returned by now
        final = await note(db, note_id)
        assert final.summary == "summary: New text"
    finally:
        assert stop(worker) == 0


async def test_a_created_note_wakes_an_idle_worker_process_at_once(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    # The worker would look on its own only every 30 s (its poll, and its lease reaper every
    # half lease): the NOTIFY sent by the statement that creates the note is what wakes it.
    _, client = api
    who = await signup(client)
    worker = start_worker(
        pg_settings, summarizer="extractive", job_poll_interval=30, job_lease_seconds=60
    )
    try:
        first = await post(client, who, "Warm-up. The worker is listening once this is done.")
        await wait_until(lambda: _all_done(db, 1), timeout=30)
        await asyncio.sleep(0.5)  # idle again
        loop = asyncio.get_running_loop()
        started = loop.time()
        second = await post(client, who, "Woken at once. Not thirty seconds later.")
        await wait_until(lambda: _all_done(db, 2), timeout=10)
        assert loop.time() - started < 2
        assert {(await note(db, i)).status.value for i in (first, second)} == {"done"}
    finally:
        assert stop(worker) == 0


@pytest.mark.timeout(240)
async def test_a_worker_killed_mid_batch_loses_no_job_and_reruns_only_those_it_held(
    api: tuple[FastAPI, httpx.AsyncClient], pg_settings: Settings, db: Database
) -> None:
    """SIGKILL while a worker claims, starts and group-commits batches: what it had written
    stays written, what it held (claimed, running, or ended but not yet committed) is taken
    over once its lease runs out, and every note ends summarized once, with one `done`
    event, its job at its first attempt or (only the jobs it held) its second."""
    _, client = api
    who = await signup(client)
    count = 400
    for i in range(count):
        await post(client, who, f"Note number {i}. It is about topic {i}.")
    first = start_worker(
        pg_settings, summarizer="extractive", job_lease_seconds=1.5, worker_concurrency=16
    )
    second = None
    try:
        await wait_until(lambda: _done_at_least(db, 40), timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        async with db.session() as s:
            held = set((await s.scalars(select(Job.id).where(Job.status == "processing"))).all())
            finished_before = (await notes_by_status(db)).get("done", 0)
        assert finished_before < count, "the kill came too late to be mid-drain"
        assert held, "the worker held no job when it was killed"
        second = start_worker(pg_settings, summarizer="extractive")
        await wait_until(lambda: _all_done(db, count), timeout=120)
        async with db.session() as s:
            jobs = (await s.scalars(select(Job))).all()
            done_events = await s.scalar(
                select(func.count()).select_from(NoteEvent).where(NoteEvent.type == "note.done")
            )
        assert len(jobs) == count and {j.status.value for j in jobs} == {"done"}
        assert {j.id for j in jobs if j.attempts == 2} == held
        assert all(j.attempts == 1 for j in jobs if j.id not in held)
        assert done_events == count  # an uncommitted result left no trace
    finally:
        if second is not None:
            assert stop(second) == 0


async def _done_at_least(db: Database, count: int) -> bool:
    return (await notes_by_status(db)).get("done", 0) >= count
