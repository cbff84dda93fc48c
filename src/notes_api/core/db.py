"""Engine and units of work. One `Database` per process, shared by the API and the worker.

Every transaction, a request's or a job's, is a `Database.session()`: it commits when its
block ends and rolls back on an error. A session takes its turn at the pool (and, on SQLite,
a writer takes the process's write lock) only at its first statement, and gives both back
when its transaction ends: work done before the first statement (hashing a password, say)
holds no connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_only

from notes_api.core.config import Settings
from notes_api.core.deadline import excused
from notes_api.core.errors import AppError

_IMMEDIATE = "sqlite_begin_immediate"
_PREPARE_AT = 5
_ALONE = "alone"


def create_engine_for(
    url: str, settings: Settings, *, pool_size: int | None = None, autocommit: bool = False
) -> AsyncEngine:
    """`autocommit`: a pool for units of work that only read, whose connections stay outside
    any transaction for their whole life, so nothing is begun, committed or rolled back
    (switching a Postgres connection in and out of autocommit at every checkout cost a read
    a fifth of its CPU; on SQLite each BEGIN and ROLLBACK is a trip to the driver's thread)."""
    size = pool_size or settings.db_pool_size
    # Neither the end of a unit of work nor the pool sends a ROLLBACK to a connection in
    # autocommit (SQLAlchemy asks the driver; a writer's connection never is in it).
    reads = (
        {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True} if autocommit else {}
    )
    if url.startswith("sqlite"):
        return _sqlite_engine(url, size, settings.db_pool_timeout, reads)
    engine = create_async_engine(
        url,
        **reads,
        # A fixed pool: opening connections under load costs more than waiting for one.
        pool_size=size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        # Statement parameters (emails, hashes, note text) never reach an error or a log.
        hide_parameters=True,
        connect_args={
            # A statement is prepared at its fifth run on a connection (psycopg's default):
            # Postgres parses and plans it once, a fifth of a create's CPU there. PgBouncer
            # in transaction mode keeps them from 1.21 (Neon's pooler does); before, off.
            "prepare_threshold": _PREPARE_AT if settings.db_prepared_statements else None,
            # A database across a broken network must fail fast, not hang requests: bound the
            # connect, and let the kernel drop a connection whose packets go unanswered.
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 15,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 15_000,
        },
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _in_utc(dbapi_connection: Any, _record: Any) -> None:
        # Timestamps arrive in UTC, as the columns' type promises (core/models.UTCDateTime),
        # without a conversion per value. PgBouncer keeps a client's TimeZone on whichever
        # server connection serves it.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()
        dbapi_connection.commit()

    return engine


def _sqlite_engine(url: str, size: int, timeout: float, reads: dict[str, Any]) -> AsyncEngine:
    engine = create_async_engine(
        url,
        **reads,
        pool_size=size,
        max_overflow=0,
        pool_timeout=timeout,
        hide_parameters=True,
        connect_args={"timeout": 30},
        # A connection handed back is rolled back only if a transaction is still open in it
        # (_reset): after a COMMIT, SQLAlchemy's own reset would send a ROLLBACK through
        # aiosqlite's thread for nothing.
        pool_reset_on_return=None,
    )

    @event.listens_for(engine.sync_engine, "reset")
    def _reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        if state.asyncio_safe and dbapi_connection.driver_connection._conn.in_transaction:
            dbapi_connection.rollback()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the driver, decides when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the lock up front: upgrading a read lock later can fail at once
        # with "database is locked" instead of waiting for the other writer. A reader runs
        # outside any transaction, each statement on its own, as on Postgres.
        if conn.get_execution_options().get(_IMMEDIATE, False):
            _begin_immediate(conn)

    return engine


def _begin_immediate(conn: Connection) -> None:
    """BEGIN IMMEDIATE in one trip to aiosqlite's thread (SQLAlchemy's own execution makes
    three: a cursor, the statement, the cursor's close). It runs there, not on the loop's
    thread as other statements do (core/statements.py): it may wait for another process's
    write lock. Its listeners hear it and its errors are SQLAlchemy's, as for any statement."""
    sql = "BEGIN IMMEDIATE"
    if conn._has_events or conn.engine._has_events:
        conn.dispatch.before_cursor_execute(conn, None, sql, (), None, False)
    try:
        driver: Any = conn.connection.driver_connection
        await_only(driver.execute_fetchall(sql))
    except Exception as exc:
        conn._handle_dbapi_exception(exc, sql, (), None, None)  # raises


class _Gates:
    """Turns at the pool, first come first served, and SQLite's one writer at a time.

    The pool's own queue lets a newcomer take a connection from under the waiter it was
    handed to, and that waiter goes to the back of the queue again (under 64 concurrent
    requests, p99 was 27 times p50). SQLite writers queue here, in order, rather than in
    SQLite's busy handler, which retries after growing sleeps; a queued writer holds no
    connection, since the write lock is taken before the turn."""

    def __init__(self, size: int, timeout: float, *, sqlite: bool) -> None:
        self.timeout = timeout
        self.turns = asyncio.Semaphore(size)
        self.writer = asyncio.Lock() if sqlite else None

    async def _acquire(self, gate: asyncio.Semaphore | asyncio.Lock) -> None:
        if not gate.locked():
            await gate.acquire()
            return
        try:
            # Bounded here, so it does not count against the request's own deadline.
            with excused():
                async with asyncio.timeout(self.timeout):
                    await gate.acquire()
        except TimeoutError:
            raise PoolTimeout("no database connection was free in time") from None

    async def enter(self, write: bool) -> None:
        writer = self.writer if write else None
        if writer is not None:
            await self._acquire(writer)
        try:
            await self._acquire(self.turns)
        except BaseException:
            if writer is not None:
                writer.release()
            raise

    def leave(self, write: bool) -> None:
        self.turns.release()
        if write and self.writer is not None:
            self.writer.release()


class _TurnTakingSession(Session):
    """A session that passes its `_Gates` just before its first connection (see module doc)."""

    def _connection_for_bind(
        self, engine: Any, execution_options: Any = None, **kw: Any
    ) -> Connection:
        gates: _Gates | None = self.info.get("gates")
        if gates is not None and not self.info.get("holding"):
            write = bool(self.info.get("write"))
            await_only(gates.enter(write))
            self.info["holding"] = True
            if write:
                execution_options = {**(execution_options or {}), _IMMEDIATE: True}
        if self.info.get(_ALONE):
            engine = self.info["unbegun"]
        return super()._connection_for_bind(engine, execution_options, **kw)


def alone(session: AsyncSession) -> None:
    """The unit of work's next statement is its last. On Postgres, when it is also its first,
    it runs outside a transaction, on a connection of the readers' pool: one statement is
    atomic by itself and commits as it ends, so there is no BEGIN and no COMMIT to wait for,
    and the row locks it takes are held for the statement alone, not until its answer has
    come back and a COMMIT has gone out (a new note's event numbers lock its organization's
    counter: creates in one organization take turns for that long). A unit that has already
    run a statement is in its transaction, and the next statement runs there."""
    if session.info.get("unbegun") is not None and not session.info.get("holding"):
        session.info[_ALONE] = True


@event.listens_for(_TurnTakingSession, "after_transaction_end")
def _give_back(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and session.info.pop("holding", False):
        session.info["gates"].leave(bool(session.info.get("write")))


class Database:
    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self.settings = settings
        self.url = settings.async_database_url
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = create_engine_for(self.url, settings, pool_size=pool_size)
        # One turn per pooled connection: a session holds at most one connection at a time.
        self._gates = _Gates(
            pool_size or settings.db_pool_size, settings.db_pool_timeout, sqlite=self.is_sqlite
        )
        self._sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=_TurnTakingSession
        )
        # A read-only unit runs in autocommit, on connections of its own: no BEGIN, COMMIT or
        # ROLLBACK. Both pools take their turns at the same gates, so at most `pool_size`
        # connections are busy at once (up to twice that may be open, idle).
        self.reader_engine = create_engine_for(
            self.url, settings, pool_size=pool_size, autocommit=True
        )
        self._read_sessions = async_sessionmaker(
            self.reader_engine, expire_on_commit=False, sync_session_class=_TurnTakingSession
        )
        # Where a Postgres writer's statement run `alone` goes (SQLite's writers keep their
        # BEGIN IMMEDIATE: the process's write lock is taken before the statement either way).
        self._unbegun = None if self.is_sqlite else self.reader_engine.sync_engine

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work: a writer commits when the block ends, rolls back on an error (but commits
        what an `AppError` with `keep_writes` asks to keep, a failed-login count say). A
        writer's transaction is begun as one (BEGIN IMMEDIATE on SQLite); a reader's runs
        outside any transaction on Postgres."""
        sessions = self._sessions if write else self._read_sessions
        async with sessions() as session:
            session.info.update(gates=self._gates, write=write, unbegun=self._unbegun)
            try:
                yield session
            except AppError as exc:
                await (session.commit() if exc.keep_writes else session.rollback())
                raise
            except BaseException:
                await session.rollback()
                raise
            else:
                if write:
                    await session.commit()
                # A reader has nothing to commit: closing the session (below) ends its read.

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.reader_engine.dispose()
