"""Units of work: turns at the connection pool, first come first served and bounded in time,
taken at a session's first statement and not before."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from notes_api.core.db import Database
from notes_api.jobs import queue
from notes_api.jobs.models import jobs
from tests.conftest import client_for, create_note, empty_pg, make_settings, running_app, signup


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[Database]:
    database = Database(make_settings(database_url, db_pool_size=1, db_pool_timeout=0.5))
    yield database
    await database.dispose()


async def test_a_newcomer_does_not_take_the_connection_from_a_waiter(
    one_connection: Database,
) -> None:
    db, served = one_connection, []

    async def read(name: str) -> None:
        async with db.session(write=False) as session:
            await session.execute(text("SELECT 1"))
            served.append(name)

    async with db.session(write=False) as holder:
        await holder.execute(text("SELECT 1"))
        waiter = asyncio.create_task(read("waiter"))
        await asyncio.sleep(0.05)  # the waiter is queued for the only connection
    # Handed back: a request arriving in this very moment comes after the waiter. (The
    # pool's own queue lets it barge in, and the waiter goes round the queue again.)
    await read("newcomer")
    await waiter
    assert served == ["waiter", "newcomer"]


async def test_no_turn_within_the_pool_timeout_is_a_pool_timeout(
    one_connection: Database,
) -> None:
    db = one_connection
    async with db.session() as holder:
        await holder.execute(text("SELECT 1"))
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            async with db.session(write=False) as session:
                await session.execute(text("SELECT 1"))
        assert 0.4 < time.monotonic() - started < 2
    async with db.session(write=False) as session:  # and the turn that timed out was not lost
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_cancelled_unit_undoes_its_writes_and_gives_back_its_turn(
    one_connection: Database,
) -> None:
    """A request cancelled in its unit of work (its client gone, its deadline passed): the
    write is rolled back and the only connection is free again at once."""
    db, wrote = one_connection, asyncio.Event()

    async def write_then_wait() -> None:
        async with db.session() as session:
            await queue.enqueue(session, "test", {}, max_attempts=1, dedupe_key="cancelled")
            wrote.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(write_then_wait())
    await wrote.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.session(write=False) as session:  # within the pool timeout of 0.5 s
        found = await session.scalar(select(jobs.c.id).where(jobs.c.dedupe_key == "cancelled"))
    assert found is None


async def test_a_session_holds_no_turn_before_its_first_statement(
    one_connection: Database,
) -> None:
    db = one_connection
    async with db.session() as idle:
        # Work before the first statement (a password hash, say) leaves the pool to others.
        async with db.session(write=False) as other:
            assert (await other.execute(text("SELECT 1"))).scalar_one() == 1
        assert (await idle.execute(text("SELECT 2"))).scalar_one() == 2
        # Its turn is held from its first statement until its transaction ends.
        with pytest.raises(PoolTimeout):
            async with db.session(write=False) as other:
                await other.execute(text("SELECT 3"))


async def test_sqlite_writers_queue_in_order_without_holding_a_connection(
    sqlite_template: Path, tmp_path: Path
) -> None:
    shutil.copy(sqlite_template, tmp_path / "notes.db")
    db = Database(make_settings(f"sqlite:///{tmp_path / 'notes.db'}", db_pool_size=2))
    done: list[str] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def write(name: str, hold: bool) -> None:
        async with db.session(write=True) as session:
            await session.execute(text("SELECT 1"))
            if hold:
                holding.set()
                await release.wait()
            done.append(name)

    try:
        first = asyncio.create_task(write("first", hold=True))
        await asyncio.wait_for(holding.wait(), 10)  # the first writer holds the write turn
        # Tasks start in the order they are made, and each queues for the write turn before
        # its first wait on anything else.
        queued = [asyncio.create_task(write(name, hold=False)) for name in ("second", "third")]
        for _ in range(10):  # let them run up to where they wait (no I/O on the way: no clock)
            await asyncio.sleep(0)
        # The queued writers wait for their turn to write, not on a connection: a reader
        # still gets the second connection while the first writer holds on (were the reader
        # queued behind the writers, it would wait for the release that comes after it).
        async with asyncio.timeout(10), db.session(write=False) as reader:
            assert (await reader.execute(text("SELECT 1"))).scalar_one() == 1
        assert done == []
        release.set()
        await asyncio.gather(first, *queued)
        assert done == ["first", "second", "third"]
    finally:
        await db.dispose()


@pytest.fixture
def kolkata(pg_url: str) -> Iterator[str]:
    """The test database, its sessions' time zone set to UTC+05:30 until the test ends."""
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Kolkata'")
    empty_pg(pg_url)
    try:
        yield pg_url
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET timezone')


async def test_timestamps_are_utc_whatever_the_database_s_time_zone(kolkata: str) -> None:
    """Postgres sends timestamps in the session's time zone. The service's sessions are in
    UTC, so a database set to another zone changes no answer, although what is read is not
    converted again (core/models.UTCDateTime)."""
    async with running_app(make_settings(kolkata)) as app, client_for(app) as client:
        account = await signup(client)
        note = await create_note(client, account)
        read = (await client.get(f"/notes/{note['id']}", headers=account.headers)).json()
        page = (await client.get("/notes", headers=account.headers)).json()
        db: Database = app.state.db
        async with db.session(write=False) as session:
            zone = (await session.execute(text("SHOW timezone"))).scalar_one()
        async with db.session() as session:
            assert (await session.execute(text("SHOW timezone"))).scalar_one() == zone == "UTC"
    for answer in (note, read, page["items"][0]):
        assert answer["created_at"].endswith("Z"), answer["created_at"]
        assert answer["created_at"] == note["created_at"]
