"""Across real processes on Postgres: a note created through one API process and summarized
by a separate worker process is seen on a stream opened on a second API process, each event
within a second of its commit (the NOTIFY sent by the committing transaction wakes the
stream's process)."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest

from notes_api.core.config import Settings
from tests.conftest import create_note, empty_pg, make_settings, running_app, serve, signup
from tests.events.sse import free_port, open_stream, start_api, wait_ready
from tests.jobs.test_processes import start_worker, stop


@pytest.fixture
def pg_settings(pg_url: str) -> Settings:
    empty_pg(pg_url)
    return make_settings(pg_url)


@pytest.fixture
def second_api(pg_settings: Settings) -> Iterator[str]:
    port = free_port()
    proc = start_api(pg_settings.database_url, port, event_heartbeat_seconds=1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        assert stop(proc) in (0, -signal.SIGTERM)


@pytest.fixture
async def first_api(pg_settings: Settings) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    async with (
        running_app(pg_settings) as app,
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        yield base_url, client


async def test_a_note_is_seen_on_another_api_process_as_a_worker_process_summarizes_it(
    pg_settings: Settings, first_api: tuple[str, httpx.AsyncClient], second_api: str
) -> None:
    _, client = first_api
    await wait_ready(second_api)
    worker = start_worker(pg_settings, summarizer="extractive", job_poll_interval=30)
    try:
        agent = await signup(client)
        async with open_stream(second_api, "/notes/events", agent.access_token) as reader:
            await reader.next(comments=True)
            # Warm-up: the worker is listening once its first note is done (a process
            # starting on a busy machine may take a while).
            warm = await create_note(client, agent, "Warm-up note. Two sentences here.")
            while True:
                body = (await reader.next(timeout=60)).json
                if body["data"]["id"] == warm["id"] and body["type"] == "note.done":
                    break
            note = await create_note(client, agent, "Across processes. It has two sentences.")
            lags: list[tuple[str, float]] = []
            while len(lags) < 3:
                event = await reader.next()
                body = event.json
                if body["data"]["id"] != note["id"]:
                    continue
                occurred = datetime.fromisoformat(body["occurred_at"]).timestamp()
                lags.append((body["type"], time.time() - occurred))
        assert [t for t, _ in lags] == ["note.queued", "note.processing", "note.done"]
        assert all(lag < 1.0 for _, lag in lags), lags
    finally:
        assert stop(worker) == 0
