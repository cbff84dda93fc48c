"""Shutdown order of `notes-api serve` with its embedded worker, as a real process: on
SIGTERM the worker stops claiming at once, long polls are answered at once, the running job
finishes within the grace period, and then the process exits."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.conftest import signup
from tests.fake_model import FakeModel, running_fake_model
from tests.reliability.harness import Processes

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with running_fake_model() as fake:
        yield fake


def status_of(pg: str, note_id: str) -> str:
    with psycopg.connect(pg, autocommit=True) as conn:
        row = conn.execute("SELECT status FROM notes WHERE id = %s", (note_id,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_sigterm_stops_claiming_answers_long_polls_and_finishes_the_running_job(
    pg: str, procs: Processes, model: FakeModel
) -> None:
    env = {
        "DATABASE_URL": pg,
        "WORKER_EMBEDDED": "true",
        "WORKER_CONCURRENCY": "1",
        "SUMMARIZER": "openai",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_TIMEOUT": "30",
        "JOB_SHUTDOWN_GRACE": "8",
        "JOB_LEASE_SECONDS": "10",
    }
    api = procs.api(env)
    await api.wait_healthy(timeout=90)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=40) as client:
        who = await signup(client)
        running = await client.post(
            "/notes", headers=who.headers, json={"raw_text": "Running when stopped [slow:3]"}
        )
        deadline = time.monotonic() + 20
        while status_of(pg, running.json()["id"]) != "processing":
            assert time.monotonic() < deadline, "the first job never started"
            await asyncio.sleep(0.05)
        # The only worker slot is busy: this one waits in the queue.
        waiting = await client.post(
            "/notes", headers=who.headers, json={"raw_text": "Queued when stopped."}
        )
        waiting_id = waiting.json()["id"]
        poll = asyncio.create_task(client.get(f"/notes/{waiting_id}?wait=30", headers=who.headers))
        await asyncio.sleep(0.5)  # the long poll is parked
        api.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        stopped = time.monotonic()
        answer = await asyncio.wait_for(poll, 5)
        assert time.monotonic() - stopped < 3, "the long poll held the shutdown"
        assert answer.status_code == 200
        assert answer.json()["status"] == "queued"
    exit_code = await asyncio.to_thread(api.popen.wait, 20)  # type: ignore[union-attr]
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert exit_code in (0, -signal.SIGTERM), api.log()[-3000:]
    assert "Application shutdown complete" in api.log()
    assert status_of(pg, running.json()["id"]) == "done"  # finished within the grace
    assert status_of(pg, waiting_id) == "queued"  # never claimed after the signal
