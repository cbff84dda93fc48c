"""Engine and sessions. One `Database` per process, shared by the API and the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from notes_api.core.config import Settings

_IMMEDIATE = "sqlite_begin_immediate"


def create_engine_for(url: str, settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    size = pool_size or settings.db_pool_size
    if url.startswith("sqlite"):
        return _sqlite_engine(url, size, settings.db_pool_timeout)
    return create_async_engine(
        url,
        # A fixed pool: opening connections under load costs more than waiting for one.
        pool_size=size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        connect_args={
            # PgBouncer in transaction mode (Neon's pooled URL) cannot keep prepared statements.
            "prepare_threshold": None,
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


def _sqlite_engine(url: str, size: int, timeout: float) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=size,
        max_overflow=0,
        pool_timeout=timeout,
        connect_args={"timeout": 30},
    )

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
        # with "database is locked" instead of waiting for the other writer.
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """The engine, and turns at its pool. Every session and connection takes a turn first,
    first come first served: the pool's own queue lets a newcomer take a connection from
    under the waiter it was handed to, and that waiter goes to the back of the queue again
    (under 64 concurrent requests, p99 was 27 times p50)."""

    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self.settings = settings
        self.url = settings.async_database_url
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = create_engine_for(self.url, settings, pool_size=pool_size)
        # One turn per pooled connection: a request holds at most one connection at a time.
        self._turns = asyncio.Semaphore(pool_size or settings.db_pool_size)
        # SQLite has one writer at a time. This process's writers queue here, in order,
        # rather than in SQLite's busy handler, which retries after growing sleeps (up to
        # 100 ms each) and let an unlucky writer wait seconds under 64 concurrent requests.
        # (Taken before a turn: a queued writer holds no connection.)
        self._writer = asyncio.Lock() if self.is_sqlite else None
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # On Postgres, autocommit: a read or a single-statement write needs no BEGIN and COMMIT
        # round trips (the same pool, its connections switched while checked out).
        self._autocommit = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._read_sessionmaker = async_sessionmaker(self._autocommit, expire_on_commit=False)

    @asynccontextmanager
    async def _wait_for(self, gate: asyncio.Semaphore | asyncio.Lock | None) -> AsyncIterator[None]:
        """Hold `gate`, waiting in order of arrival for at most DB_POOL_TIMEOUT seconds."""
        if gate is None:
            yield
            return
        if gate.locked():
            try:
                async with asyncio.timeout(self.settings.db_pool_timeout):
                    await gate.acquire()
            except TimeoutError:
                raise PoolTimeout("no database connection was free in time") from None
        else:
            await gate.acquire()
        try:
            yield
        finally:
            gate.release()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for the hottest paths (no ORM session to set up and close), back
        in the pool on exit. On Postgres each statement commits on its own; on SQLite, for
        reads only (the transaction begun by the first statement is rolled back)."""
        async with self._wait_for(self._turns), self._autocommit.connect() as conn:
            yield conn

    @asynccontextmanager
    async def new_session(
        self, *, write: bool = False, read_only: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session on its turn at the pool; the caller ends its transaction. A writer's
        transaction is begun as one; a read-only session runs outside any transaction on
        Postgres, like `connect` (half the round trips of a simple GET)."""
        writer = self._writer if write else None
        sessions = self._read_sessionmaker if read_only else self.sessionmaker
        async with (
            self._wait_for(writer),
            self._wait_for(self._turns),
            sessions() as session,
        ):
            if write:
                await begin_write(session)
            yield session

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self.new_session(write=write) as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a writer (BEGIN IMMEDIATE on SQLite)."""
    await session.connection(execution_options={_IMMEDIATE: True})
