"""Turns at the connection pool: first come, first served, and bounded in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from notes_api.core.db import Database
from tests.conftest import make_settings


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
        async with db.connect() as conn:
            await conn.execute(text("SELECT 1"))
            served.append(name)

    async with db.connect():
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
    async with db.session():
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            async with db.connect():
                pass
        assert 0.4 < time.monotonic() - started < 2
    async with db.connect() as conn:  # and the turn that timed out was not lost
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
