"""The job engine's state transitions, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.jobs import fair, handler, queue
from notes_api.jobs.handler import Failed, Retry, RetryPolicy
from notes_api.jobs.models import Claimed, Job, JobStatus
from notes_api.jobs.settle import settle

KIND = "test"


class Plain:
    """A kind with nothing to lock or record: the engine's own writes alone."""

    kind = KIND
    retry = None

    async def lock(self, session: object, jobs: list[Claimed]) -> set[uuid.UUID]:
        return {job.id for job in jobs}

    async def record(self, session: object, ended: object) -> None:
        pass


async def _fail(
    s: object, job: Claimed, error: str, *, transient: bool, base: float, cap: float
) -> JobStatus | None:
    """The engine's decision on a failed attempt (settle): retried while attempts are left."""
    outcome = Retry(error) if transient else Failed(error)
    kinds = {KIND: Plain()}
    ended = await settle(s, kinds, RetryPolicy(base, cap), [(job, outcome)])  # type: ignore[arg-type]
    return ended[0].status if ended else None


async def _enqueue(db: Database, key: str | None = None, attempts: int = 3) -> Job:
    async with db.session(write=True) as s:
        job_id = await queue.enqueue(s, KIND, {"n": 1}, dedupe_key=key, max_attempts=attempts)
        return await s.get_one(Job, job_id)


async def _claim(db: Database, limit: int = 10, lease: float = 30.0) -> list[Claimed]:
    async with db.session(write=True) as s:
        return await fair.claim(s, [KIND], worker_id="w", lease_seconds=lease, limit=limit)


async def _get(db: Database, job: Job | Claimed) -> Job:
    async with db.session() as s:
        found = await s.get(Job, job.id)
        assert found is not None
        return found


async def test_claimed_job_carries_a_lease_and_counts_the_attempt(db: Database) -> None:
    job = await _enqueue(db)
    [claimed] = await _claim(db)
    assert claimed.id == job.id
    assert claimed.status is JobStatus.PROCESSING
    assert claimed.attempts == 1
    assert claimed.fairness_key == ""  # the key every job without one shares
    assert claimed.lease_token is not None
    assert claimed.lease_expires_at is not None and claimed.lease_expires_at > utcnow()
    assert await _claim(db) == []  # nobody else gets it


async def test_claim_skips_jobs_not_yet_due(db: Database) -> None:
    job = await _enqueue(db)
    async with db.session(write=True) as s:
        await s.execute(
            update(Job).where(Job.id == job.id).values(run_after=utcnow() + timedelta(minutes=1))
        )
    assert await _claim(db) == []


async def test_completion_is_fenced_by_the_lease_token(db: Database) -> None:
    await _enqueue(db, key="a")
    [claimed] = await _claim(db)
    async with db.session(write=True) as s:
        assert await queue.cancel_active(s, KIND, "a") == 1
    async with db.session(write=True) as s:
        assert not await queue.complete(s, [claimed])  # the cancelled attempt cannot land
        assert not await queue.renew(s, [claimed], 30)
    assert (await _get(db, claimed)).status is JobStatus.CANCELLED


async def test_only_one_active_job_per_dedupe_key(db: Database) -> None:
    await _enqueue(db, key="same")
    with pytest.raises(IntegrityError):
        await _enqueue(db, key="same")
    async with db.session(write=True) as s:
        await queue.cancel_active(s, KIND, "same")
    await _enqueue(db, key="same")  # a cancelled job no longer counts


async def test_transient_failure_requeues_with_backoff_until_attempts_run_out(db: Database) -> None:
    await _enqueue(db, attempts=2)
    [first] = await _claim(db)
    async with db.session(write=True) as s:
        status = await _fail(s, first, "timeout", transient=True, base=10, cap=10)
    assert status is JobStatus.QUEUED
    requeued = await _get(db, first)
    assert requeued.last_error == "timeout"
    assert (requeued.lease_token, requeued.lease_expires_at) == (None, None)
    assert requeued.run_after >= utcnow() + timedelta(seconds=4)  # at least half of 10 s
    async with db.session(write=True) as s:
        await s.execute(update(Job).where(Job.id == first.id).values(run_after=utcnow()))
    [second] = await _claim(db)
    assert second.attempts == 2
    async with db.session(write=True) as s:
        status = await _fail(s, second, "timeout again", transient=True, base=10, cap=10)
    assert status is JobStatus.FAILED
    assert (await _get(db, first)).finished_at is not None


