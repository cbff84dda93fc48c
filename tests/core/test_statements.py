"""Statements built once, run on the driver (`core.statements.Once`): the same rows and
values as SQLAlchemy's own execution, on both databases; SQLAlchemy's errors; in the unit of
work's own transaction."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import aiosqlite
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import bindparam, event, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError

from notes_api.core.db import Database
from notes_api.core.identity import Caller, Role
from notes_api.core.models import utcnow
from notes_api.core.statements import Once
from notes_api.events.models import EventType
from notes_api.events.repository import note_events
from notes_api.jobs import queue
from notes_api.jobs.models import jobs
from notes_api.notes import outbox, repository
from notes_api.notes.models import NoteStatus
from notes_api.organizations.models import DEFAULT_ORGANIZATION_ID
from tests.conftest import make_settings, signup


async def _user(app: FastAPI, client: httpx.AsyncClient) -> tuple[Database, Caller]:
    account = await signup(client)
    caller = Caller(uuid.UUID(account.id), DEFAULT_ORGANIZATION_ID, Role.AGENT)
    return app.state.db, caller


async def test_rows_are_what_sqlalchemy_gives(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Every column of a note, converted as SQLAlchemy converts it (UUIDs and times on
    SQLite, the status enum on both), and named as its columns."""
    db, caller = await _user(app, client)
    row = repository.new_note(caller, {"title": "T", "raw_text": "text"})
    async with db.session() as session:
        added = await repository.add(session, row)
    params = {"note_id": row["id"], **repository.tenant_params(caller)}
    once = repository.one_statement(caller)
    async with db.session(write=False) as session:
        mine = await once.first(session, params)
        theirs = (await session.execute(once.statement, params)).one()
    assert mine == tuple(theirs) == tuple(added)
    assert mine._asdict() == theirs._asdict()
    assert mine.status is NoteStatus.QUEUED
    assert isinstance(mine.id, uuid.UUID) and mine.created_at.utcoffset() is not None
    assert mine.created_at == row["created_at"]


