"""Alembic environment: async engines for SQLite and Postgres alike."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from notes_api.core.models import UTCDateTime
from notes_api.models import Base

config = context.config
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Migrations stay free of application imports: UTCDateTime is a timezone-aware DateTime.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several replicas may start at once; one migrates, the others wait and find
            # nothing left to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(7242011)"))
        context.run_migrations()


async def _run_async() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by notes_api.core.migrations"
    engine = create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args={} if url.startswith("sqlite") else {"prepare_threshold": None},
    )
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # tests hand in a connection
        _configure(connection)
        return
    # Asked without try/except: a failure inside asyncio.run would otherwise be chained to
    # "no running event loop", the first of three tracebacks a newcomer had to read.
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("run migrations outside an event loop, or pass a connection")
    asyncio.run(_run_async())


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