async def test_permanent_failure_fails_at_once(db: Database) -> None:
    await _enqueue(db, attempts=5)
    [claimed] = await _claim(db)
    async with db.session(write=True) as s:
        assert (
            await _fail(s, claimed, "bad input", transient=False, base=1, cap=1) is JobStatus.FAILED
        )


async def test_expired_leases_are_found_and_released_jobs_do_not_count(db: Database) -> None:
    await _enqueue(db)
    [claimed] = await _claim(db, lease=0.05)
    await asyncio.sleep(0.1)
    async with db.session(write=True) as s:
        [stale] = await queue.expired(s)
        assert stale.id == claimed.id
    async with db.session(write=True) as s:
        assert await queue.release(s, [claimed])
    job = await _get(db, claimed)
    assert (job.status, job.attempts, job.lease_token) == (JobStatus.QUEUED, 0, None)
    assert job.lease_expires_at is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)]:
        delays = [RetryPolicy(2.0, 60.0).delay(attempt) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1


async def test_purge_removes_only_old_finished_jobs(db: Database) -> None:
    old = await _enqueue(db, key="old")
    recent = await _enqueue(db, key="recent")
    await _enqueue(db, key="live")
    async with db.session(write=True) as s:
        for job, age in ((old, timedelta(days=30)), (recent, timedelta(days=1))):
            await s.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(status=JobStatus.DONE, finished_at=utcnow() - age)
            )
        assert await queue.purge_finished(s, utcnow() - timedelta(days=7)) == 1
    async with db.session() as s:
        left = {j.dedupe_key for j in (await s.scalars(select(Job))).all()}
    assert left == {"recent", "live"}


async def test_many_concurrent_claimers_take_each_job_once(db: Database) -> None:
    for _ in range(60):
        await _enqueue(db)

    async def claimer() -> list[str]:
        got: list[str] = []
        while batch := await _claim(db, limit=3):
            got += [str(j.id) for j in batch]
        return got

    results = await asyncio.gather(*(claimer() for _ in range(5)))
    taken = [job for r in results for job in r]
    assert len(taken) == 60 and len(set(taken)) == 60


async def test_cancel_active_cancels_only_the_live_job_of_that_kind_and_subject(
    db: Database,
) -> None:
    long_ago = utcnow() - timedelta(days=3)
    finished = await _enqueue(db, key="a")
    async with db.session(write=True) as s:
        await s.execute(
            update(Job)
            .where(Job.id == finished.id)
            .values(status=JobStatus.DONE, finished_at=long_ago, updated_at=long_ago)
        )
    target = await _enqueue(db, key="a")
    other_subject = await _enqueue(db, key="b")
    assert {j.id for j in await _claim(db)} == {target.id, other_subject.id}
    async with db.session(write=True) as s:
        other_kind = await queue.enqueue(s, "other", {}, dedupe_key="a", max_attempts=3)
    before = utcnow()
    async with db.session(write=True) as s:
        assert await queue.cancel_active(s, KIND, "a") == 1

    cancelled = await _get(db, target)
    assert cancelled.status is JobStatus.CANCELLED
    assert (cancelled.lease_token, cancelled.lease_expires_at) == (None, None)
    assert cancelled.finished_at is not None and cancelled.finished_at >= before
    assert cancelled.updated_at >= before
    untouched = await _get(db, other_subject)
    assert untouched.status is JobStatus.PROCESSING and untouched.lease_token is not None
    async with db.session() as s:
        assert (await s.get_one(Job, other_kind)).status is JobStatus.QUEUED
    done = await _get(db, finished)
    assert (done.status, done.finished_at) == (JobStatus.DONE, long_ago)


async def test_renewal_moves_the_lease_forward_by_the_lease_length(db: Database) -> None:
    await _enqueue(db)
    [claimed] = await _claim(db, lease=1.0)
    before = utcnow()
    async with db.session(write=True) as s:
        assert await queue.renew(s, [claimed], 60)
    renewed = await _get(db, claimed)
    assert renewed.lease_expires_at is not None
    assert before + timedelta(seconds=59) <= renewed.lease_expires_at
    assert renewed.lease_expires_at <= utcnow() + timedelta(seconds=60)
    assert renewed.lease_token == claimed.lease_token


