"""Fixtures: every database-backed test runs on SQLite and on a real, migrated Postgres.

Postgres comes from TEST_DATABASE_URL (default: the local server, database notes_test, which
is created when missing; under pytest-xdist each worker has its own database beside it).
Where no Postgres answers: with CI set, the run stops at once and fails (half the suite, all
the real concurrency coverage, must not vanish silently); locally, its tests are skipped with
the reason and the run ends with a warning that counts them."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from notes_api.core.config import Settings, normalize_database_url
from notes_api.core.db import Database
from notes_api.core.migrations import upgrade
from notes_api.main import create_app


def _worker_database(url: str) -> str:
    """Under pytest-xdist (`make test` runs two workers) each worker has a database of its
    own, named after TEST_DATABASE_URL's with the worker's id (notes_test_gw0, ...): the
    fixtures empty and migrate it, and tests running at once must not see each other's rows.
    Run without xdist, the suite uses TEST_DATABASE_URL's database itself."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)


PG_URL = _worker_database(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/notes_test")
)
TABLES = (
    "webhook_deliveries, webhook_endpoints, note_events, note_usage, organization_usage,"
    " rate_limit_counters, idempotency_keys, notes, jobs, refresh_tokens, login_attempts,"
    " users, organizations"
)
PASSWORD = "correct horse battery"


def pg_admin_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def ensure_pg_database(url: str) -> str | None:
    """Create the database if needed; return why Postgres cannot be used, or None."""
    name = make_url(url).database
    try:
        with psycopg.connect(pg_admin_url(url), autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return f"no Postgres at TEST_DATABASE_URL ({type(exc).__name__}: {exc})".strip()
    return None


def empty_pg(url: str) -> None:
    """Every table emptied, children before parents, in one transaction. DELETE rather than
    TRUNCATE: between tests the tables hold a few rows, which a DELETE removes in about a
    millisecond, while a TRUNCATE gives each of the 13 tables and their indexes new files
    (50 to 400 ms on this machine's Postgres), before every one of ~700 Postgres tests."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for table in TABLES.split(","):
            conn.execute(f"DELETE FROM {table.strip()}")


def reset_pg_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


_PG_SKIP_PREFIX = "no Postgres at TEST_DATABASE_URL"
# Fixtures through which a test reaches Postgres (database_url does in its "postgres" case).
_PG_FIXTURES = {"pg_url", "pg", "pg_settings"}


def _uses_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") == "postgres":
        return True
    return bool(_PG_FIXTURES & set(getattr(item, "fixturenames", ())))


def _ci_requires_postgres(reason: str) -> None:
    pytest.exit(
        f"CI is set and Postgres does not answer: {reason}. "
        "Postgres tests are required in CI; start Postgres or fix TEST_DATABASE_URL.",
        returncode=pytest.ExitCode.USAGE_ERROR,
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """In CI, refuse to start a run that includes Postgres tests when Postgres is not there,
    before minutes of SQLite tests go by."""
    if not in_ci() or session.config.option.collectonly:
        return
    if any(_uses_postgres(item) for item in session.items):
        reason = ensure_pg_database(PG_URL)
        if reason:
            _ci_requires_postgres(reason)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Locally, say loudly how much of the suite did not run for want of Postgres."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and _PG_SKIP_PREFIX in str(report.longrepr[2])
    ]
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"WARNING: {len(skipped)} Postgres tests SKIPPED (no Postgres at TEST_DATABASE_URL); "
            "races and processes went untested. In CI this fails.",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def pg_url() -> str:
    reason = ensure_pg_database(PG_URL)
    if reason:
        if in_ci():
            _ci_requires_postgres(reason)
        pytest.skip(reason)
    reset_pg_schema(PG_URL)
    upgrade(normalize_database_url(PG_URL))
    return PG_URL


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(normalize_database_url(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for one test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "notes.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_url")
    empty_pg(url)
    yield url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "app_env": "test",
        "log_format": "console",
        "log_level": "WARNING",
        # Cheap hashes keep the suite fast; the production parameters have their own test.
        "argon2_memory_kib": 1024,
        "argon2_time_cost": 1,
        "worker_embedded": False,
        "worker_concurrency": 4,
        "job_lease_seconds": 2.0,
        "job_poll_interval": 0.2,
        "job_backoff_base": 0.05,
        "job_backoff_max": 0.2,
        "job_shutdown_grace": 2.0,
        "db_pool_size": 10,
        # Tests write far faster than a person; tests/limits turns the limits on.
        "rate_limit_user_writes_per_minute": 0,
        "rate_limit_org_writes_per_minute": 0,
        # Every test signs up from one address; the sign-up limit has tests of its own.
        "signup_per_client_per_hour": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@dataclass
class Account:
    email: str
    password: str
    user: dict[str, Any]
    access_token: str
    refresh_token: str

    @property
    def id(self) -> str:
        return str(self.user["id"])

    @property
    def session_id(self) -> uuid.UUID:
        """The session its access token names (`sid`)."""
        return uuid.UUID(jwt.decode(self.access_token, options={"verify_signature": False})["sid"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def signup(
    client: httpx.AsyncClient, *, organization: str | None = None, email: str | None = None
) -> Account:
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if organization is not None:
        body["organization_name"] = organization
    response = await client.post("/auth/signup", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return Account(email, PASSWORD, data["user"], data["access_token"], data["refresh_token"])


async def add_user(client: httpx.AsyncClient, admin: Account, role: str) -> Account:
    """An ADMIN provisions a user in its organization, who then logs in."""
    email = f"{role.lower()}-{uuid.uuid4().hex[:10]}@example.com"
    created = await client.post(
        "/users", headers=admin.headers, json={"email": email, "password": PASSWORD, "role": role}
    )
    assert created.status_code == 201, created.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return Account(email, PASSWORD, created.json(), tokens["access_token"], tokens["refresh_token"])


async def create_note(
    client: httpx.AsyncClient,
    account: Account,
    text: str = "A note. It has two sentences.",
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/notes", headers=account.headers, json={"raw_text": text, **extra}
    )
    assert response.status_code == 202, response.text
    note: dict[str, Any] = response.json()
    return note


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on a free local port (its lifespan already runs)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def stream_status(app: FastAPI, url: str, headers: dict[str, str]) -> httpx.Response:
    """An event stream's answer: over a real server (a stream does not end, and the ASGI
    transport waits for the end), up to its first line."""
    async with (
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url) as real,
        real.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code == 200:
            first = await anext(response.aiter_lines())
            return httpx.Response(200, headers=response.headers, text=first)
        body = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=body)


NOTE_FIELDS = {
    "id",
    "title",
    "raw_text",
    "summary",
    "status",
    "attempts",
    "error",
    "owner_id",
    "created_at",
    "updated_at",
    "summarized_at",
}
