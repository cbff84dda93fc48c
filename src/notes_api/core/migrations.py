"""Alembic, driven from code: `notes-api migrate`, start-up, tests and /readyz share it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(
    os.environ.get("MIGRATIONS_DIR", Path(__file__).resolve().parents[3] / "migrations")
)


def alembic_config(async_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Percent signs in passwords would otherwise be read as interpolation.
    cfg.set_main_option("sqlalchemy.url", async_url.replace("%", "%%"))
    return cfg


def upgrade(async_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(async_url), revision)


def downgrade(async_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(async_url), revision)


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    def _current(sync_conn: object) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()  # type: ignore[arg-type]

    return await conn.run_sync(_current)


def schema_behind(async_url: str) -> str | None:
    """Why the database's schema does not fit this code (`serve --no-migrate`, `worker`), or
    None when it is at head. Connection failures propagate (`explain` words them)."""
    engine = create_async_engine(
        async_url, poolclass=NullPool, connect_args=_connect_args(async_url)
    )

    async def read() -> str | None:
        try:
            async with engine.connect() as conn:
                return await current_revision(conn)
        finally:
            await engine.dispose()

    current, head = asyncio.run(read()), head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no tables yet (no migration applied)"
    return f"the database's schema is at migration {current}, this code needs {head}"


def _connect_args(async_url: str) -> dict[str, Any]:
    return {} if async_url.startswith("sqlite") else {"prepare_threshold": None}


# What libpq, SQLite and Alembic say, and what to do about it; first match wins.
_CAUSES: list[tuple[tuple[str, ...], str]] = [
    (
        ("server does not support ssl, but ssl was required",),
        "the server does not speak SSL, but {var} asks for it (sslmode=require): drop "
        "sslmode from {var} for a local server, or point it at the server that needs SSL",
    ),
    (
        ("no encryption", "ssl off", "sslmode=require", "ssl required", "insecure"),
        "the server accepts only SSL connections: add ?sslmode=require to {var}",
    ),
    (
        ("password authentication failed", "no password supplied"),
        "the server refused the user's password: check the user and password in {var}",
    ),
    (
        ("does not exist",),
        "{found}: create it, or fix the name in {var}",
    ),
    (
        ("could not translate host name", "name or service not known"),
        "the host in {var} ({where}) is not known: check its spelling",
    ),
    (
        (
            "connection refused",
            "no route to host",
            "timeout expired",
            "network is unreachable",
        ),
        "nothing answers at {where}: is the database server running, and are the host and "
        "port in {var} right?",
    ),
    (
        ("unable to open database file",),
        "SQLite cannot open the file {where}: check the path in {var} and that its folder "
        "can be written",
    ),
    (
        ("can't locate revision",),
        "the database was migrated by a newer version of this code ({found}): run that "
        "version, or point {var} at another database",
    ),
]


def explain(exc: BaseException, url: str, var: str = "DATABASE_URL") -> str | None:
    """One line that says what is wrong with the database at `url` (as the user wrote it;
    its password is not shown) and what to check, for an error met while connecting or
    migrating; None when the error is something else."""
    text = " ".join(_messages(exc))
    lowered = text.lower()
    for needles, advice in _CAUSES:
        for needle in needles:
            if needle in lowered:
                found = _clause(text, needle)
                where = _where(url)
                shown = make_url(url).render_as_string(hide_password=True)
                reason = advice.format(var=var, found=found, where=where)
                return f"Cannot use the database {shown}: {reason}".rstrip(".?") + (
                    "?" if reason.endswith("?") else "."
                )
    return None


def _messages(exc: BaseException) -> list[str]:
    """The messages of an error and of every error it came from."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 10:
        seen.append(str(current).replace("\n", " "))
        current = current.__cause__ or current.__context__
    return seen


def _clause(text: str, needle: str) -> str:
    """The sentence of `text` that holds `needle` (`database "x" does not exist`)."""
    at = text.lower().index(needle)
    start = max(text.rfind(":", 0, at), text.rfind("(", 0, at)) + 1
    end = min((i for i in (text.find("\n", at), text.find("(", at)) if i != -1), default=len(text))
    return text[start:end].strip().rstrip(".").replace("FATAL:", "").strip()


def _where(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