async def test_a_failure_reported_after_the_lease_was_lost_changes_nothing(db: Database) -> None:
    await _enqueue(db, key="lost", attempts=5)
    [claimed] = await _claim(db)
    async with db.session(write=True) as s:
        await queue.cancel_active(s, KIND, "lost")
    for transient in (True, False):
        async with db.session(write=True) as s:
            status = await _fail(s, claimed, "late", transient=transient, base=1, cap=1)
        assert status is None
    job = await _get(db, claimed)
    assert (job.status, job.last_error) == (JobStatus.CANCELLED, None)


async def test_release_gives_the_attempt_back_on_the_job_it_was_given(db: Database) -> None:
    await _enqueue(db)
    [claimed] = await _claim(db)
    assert claimed.attempts == 1
    async with db.session(write=True) as s:
        assert await queue.release(s, [claimed])
    assert (await _get(db, claimed)).attempts == 0
    async with db.session(write=True) as s:
        assert not await queue.release(s, [claimed])  # released once only
    assert (await _get(db, claimed)).attempts == 0


@pytest.mark.parametrize("draw", ["low", "high"])
def test_backoff_jitter_spans_the_upper_half_of_the_delay(
    monkeypatch: pytest.MonkeyPatch, draw: str
) -> None:
    monkeypatch.setattr(handler.random, "uniform", lambda a, b: a if draw == "low" else b)
    for attempt, full in [(1, 2.0), (3, 8.0), (10, 60.0)]:
        expected = full / 2 if draw == "low" else full
        assert RetryPolicy(2.0, 60.0).delay(attempt) == expected


async def test_completion_finishes_the_job_and_clears_an_earlier_error(db: Database) -> None:
    await _enqueue(db, attempts=3)
    [first] = await _claim(db)
    async with db.session(write=True) as s:
        await _fail(s, first, "timeout", transient=True, base=0, cap=0)
    [second] = await _claim(db)
    before = utcnow()
    async with db.session(write=True) as s:
        assert await queue.complete(s, [second])
    done = await _get(db, second)
    assert (done.status, done.last_error) == (JobStatus.DONE, None)
    assert (done.lease_token, done.lease_expires_at) == (None, None)  # no lease to reap
    assert done.finished_at is not None and done.finished_at >= before


async def test_expired_leases_come_oldest_first_up_to_the_limit(db: Database) -> None:
    # Queued in the opposite order to their expiry.
    for key in ("live", "newer", "older"):
        await _enqueue(db, key=key)
    now = utcnow()
    for key, expires in (("live", 60), ("newer", -1), ("older", -2)):
        async with db.session(write=True) as s:  # as if claimed, leases run out or not
            await s.execute(
                update(Job)
                .where(Job.dedupe_key == key)
                .values(
                    status=JobStatus.PROCESSING,
                    lease_token=uuid.uuid4(),
                    lease_expires_at=now + timedelta(seconds=expires),
                )
            )
    async with db.session(write=True) as s:
        assert [j.dedupe_key for j in await queue.expired(s, limit=1)] == ["older"]
    async with db.session(write=True) as s:
        assert [j.dedupe_key for j in await queue.expired(s)] == ["older", "newer"]


async def test_queue_depth_counts_the_jobs_waiting_and_running(db: Database) -> None:
    for key in ("a", "b", "c", "d"):
        await _enqueue(db, key=key)
    async with db.session() as s:
        assert await queue.active_depth(s) == {"queued": 4, "processing": 0}
    await _claim(db, limit=1)
    async with db.session() as s:
        await queue.cancel_active(s, KIND, "d")  # finished jobs are not counted here
    async with db.session() as s:
        assert await queue.active_depth(s) == {"queued": 2, "processing": 1}


async def _enqueue_for(db: Database, fairness_key: str, kind: str = KIND) -> Job:
    async with db.session(write=True) as s:
        job_id = await queue.enqueue(s, kind, {}, max_attempts=3, fairness_key=fairness_key)
        return await s.get_one(Job, job_id)


async def _claim_with(db: Database, due_keys: fair.DueKeys, limit: int) -> list[Claimed]:
    async with db.session(write=True) as s:
        return await fair.claim(
            s, [KIND], worker_id="w", lease_seconds=30, limit=limit, due_keys=due_keys
        )


async def test_each_fairness_key_gets_its_own_jobs(db: Database) -> None:
    a = await _enqueue_for(db, "a")
    b = await _enqueue_for(db, "b")
    claimed = await _claim(db, limit=2)
    assert {(j.id, j.fairness_key) for j in claimed} == {(a.id, "a"), (b.id, "b")}


