"""Event numbers per organization, in the database: an organization's events are numbered
in commit order without gaps (a second writer waits for the first to end; a rolled-back
number is taken again), another organization's writer never waits, and the migration keeps
the numbers of events recorded before it so that clients still resume."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text

from notes_api.core.config import normalize_database_url
from notes_api.core.db import Database
from notes_api.core.migrations import upgrade
from notes_api.organizations.models import DEFAULT_ORGANIZATION_ID
from tests.conftest import pg_admin_url
from tests.core.test_migrations import sync_url
from tests.events.test_feed import (  # database_url: Postgres, with two organizations
    OTHER,
    _record,
    database_url,  # noqa: F401
)


async def _seqs(db: Database, organization_id: uuid.UUID) -> list[int]:
    async with db.session(write=False) as session:
        rows = await session.execute(
            text("SELECT seq FROM note_events WHERE organization_id = :o ORDER BY id"),
            {"o": organization_id},
        )
        return [int(r[0]) for r in rows]


async def test_one_organizations_writers_take_turns_and_number_in_commit_order(
    db: Database,
) -> None:
    owner = uuid.uuid4()
    async with db.session() as first, db.session() as second, db.session() as other:
        await _record(first, owner)
        waiting = asyncio.create_task(_record(second, owner))
        # Another organization's event is numbered at once, beside the open transaction.
        await asyncio.wait_for(_record(other, owner, OTHER), 2)
        await other.commit()
        await asyncio.sleep(0.5)
        assert not waiting.done()  # the organization's counter is the first's until it ends
        await first.commit()
        await asyncio.wait_for(waiting, 5)
        await second.commit()
    assert await _seqs(db, DEFAULT_ORGANIZATION_ID) == [1, 2]
    assert await _seqs(db, OTHER) == [1]
    async with db.session() as lost:
        await _record(lost, owner)
        await lost.rollback()
    async with db.session() as kept:
        await _record(kept, owner)
    assert await _seqs(db, DEFAULT_ORGANIZATION_ID) == [1, 2, 3]  # no gap for the rollback


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ids.db'}"
        return
    base: str = request.getfixturevalue("pg_url")
    name = f"notes_ids_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(pg_admin_url(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_EVENT = (
    "INSERT INTO note_events (organization_id, owner_id, note_id, type, occurred_at, data)"
    " VALUES (:o, :u, :n, 'note.queued', CURRENT_TIMESTAMP, '{}')"
)


def test_the_migration_keeps_the_numbers_clients_already_hold(fresh_database: str) -> None:
    url = normalize_database_url(fresh_database)
    upgrade(url, "20261130_0004")
    acme, other = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(sync_url(fresh_database))
    sqlite = fresh_database.startswith("sqlite")

    def org(value: uuid.UUID) -> Any:
        return value.hex if sqlite else value

    try:
        with engine.begin() as conn:
            for o in (acme, other):
                conn.execute(
                    text(
                        "INSERT INTO organizations (id, name, created_at, updated_at)"
                        " VALUES (:o, :name, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"o": org(o), "name": str(o)},
                )
            for o in (acme, other, acme):  # global ids 1, 2, 3
                conn.execute(text(_EVENT), {"o": org(o), "u": org(o), "n": org(uuid.uuid4())})
        upgrade(url)
        with engine.begin() as conn:
            conn.execute(text(_EVENT), {"o": org(acme), "u": org(acme), "n": org(uuid.uuid4())})
            conn.execute(text(_EVENT), {"o": org(other), "u": org(other), "n": org(uuid.uuid4())})
            rows = conn.execute(
                text("SELECT id, organization_id, seq FROM note_events ORDER BY id")
            )
            got = [(int(i), str(uuid.UUID(str(o))), int(s)) for i, o, s in rows]
    finally:
        engine.dispose()
    a, b = str(acme), str(other)
    # Kept: each old event's number is its old id; each organization counts on from its own.
    assert got == [(1, a, 1), (2, b, 2), (3, a, 3), (4, a, 4), (5, b, 3)]
