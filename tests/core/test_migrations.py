"""The models and the Alembic revisions describe the same schema, and every revision can be
undone and redone, on SQLite and on Postgres.

Sync tests on purpose: the migration functions run their own event loop (`asyncio.run`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from notes_api.core.config import normalize_database_url
from notes_api.core.migrations import alembic_config, downgrade, head_revision, upgrade
from notes_api.models import Base
from tests.conftest import pg_admin_url

TABLES = {
    "idempotency_keys",
    "jobs",
    "login_attempts",
    "note_usage",
    "note_event_counters",
    "note_events",
    "notes",
    "organization_usage",
    "organizations",
    "rate_limit_counters",
    "refresh_tokens",
    "users",
    "webhook_deliveries",
    "webhook_endpoints",
}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, never migrated: a throwaway Postgres database, not the shared
    test database, whose schema other tests rely on."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    base: str = request.getfixturevalue("pg_url")
    name = f"notes_migrations_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(pg_admin_url(base), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sync_url(url: str) -> str:
    """The same database through a synchronous driver, for inspection."""
    async_url = make_url(normalize_database_url(url))
    driver = "sqlite" if async_url.drivername.startswith("sqlite") else "postgresql+psycopg"
    return async_url.set(drivername=driver).render_as_string(hide_password=False)


def tables_and_revision(url: str) -> tuple[set[str], str | None]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names()) - {"alembic_version"}
            return names, MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def differences(url: str) -> list[object]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_models_and_migrations_agree(empty_database: str) -> None:
    url = normalize_database_url(empty_database)
    upgrade(url)
    assert differences(empty_database) == []
    # And as the project's own Alembic environment sees it (render rules, type comparison).
    command.check(alembic_config(url))


def test_upgrade_downgrade_upgrade_round_trip(empty_database: str) -> None:
    url = normalize_database_url(empty_database)
    upgrade(url)
    assert tables_and_revision(empty_database) == (TABLES, head_revision())
    downgrade(url, "base")
    assert tables_and_revision(empty_database) == (set(), None)
    upgrade(url)
    assert tables_and_revision(empty_database) == (TABLES, head_revision())
    assert differences(empty_database) == []


def test_upgrade_at_head_is_a_no_op(empty_database: str) -> None:
    url = normalize_database_url(empty_database)
    upgrade(url)
    upgrade(url)
    assert tables_and_revision(empty_database) == (TABLES, head_revision())


def test_models_cover_every_migrated_table() -> None:
    assert set(Base.metadata.tables) == TABLES


def test_revisions_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == head_revision()