async def test_claim_takes_only_jobs_of_its_kinds_even_when_another_kind_waits_longer(
    db: Database,
) -> None:
    foreign = await _enqueue_for(db, "", kind="other")
    mine = await _enqueue_for(db, "")
    assert [j.id for j in await _claim(db, limit=1)] == [mine.id]
    assert (await _get(db, foreign)).status is JobStatus.QUEUED


async def test_a_reading_out_of_date_claims_no_job_before_it_is_due_and_is_then_read_again(
    db: Database,
) -> None:
    due_keys = fair.DueKeys(ttl=60)  # reused until a claim finds it out of date
    first, second, later = await _enqueue(db), await _enqueue(db), await _enqueue(db)
    async with db.session(write=True) as s:
        await s.execute(
            update(Job).where(Job.id == later.id).values(run_after=utcnow() + timedelta(minutes=1))
        )
    assert [j.id for j in await _claim_with(db, due_keys, 1)] == [first.id]  # read: 2 due
    assert [j.id for j in await _claim(db, limit=1)] == [second.id]  # another worker
    assert await _claim_with(db, due_keys, 1) == []  # its reading still says 1 is due
    async with db.session(write=True) as s:
        await s.execute(update(Job).where(Job.id == later.id).values(run_after=utcnow()))
    assert [j.id for j in await _claim_with(db, due_keys, 1)] == [later.id]


async def test_a_reused_reading_counts_the_jobs_already_taken(db: Database) -> None:
    for key, count in (("a", 2), ("b", 5)):  # a's jobs wait longest
        for _ in range(count):
            await _enqueue_for(db, key)
    due_keys = fair.DueKeys(ttl=60)
    assert [j.fairness_key for j in await _claim_with(db, due_keys, 1)] == ["a"]
    # The reading now says: one of a's, five of b's. Four slots: a's last job and three of b's.
    taken = Counter(j.fairness_key for j in await _claim_with(db, due_keys, 4))
    assert taken == {"a": 1, "b": 3}


async def test_a_key_gives_its_longest_waiting_due_job_first(db: Database) -> None:
    newer, older = await _enqueue(db), await _enqueue(db)
    async with db.session(write=True) as s:
        for job, age in ((newer, 1), (older, 2)):
            await s.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(run_after=utcnow() - timedelta(seconds=age))
            )
    assert [j.id for j in await _claim(db, limit=1)] == [older.id]


async def test_the_key_waiting_longest_gets_the_first_slot(db: Database) -> None:
    older = await _enqueue_for(db, "z")
    await _enqueue_for(db, "a")
    assert [j.id for j in await _claim(db, limit=1)] == [older.id]


@pytest.mark.parametrize("only", ["not yet due", "another kind", "running"])
async def test_a_key_without_a_due_job_of_the_claimers_kinds_takes_no_slot(
    db: Database, only: str
) -> None:
    if only == "running":
        await _enqueue_for(db, "a")
        await _claim(db, limit=1)  # a's only due job, now running
    if only == "another kind":
        await _enqueue_for(db, "a", kind="other")
    else:  # a queued job of a's that is not due yet, so that the key is looked at
        job = await _enqueue_for(db, "a")
        async with db.session(write=True) as s:
            later = utcnow() + timedelta(minutes=1)
            await s.execute(update(Job).where(Job.id == job.id).values(run_after=later))
    b = {(await _enqueue_for(db, "b")).id for _ in range(2)}
    assert {j.id for j in await _claim(db, limit=2)} == b


@pytest.mark.parametrize(
    ("running", "room", "shares"),
    [
        ({}, 4, {"a": 2, "b": 2}),  # turn about, the longest waiting first
        ({}, 1, {"a": 1}),
        ({"a": 2}, 3, {"b": 2, "a": 1}),  # b catches up with a's two running, then turns
        ({"b": 1}, 2, {"a": 2}),
        ({"c": 5}, 12, {"a": 5, "b": 5}),  # no more than each key has due
    ],
)
def test_slots_are_shared_out_to_the_least_loaded_key_then_the_longest_waiting(
    running: dict[str, int], room: int, shares: dict[str, int]
) -> None:
    t = utcnow()
    keys = [("b", t, 5), ("a", t - timedelta(seconds=1), 5), ("idle", None, 0)]
    assert fair.share_out(keys, running, room) == shares


