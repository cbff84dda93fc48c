"""Statements built once, run on the driver: `Once` wraps a statement built at import,
compiles it once per database, and runs it on the unit of work's own connection
(`Database.session`) as the driver's plain execute of that SQL.

SQLAlchemy's execution of a statement it has already compiled still costs a request about
as much CPU as the driver's whole round trip (an execution context, the cursor's description
turned into result metadata, a hop through a greenlet for each driver call); on SQLite it is
three trips to the driver's thread where one does. A statement built once needs none of it:
its SQL, the order of its parameters and the conversion of each value (UUIDs and times on
SQLite, enums and JSON on both) are fixed, and are taken from SQLAlchemy's own compilation,
so the values and rows are what `session.execute` would give. Errors take SQLAlchemy's own
path (`DBAPIError` and its subclasses; a broken connection is invalidated, not pooled again).

On SQLite a statement runs on the event loop's own thread, on the connection aiosqlite
opened (SQLite's library serializes its use): an indexed statement takes 10-60 µs there,
less than the trip to aiosqlite's thread and back, and under load far less, since Python's
sqlite3 lets go of the GIL for every row it steps and the thread then waits for the loop to
hand it back (up to 5 ms, the interpreter's switch interval, each time). A statement that
may read many rows (a search's scan) is built with `scans=True` and keeps the trip, so that
the loop is not held for its length. No statement run here waits for a lock: a reader never
does in WAL mode, and a writer's statements come after its `BEGIN IMMEDIATE`, which took
the write lock on aiosqlite's thread (core/db.py).

A statement that SQLAlchemy must render anew at each execution (an expanding `IN` list) or
one built per call is run with `session.execute` as usual."""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import JSON, String, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.sqltypes import ARRAY

_S = TypeVar("_S", bound=ClauseElement)
_HELD = "statements.connection"  # session.info: the connection its transaction holds


class _Plan:
    """A statement compiled for one database: its SQL, how its parameters are bound, and how
    a row it returns is converted."""

    __slots__ = ("binds", "compiled", "conversions", "positions", "record", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise TypeError("a statement rendered anew at each execution runs with execute()")
        self.compiled = compiled
        self.sql = _binary_text_arrays(str(compiled), compiled)
        self.positions = compiled.positiontup  # None: the driver takes named parameters
        self.binds: dict[str, Any] = dict(compiled._bind_processors)
        columns = compiled._result_columns
        self.conversions = [
            (i, convert)
            for i, column in enumerate(columns)
            if (convert := column.type._cached_result_processor(dialect, None)) is not None
        ]
        names = [column.keyname for column in columns]
        record: Any = namedtuple("Record", names, rename=True) if names else None
        self.record = record._make if record is not None else None

    def parameters(self, params: dict[str, Any]) -> Any:
        values = self.compiled.construct_params(params)
        for name, bind in self.binds.items():
            if name in values:
                values[name] = bind(values[name])
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)

    def records(self, rows: Any) -> list[Any]:
        make = self.record
        if make is None:
            return []
        if not self.conversions:
            return [make(row) for row in rows]
        records = []
        for row in rows:
            values = list(row)
            for i, convert in self.conversions:
                values[i] = convert(values[i])
            records.append(make(values))
        return records


def _binary_text_arrays(sql: str, compiled: SQLCompiler) -> str:
    """psycopg: a parameter that is an array of strings or JSON (a batch's events, one
    column each) is sent in binary. In text form psycopg quotes and escapes every element
    in Python, a regular expression over each event's JSON: a sixth of a worker's CPU at
    64 jobs in flight. The statement's own cast (`::JSON[]`) reads the binary `text[]`."""
    if compiled.positiontup is not None:
        return sql
    for name, bind in compiled.binds.items():
        if isinstance(bind.type, ARRAY) and isinstance(bind.type.item_type, String | JSON):
            sql = sql.replace(f"%({name})s", f"%({name})b")
    return sql


class Once(Generic[_S]):
    """A statement built once (`statement`), run in a unit of work with `rows`, `first` or
    `scalar`. A row is a named tuple: `row.id`, `row._asdict()`. `scans`: it may read many
    rows, so on SQLite it runs on aiosqlite's thread (see the module's doc)."""

    __slots__ = ("_plans", "scans", "statement")

    def __init__(self, statement: _S, *, scans: bool = False) -> None:
        self.statement = statement
        self.scans = scans
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = _Plan(self.statement, dialect)
        return plan

    async def rows(self, session: AsyncSession, params: dict[str, Any]) -> list[Any]:
        sync: Connection | None = session.info.get(_HELD)
        if sync is None:  # the unit's first statement: it takes its connection now
            sync = (await session.connection()).sync_connection
            session.info[_HELD] = sync
        assert sync is not None
        plan = self._plan(sync.dialect)
        values = plan.parameters(params)
        driver: Any = sync.connection.driver_connection
        if sync._has_events or sync.engine._has_events:  # a tracer's, a test's: they hear it
            sync.dispatch.before_cursor_execute(sync, None, plan.sql, values, None, False)
        try:
            if plan.positions is None:  # psycopg
                cursor = await driver.execute(plan.sql, values, binary=True)
                rows = await cursor.fetchall() if plan.record is not None else ()
            elif self.scans:  # aiosqlite: the statement and its rows in one trip to its thread
                rows = await driver.execute_fetchall(plan.sql, values)
            else:  # SQLite on this thread: aiosqlite has no public name for its connection
                rows = driver._conn.execute(plan.sql, values).fetchall()
        except BaseException as exc:
            # SQLAlchemy's own handling: wrapped as DBAPIError, a lost connection invalidated.
            await session.run_sync(_handle, sync, exc, plan.sql, values)
            raise
        return plan.records(rows)

    async def first(self, session: AsyncSession, params: dict[str, Any]) -> Any | None:
        rows = await self.rows(session, params)
        return rows[0] if rows else None

    async def scalar(self, session: AsyncSession, params: dict[str, Any]) -> Any:
        """The first column of the first row; None without a row."""
        row = await self.first(session, params)
        return None if row is None else row[0]


@event.listens_for(Session, "after_transaction_end")
def _let_go(session: Session, _transaction: SessionTransaction) -> None:
    session.info.pop(_HELD, None)


def _handle(_session: Session, sync: Connection, exc: BaseException, sql: str, values: Any) -> None:
    try:
        raise exc  # SQLAlchemy reads the exception being handled (sys.exc_info)
    except BaseException:
        sync._handle_dbapi_exception(exc, sql, values, None, None)  # raises
