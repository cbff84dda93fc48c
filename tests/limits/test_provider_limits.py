"""A paid model's limits and costs, end to end through the API and a worker, on SQLite and
Postgres: the provider's Retry-After holds the job back, and the tokens its replies report
add up per note, per organization (GET /organizations/me/usage) and in /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs.models import Job, JobStatus
from notes_api.summarize.models import NoteUsage
from tests.conftest import add_user, client_for, create_note, make_settings, running_app, signup
from tests.fake_model import FakeModel, running_fake_model


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    with running_fake_model() as model:
        yield model


@pytest.fixture
async def app(database_url: str, fake: FakeModel) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url,
        summarizer="openai",
        openai_base_url=fake.base_url,
        openai_max_input_tokens=400,
        worker_embedded=True,
    )
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


async def test_a_429_with_retry_after_30_holds_the_next_attempt_back_30_s(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await signup(client, organization="Acme")
    before = utcnow()
    note = await create_note(client, admin, "Busy provider. [ratelimited:5:30]")
    db: Database = app.state.db
    job = None
    for _ in range(100):
        async with db.session() as s:
            job = await s.scalar(select(Job).where(Job.dedupe_key == note["id"]))
        if job is not None and job.attempts == 1 and job.status is JobStatus.QUEUED:
            break
        await asyncio.sleep(0.05)
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert job.last_error is not None and "HTTP 429" in job.last_error
    # The test settings' own backoff is at most 0.2 s: the provider's 30 s is what holds it.
    assert job.run_after >= before + timedelta(seconds=30)
    shown = (await client.get(f"/notes/{note['id']}", headers=admin.headers)).json()
    assert shown["status"] == "queued"
    assert shown["attempts"] == 1


async def test_usage_adds_up_to_what_the_model_server_reported(
    app: FastAPI, client: httpx.AsyncClient, fake: FakeModel
) -> None:
    admin = await signup(client, organization="Acme")
    agent = await add_user(client, admin, "AGENT")
    long_note = "\n\n".join(
        f"Meeting {i}. " + "Pricing and seats were discussed. " * 12 for i in range(12)
    )
    notes = [
        await create_note(client, admin, "A short call about the renewal."),
        await create_note(client, agent, long_note),
        await create_note(client, agent, "Another short note. It has two sentences."),
    ]
    for note in notes:
        done = await client.get(f"/notes/{note['id']}?wait=10", headers=admin.headers)
        assert done.json()["status"] == "done", done.text
    assert fake.totals["calls"] > len(notes)  # the long note took parts and a combination

    usage = await client.get("/organizations/me/usage", headers=admin.headers)
    assert usage.status_code == 200, usage.text
    body = usage.json()
    for period in ("today", "month"):
        assert body[period]["notes_created"] == 3
        assert body[period]["model_calls"] == fake.totals["calls"]
        assert body[period]["prompt_tokens"] == fake.totals["prompt_tokens"]
        assert body[period]["completion_tokens"] == fake.totals["completion_tokens"]
    assert body["today"]["start"] == body["today"]["end"] == utcnow().date().isoformat()
    assert body["month"]["start"] == utcnow().date().replace(day=1).isoformat()

    db: Database = app.state.db
    async with db.session() as s:
        per_note = (
            await s.execute(
                select(
                    func.count(),
                    func.sum(NoteUsage.model_calls),
                    func.sum(NoteUsage.prompt_tokens),
                )
            )
        ).one()
    assert tuple(per_note) == (3, fake.totals["calls"], fake.totals["prompt_tokens"])

    assert (await client.get("/organizations/me/usage", headers=agent.headers)).status_code == 403
    other = await signup(client, organization="Other")
    theirs = (await client.get("/organizations/me/usage", headers=other.headers)).json()
    assert theirs["today"]["model_calls"] == theirs["today"]["notes_created"] == 0

    metrics = (await client.get("/metrics")).text
    assert "summarize_model_calls_total" in metrics
    assert 'summarize_model_tokens_total{type="prompt"}' in metrics