async def test_a_fresh_reading_is_reused_and_an_exhausted_one_read_again(db: Database) -> None:
    due_keys = fair.DueKeys(ttl=60)
    await _enqueue(db)
    await _enqueue(db)
    assert len(await _claim_with(db, due_keys, 1)) == 1  # read: 2 due, 1 left
    await _enqueue(db)
    # Still fresh: it takes the one it knows of, not the one queued since.
    assert len(await _claim_with(db, due_keys, 5)) == 1
    # Used up, it is read again at once: the newest job is found.
    assert len(await _claim_with(db, due_keys, 5)) == 1


# --------------------------------------------------------------- fencing after a takeover


async def _taken_over(db: Database, count: int) -> tuple[list[Claimed], list[Claimed]]:
    """`count` jobs claimed by worker A, whose leases run out; the reaper's way puts them
    back (fenced by A's token, as the worker's reaper does), and worker B claims them with
    a new token. A's copies, and B's."""
    for _ in range(count):
        await _enqueue(db, attempts=5)
    async with db.session(write=True) as s:
        first = await fair.claim(s, [KIND], worker_id="A", lease_seconds=0.05, limit=count)
    await asyncio.sleep(0.1)
    async with db.session(write=True) as s:
        stale = await queue.expired(s)
        assert {j.id for j in stale} == {j.id for j in first}
        outcomes = [(job, Retry("lease expired")) for job in stale]
        ended = await settle(s, {KIND: Plain()}, RetryPolicy(0, 0), outcomes)  # type: ignore[arg-type]
        assert [e.status for e in ended] == [JobStatus.QUEUED] * count
    async with db.session(write=True) as s:
        second = await fair.claim(s, [KIND], worker_id="B", lease_seconds=30, limit=count)
    assert {j.id for j in second} == {j.id for j in first}
    assert {j.lease_token for j in second}.isdisjoint({j.lease_token for j in first})
    return first, second


async def _as_b_left_them(db: Database, second: list[Claimed]) -> None:
    """Each job is still B's: processing under B's token and lease, its second attempt."""
    for job in second:
        row = await _get(db, job)
        assert (row.status, row.attempts, row.worker_id) == (JobStatus.PROCESSING, 2, "B")
        assert (row.lease_token, row.lease_expires_at) == (job.lease_token, job.lease_expires_at)
        assert (row.last_error, row.finished_at) == ("lease expired", None)


LATE_WRITES = ["complete", "requeue", "fail", "renew", "release"]


async def _late(s: object, write: str, batch: list[Claimed]) -> set[uuid.UUID]:
    """A's late write of `batch`: the ids it changed."""
    if write == "complete":
        return await queue.complete(s, batch)  # type: ignore[arg-type]
    if write == "renew":
        return await queue.renew(s, batch, 300)  # type: ignore[arg-type]
    if write == "release":
        return await queue.release(s, batch)  # type: ignore[arg-type]
    changed = set()
    for job in batch:  # failures are written one job at a time (each has its own error)
        ok = (
            await queue.requeue(s, job, "late", 0)  # type: ignore[arg-type]
            if write == "requeue"
            else await queue.fail(s, job, "late")  # type: ignore[arg-type]
        )
        if ok:
            changed.add(job.id)
    return changed


@pytest.mark.parametrize("write", LATE_WRITES)
async def test_a_late_write_of_a_job_taken_over_after_its_lease_ran_out_changes_nothing(
    db: Database, write: str
) -> None:
    [first], second = await _taken_over(db, 1)
    async with db.session(write=True) as s:
        assert await _late(s, write, [first]) == set()
    await _as_b_left_them(db, second)


@pytest.mark.parametrize("write", LATE_WRITES)
async def test_a_late_write_of_a_batch_changes_only_the_jobs_whose_lease_it_still_holds(
    db: Database, write: str
) -> None:
    first, second = await _taken_over(db, 3)
    await _enqueue(db, attempts=5)
    async with db.session(write=True) as s:
        [mine] = await fair.claim(s, [KIND], worker_id="A", lease_seconds=30, limit=1)
    async with db.session(write=True) as s:
        assert await _late(s, write, [*first, mine]) == {mine.id}
    await _as_b_left_them(db, second)
    expected = {
        "complete": JobStatus.DONE,
        "requeue": JobStatus.QUEUED,
        "fail": JobStatus.FAILED,
        "renew": JobStatus.PROCESSING,
        "release": JobStatus.QUEUED,
    }
    assert (await _get(db, mine)).status is expected[write]
