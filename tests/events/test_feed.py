"""The feed's horizon on Postgres: an event whose transaction commits after a later event's
is still delivered, and in id order; a rolled-back id is given up after the gap timeout.
(Row ids count every organization's events: the two transactions below are of two
organizations, since one organization's events take turns, see test_event_ids.py.)"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from notes_api.core.db import Database
from notes_api.core.identity import Caller, Role
from notes_api.core.models import utcnow
from notes_api.events.models import EventType
from notes_api.notes import outbox
from notes_api.notes.models import NoteStatus
from notes_api.organizations.models import DEFAULT_ORGANIZATION_ID
from notes_api.streams.feed import Feed


@pytest.fixture
def database_url(pg_url: str) -> str:
    import psycopg

    from tests.conftest import empty_pg

    empty_pg(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name, created_at, updated_at) "
            "VALUES (%s, 'Default', now(), now()), (%s, 'Other', now(), now())",
            (DEFAULT_ORGANIZATION_ID, OTHER),
        )
    return pg_url


OTHER = uuid.UUID("00000000-0000-0000-0000-0000000000ff")


def _note(owner: uuid.UUID, organization_id: uuid.UUID) -> Any:
    """A note's row as the outbox reads it (the note itself need not exist)."""
    now = utcnow()
    return SimpleNamespace(
        id=uuid.uuid4(),
        organization_id=organization_id,
        title=None,
        summary=None,
        status=NoteStatus.QUEUED,
        attempts=0,
        error=None,
        owner_id=owner,
        created_at=now,
        updated_at=now,
        summarized_at=None,
    )


async def _record(
    session: Any, owner: uuid.UUID, organization_id: uuid.UUID = DEFAULT_ORGANIZATION_ID
) -> int:
    return await outbox.record(session, EventType.QUEUED, _note(owner, organization_id))


async def _started(db: Database, owner: uuid.UUID, gap_timeout: float) -> tuple[Feed, Any]:
    """A feed with one subscriber, started after one committed event (a known position)."""
    async with db.session(write=True) as session:
        await _record(session, owner)
    feed = Feed(db, per_user=5, per_process=10, poll_interval=0.2, gap_timeout=gap_timeout)
    feed.start()
    sub = feed.subscribe(Caller(owner, DEFAULT_ORGANIZATION_ID, Role.AGENT), None)
    await feed.horizon()
    await asyncio.sleep(0.3)
    sub.wake.clear()
    return feed, sub


async def test_a_late_committer_is_waited_for_and_delivered_in_order(db: Database) -> None:
    owner = uuid.uuid4()
    feed, sub = await _started(db, owner, gap_timeout=5.0)
    start = await feed.horizon()
    try:
        async with db.session() as slow, db.session() as fast:
            first = await _record(slow, owner, OTHER)
            second = await _record(fast, owner)
            await fast.commit()
            feed.poke()
            await asyncio.sleep(0.5)
            # The later id has committed, the earlier not yet: the horizon stays before both.
            meanwhile = (await feed.horizon(), sub.wake.is_set())
            await slow.commit()
        assert second == first + 1
        assert meanwhile == (start, False)
        feed.poke()
        await asyncio.wait_for(sub.wake.wait(), 2)
        assert await feed.horizon() == second
    finally:
        await feed.stop()


async def test_a_rolled_back_id_is_passed_after_the_gap_timeout(db: Database) -> None:
    owner = uuid.uuid4()
    feed, _ = await _started(db, owner, gap_timeout=1.0)
    try:
        async with db.session() as lost, db.session() as kept:
            await _record(lost, owner, OTHER)
            kept_id = await _record(kept, owner)
            await kept.commit()
            await lost.rollback()
        feed.poke()
        await asyncio.sleep(0.4)
        assert await feed.horizon() < kept_id
        await asyncio.sleep(1.2)
        assert await feed.horizon() == kept_id
    finally:
        await feed.stop()
