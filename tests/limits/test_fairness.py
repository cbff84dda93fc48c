"""Fair claims: workers are shared between fairness keys (organizations), so one key's
backlog does not hold back another key's new job. On SQLite and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, update

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs import fair, queue
from notes_api.jobs.models import Job, JobStatus

KIND = "test"
BACKLOG = 500


async def _backlog(db: Database, key: str, count: int) -> None:
    """`count` jobs of `key`, queued a minute ago (older than anything queued next)."""
    start = utcnow() - timedelta(minutes=1)
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "kind": KIND,
            "payload": {"n": i},
            "fairness_key": key,
            "status": JobStatus.QUEUED,
            "attempts": 0,
            "max_attempts": 3,
            "run_after": start,
            "created_at": start,
            "updated_at": start,
        }
        for i in range(count)
    ]
    async with db.session(write=True) as s:
        await s.execute(insert(Job), rows)


async def _enqueue(db: Database, key: str | None) -> None:
    async with db.session(write=True) as s:
        await queue.enqueue(s, KIND, {}, max_attempts=3, fairness_key=key)


async def _claim(db: Database, limit: int, running: Counter[str] | None = None) -> list[Job]:
    async with db.session(write=True) as s:
        return await fair.claim(
            s, [KIND], worker_id="w", lease_seconds=30, limit=limit, running=running
        )


async def test_a_new_job_of_another_key_is_claimed_next_despite_a_backlog(db: Database) -> None:
    await _backlog(db, "org-a", BACKLOG)
    running = Counter(job.fairness_key for job in await _claim(db, 16))
    assert running == {"org-a": 16}  # alone, a key takes every slot
    await _enqueue(db, "org-b")
    [next_job] = await _claim(db, 1, running)
    assert next_job.fairness_key == "org-b"
    assert next_job.created_at > utcnow() - timedelta(seconds=30)  # the new one, not the backlog


async def test_one_claim_shares_its_slots_between_the_keys(db: Database) -> None:
    await _backlog(db, "org-a", BACKLOG)
    for _ in range(3):
        await _enqueue(db, "org-b")
    await _enqueue(db, None)
    claimed = Counter(job.fairness_key for job in await _claim(db, 6))
    # Round-robin, oldest key first: a, b, "", a, b, then "" has nothing left: a.
    assert claimed == {"org-a": 3, "org-b": 2, "": 1}


async def test_within_a_key_the_oldest_due_job_goes_first(db: Database) -> None:
    await _backlog(db, "org-a", 3)
    await _enqueue(db, "org-a")
    async with db.session(write=True) as s:  # a retry waiting out its backoff
        await s.execute(
            update(Job)
            .where(Job.created_at < utcnow() - timedelta(seconds=30))
            .values(run_after=utcnow() + timedelta(minutes=5))
        )
    [job] = await _claim(db, 4)
    assert job.created_at > utcnow() - timedelta(seconds=30)
    assert job.status is JobStatus.PROCESSING


async def test_concurrent_claims_never_take_one_job_twice(db: Database) -> None:
    await _backlog(db, "org-a", 60)
    for _ in range(20):
        await _enqueue(db, "org-b")
    batches = await asyncio.gather(*(_claim(db, 8) for _ in range(12)))
    ids = [job.id for batch in batches for job in batch]
    assert len(ids) == len(set(ids))
    # A claim that found its share locked by another takes less; the next one gets the rest.
    while batch := await _claim(db, 8):
        ids += [job.id for job in batch]
    assert len(ids) == len(set(ids)) == 80


async def test_a_workers_reading_of_the_keys_serves_a_new_key_within_its_ttl(
    db: Database,
) -> None:
    await _backlog(db, "org-a", BACKLOG)
    due_keys = fair.DueKeys(ttl=0.5)

    async def claim(limit: int, running: Counter[str]) -> list[Job]:
        async with db.session(write=True) as s:
            return await fair.claim(
                s,
                [KIND],
                worker_id="w",
                lease_seconds=30,
                limit=limit,
                running=running,
                due_keys=due_keys,
            )

    running = Counter(job.fairness_key for job in await claim(16, Counter()))
    await _enqueue(db, "org-b")
    started = asyncio.get_running_loop().time()
    while True:
        [job] = await claim(1, running)
        running[job.fairness_key] += 1
        if job.fairness_key == "org-b":
            break
        await asyncio.sleep(0.05)
    assert asyncio.get_running_loop().time() - started < 1.0