async def test_a_statement_runs_in_the_units_own_transaction(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    db, caller = await _user(app, client)
    row = repository.new_note(caller, {"title": None, "raw_text": "text"})

    async def add_then_fail() -> None:
        async with db.session() as session:
            await repository.add(session, row)  # Once, on the unit's connection
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await add_then_fail()
    async with db.session(write=False) as session:
        assert await repository.get(session, caller, row["id"]) is None


async def test_a_constraint_broken_is_sqlalchemys_integrity_error(db: Database) -> None:
    """The error handlers map `IntegrityError` (409 and the like): a driver's own error must
    not reach them unwrapped. The unit of work is still usable for its rollback."""
    job = queue.new_job("test", {}, max_attempts=1, dedupe_key="same")
    async with db.session() as session:
        await queue.enqueue(session, "test", {}, max_attempts=1, dedupe_key="same")
    with pytest.raises(IntegrityError):
        async with db.session() as session:
            await queue.enqueue(session, "test", {}, max_attempts=1, dedupe_key="same")
    async with db.session(write=False) as session:
        found = await session.scalar(select(jobs.c.id).where(jobs.c.dedupe_key == "same"))
    assert found is not None and found != job["id"]


async def test_a_missing_parameter_is_refused_not_sent_as_null(db: Database) -> None:
    once = Once(select(jobs.c.id).where(jobs.c.kind == bindparam("kind")))
    async with db.session(write=False) as session:
        with pytest.raises(InvalidRequestError, match="value is required"):
            await once.rows(session, {})
        assert await once.rows(session, {"kind": "none"}) == []


async def test_a_statement_rendered_at_each_execution_is_refused(db: Database) -> None:
    once = Once(select(jobs.c.id).where(jobs.c.id.in_(bindparam("ids", expanding=True))))
    async with db.session(write=False) as session:
        with pytest.raises(TypeError, match="execute"):
            await once.rows(session, {"ids": [uuid.uuid4()]})


async def test_listeners_of_the_engines_statements_hear_these_too(db: Database) -> None:
    """A tracer (or a test counting round trips) listening to SQLAlchemy's statements."""
    heard: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        heard.append(statement.split()[0])

    once = Once(select(jobs.c.id).limit(bindparam("n")))
    event.listen(db.reader_engine.sync_engine, "before_cursor_execute", listen)
    try:
        async with db.session(write=False) as session:
            await once.rows(session, {"n": 1})
    finally:
        event.remove(db.reader_engine.sync_engine, "before_cursor_execute", listen)
    assert heard == ["SELECT"]


async def test_a_lost_connection_is_not_pooled_again(pg_url: str) -> None:
    """Postgres: a statement whose connection was cut fails as SQLAlchemy's error with the
    connection invalidated, and the next unit of work gets a fresh one."""
    db = Database(make_settings(pg_url, db_pool_size=1))
    once = Once(select(text("pg_backend_pid()")))
    try:
        async with db.session(write=False) as session:
            pid = await once.scalar(session, {})
        async with db.session() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(StatementError) as failed:
            async with db.session(write=False) as session:
                await once.scalar(session, {})
        assert getattr(failed.value, "connection_invalidated", False)
        async with db.session(write=False) as session:
            assert await once.scalar(session, {}) not in (None, pid)
    finally:
        await db.dispose()


_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@_SQLITE
async def test_sqlite_runs_a_statement_on_the_loops_thread_and_a_scan_on_aiosqlites(
    db: Database,
) -> None:
    """A statement is quicker than the trip to aiosqlite's thread; one that may read many
    rows (`scans=True`) takes the trip, so that the loop is not held while it runs."""
    where = Once(select(func.where_am_i()))
    where_scanning = Once(select(func.where_am_i()), scans=True)
    async with db.session(write=False) as session:
        raw = await (await session.connection()).get_raw_connection()
        raw.driver_connection._conn.create_function("where_am_i", 0, threading.get_ident)
        here = await where.scalar(session, {})
        there = await where_scanning.scalar(session, {})
    assert here == threading.get_ident()
    assert there not in (None, here)


@_SQLITE
async def test_a_sqlite_write_makes_two_trips_to_aiosqlites_thread(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note's create: BEGIN IMMEDIATE (one trip, not three) and COMMIT; its statements run
    on the loop's thread, and the connection handed back after the COMMIT is not rolled
    back again."""
    account = await signup(client)
    trips: list[str] = []
    run = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
        trips.append(getattr(fn, "__name__", "?") + (f" {args[0]}" if args else ""))
        return await run(self, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    r = await client.post("/notes", json={"raw_text": "x"}, headers=account.headers)
    assert r.status_code == 202, r.text
    assert trips == ["_execute_fetchall BEGIN IMMEDIATE", "commit"]


@_SQLITE
async def test_a_sqlite_connection_handed_back_in_a_transaction_is_rolled_back(
    db: Database,
) -> None:
    """The pool rolls back only a connection still in a transaction (a unit cancelled in
    its middle, say): its write lock is let go and its writes are gone."""
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute_fetchall("BEGIN IMMEDIATE")
        await raw.execute_fetchall("CREATE TABLE scratch (x INTEGER)")
        assert raw._conn.in_transaction
    async with db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert not raw._conn.in_transaction
        await raw.execute_fetchall("BEGIN IMMEDIATE")  # the lock is free: no wait
        await raw.execute_fetchall("ROLLBACK")
        tables = await raw.execute_fetchall("SELECT name FROM sqlite_master WHERE name = 'scratch'")
    assert list(tables) == []


@pytest.mark.parametrize("prepared", [True, False])
async def test_postgres_prepares_a_statement_run_often_unless_told_not_to(
    pg_url: str, prepared: bool
) -> None:
    """Parsed and planned once per connection after a few runs; off
    (`DB_PREPARED_STATEMENTS=false`) for a pooler that cannot keep them (PgBouncer < 1.21)."""
    db = Database(make_settings(pg_url, db_pool_size=1, db_prepared_statements=prepared))
    once = Once(select(jobs.c.id).where(jobs.c.kind == bindparam("kind")))
    try:
        for _ in range(6):
            async with db.session(write=False) as session:
                assert await once.rows(session, {"kind": "none"}) == []
        async with db.session(write=False) as session:
            kept = await session.scalar(
                text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE :sql"),
                {"sql": "SELECT jobs.id%"},
            )
    finally:
        await db.dispose()
    assert kept == (1 if prepared else 0)


def test_the_statements_that_may_read_all_of_a_callers_notes_keep_sqlites_thread() -> None:
    """A search or a status filter reads notes until it has a page (a search matching
    nothing reads them all: 400 ms for 9,000 notes), the usage count a day's notes: those
    would hold the event loop. A plain page, a cursor's next one and one note would not."""
    caller = Caller(uuid.uuid4(), DEFAULT_ORGANIZATION_ID, Role.AGENT)
    scanning = [
        repository.NoteFilters(q="call"),
        repository.NoteFilters(status=NoteStatus.FAILED),
    ]
    for filters in scanning:
        assert repository.page_query(caller, filters, 21)[0].scans
    plain = repository.NoteFilters(after=(utcnow(), uuid.uuid4()))
    assert not repository.page_query(caller, plain, 21)[0].scans
    assert not repository.page_query(caller, repository.NoteFilters(), 21)[0].scans
    assert not repository.one_statement(caller).scans
    assert repository._CREATED_SINCE.scans


async def test_a_batchs_events_come_back_as_written_whatever_their_text(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Postgres sends a batch's text and JSON columns as binary arrays (no escaping in
    Python): quotes, backslashes, braces, commas, NUL-free Unicode and empty strings arrive
    as they were; SQLite writes the same rows its own way."""
    db, caller = await _user(app, client)
    titles = ['say "hi"', "back\\slash", "{a,b}", "NULL", "", "naïve — 日本 🎉"]
    async with db.session() as session:
        added = [
            await repository.add(session, repository.new_note(caller, {"title": t, "raw_text": t}))
            for t in titles
        ]
    async with db.session() as session:
        ids = await outbox.record_many(session, [(EventType.UPDATED, note) for note in added])
    async with db.session(write=False) as session:
        rows = (
            await session.execute(
                select(note_events.c.note_id, note_events.c.type, note_events.c.data)
                .where(note_events.c.id.in_(ids))
                .order_by(note_events.c.id)
            )
        ).all()
    assert [(r.note_id, r.type) for r in rows] == [(n.id, "note.updated") for n in added]
    assert [r.data["title"] for r in rows] == titles


def test_postgres_gets_a_batchs_text_and_json_arrays_in_binary() -> None:
    plan = outbox._record_and_fan_out(many=True)._plan(postgresql.psycopg.dialect())
    assert "%(data_rows)b::JSON[]" in plan.sql and "%(type_rows)b::VARCHAR" in plan.sql
    assert "%(note_id_rows)s::UUID[]" in plan.sql  # the rest as before
