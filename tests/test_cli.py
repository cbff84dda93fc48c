"""`notes-api migrate` and `notes-api create-admin` as real processes, and the bootstrap admin
that the environment can ask for at start-up."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from notes_api.core.db import Database
from notes_api.core.migrations import head_revision
from notes_api.organizations.models import DEFAULT_ORGANIZATION_ID
from notes_api.users.models import User
from tests.conftest import PASSWORD, client_for, make_settings, running_app, signup

ADMIN_EMAIL = "Boss@Example.com"


async def cli(*args: str, database_url: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """Run `notes-api ARGS` as its own process; its exit code, stdout and stderr."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "JWT_", "BOOTSTRAP_", "ADMIN_", "ARGON2_"))
    }
    environ.update(
        {
            "DATABASE_URL": database_url,
            "APP_ENV": "development",
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "WARNING",
            **env,
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notes_api.cli",
        *args,
        cwd=cwd,
        env=environ,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


async def test_migrate_brings_a_new_sqlite_database_to_head(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "x.db"
    code, _, err = await cli("migrate", database_url=f"sqlite:///{path}", cwd=tmp_path)
    assert code == 0, err
    assert sqlite_rows(path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    tables = {r[0] for r in sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "organizations", "notes", "jobs", "refresh_tokens"} <= tables


async def test_create_admin_makes_an_admin_who_logs_in_through_the_app(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    url = f"sqlite:///{path}"
    code, _, err = await cli("migrate", database_url=url, cwd=tmp_path)
    assert code == 0, err
    code, out, err = await cli(
        "create-admin", ADMIN_EMAIL, "--password", PASSWORD, database_url=url, cwd=tmp_path
    )
    assert code == 0, err
    assert "Created admin" in out
    # The CLI hashes with the production parameters.
    [(stored,)] = sqlite_rows(path, "SELECT password_hash FROM users")
    assert str(stored).startswith("$argon2id$v=19$m=19456,t=2,p=1$")

    async with running_app(make_settings(url)) as app, client_for(app) as client:
        response = await log_in(client, ADMIN_EMAIL.lower(), PASSWORD)
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = (await client.get("/users/me", headers=headers)).json()
        assert me["email"] == "boss@example.com"
        assert me["role"] == "ADMIN"
        assert me["organization_id"] == str(DEFAULT_ORGANIZATION_ID)
        assert (await client.get("/users", headers=headers)).status_code == 200


async def test_create_admin_twice_exits_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    # Without --password the password comes from $ADMIN_PASSWORD; the schema is migrated first.
    code, _, err = await cli(
        "create-admin", ADMIN_EMAIL, database_url=url, cwd=tmp_path, ADMIN_PASSWORD=PASSWORD
    )
    assert code == 0, err
    code, _, err = await cli(
        "create-admin",
        ADMIN_EMAIL.upper(),
        "--password",
        "other password",
        database_url=url,
        cwd=tmp_path,
    )
    assert code == 1
    assert "already has an account" in err
    async with running_app(make_settings(url)) as app, client_for(app) as client:
        assert (await log_in(client, ADMIN_EMAIL, PASSWORD)).status_code == 200
        assert (await log_in(client, ADMIN_EMAIL, "other password")).status_code == 401


async def test_create_admin_with_short_password_exits_2_and_creates_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"
    code, _, err = await cli(
        "create-admin",
        ADMIN_EMAIL,
        "--password",
        "short",
        database_url=f"sqlite:///{path}",
        cwd=tmp_path,
    )
    assert code == 2
    assert "8 to 128" in err
    assert not path.exists()


async def test_cli_refuses_production_without_jwt_secret(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    code, _, err = await cli(
        "migrate", database_url=f"sqlite:///{path}", cwd=tmp_path, APP_ENV="production"
    )
    assert code == 2
    assert "JWT_SECRET" in err
    assert not path.exists()


# The bootstrap admin, from BOOTSTRAP_ADMIN_EMAIL / BOOTSTRAP_ADMIN_PASSWORD


async def test_bootstrap_settings_create_an_admin_at_start(database_url: str) -> None:
    settings = make_settings(
        database_url, bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=PASSWORD
    )
    async with running_app(settings) as app, client_for(app) as client:
        response = await log_in(client, "boss@example.com", PASSWORD)
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = (await client.get("/users/me", headers=headers)).json()
        assert me["role"] == "ADMIN"
        assert me["organization_id"] == str(DEFAULT_ORGANIZATION_ID)
        # The first admin of the default organization sees the agents who sign up.
        agent = await signup(client)
        listed = (await client.get("/users", headers=headers)).json()["items"]
        assert {u["email"] for u in listed} == {"boss@example.com", agent.email}


async def test_bootstrap_on_restart_keeps_the_existing_account(database_url: str) -> None:
    first = make_settings(
        database_url, bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=PASSWORD
    )
    second = make_settings(
        database_url,
        bootstrap_admin_email=ADMIN_EMAIL.lower(),
        bootstrap_admin_password="a new password",
    )
    async with running_app(first):
        pass
    async with running_app(second) as app, client_for(app) as client:
        assert (await log_in(client, ADMIN_EMAIL, PASSWORD)).status_code == 200
        assert (await log_in(client, ADMIN_EMAIL, "a new password")).status_code == 401


async def test_bootstrap_does_not_promote_an_existing_agent(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as app, client_for(app) as client:
        agent = await signup(client, email="boss@example.com")
    settings = make_settings(
        database_url,
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password="a different password",
    )
    async with running_app(settings) as app, client_for(app) as client:
        me = await client.get("/users/me", headers=agent.headers)
        assert me.json()["role"] == "AGENT"


async def test_two_processes_bootstrapping_at_once_create_one_admin(database_url: str) -> None:
    settings = make_settings(
        database_url, bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=PASSWORD
    )
    async with AsyncExitStack() as first, AsyncExitStack() as second:
        app, _ = await asyncio.gather(
            first.enter_async_context(running_app(settings)),
            second.enter_async_context(running_app(settings)),
        )
        async with client_for(app) as client:
            response = await log_in(client, ADMIN_EMAIL, PASSWORD)
            headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
            listed = (await client.get("/users", headers=headers)).json()["items"]
            assert [u["email"] for u in listed] == ["boss@example.com"]


@pytest.mark.parametrize("password", [None, "  "], ids=["unset", "blank"])
async def test_bootstrap_without_password_does_nothing_and_blank_is_unset(
    database_url: str, password: str | None
) -> None:
    settings = make_settings(
        database_url, bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=password
    )
    assert settings.bootstrap_admin_password is None
    async with running_app(settings) as app, client_for(app) as client:
        db: Database = app.state.db
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 0
        # The address is free: whoever signs up with it is an ordinary agent.
        agent = await signup(client, email="boss@example.com")
        assert agent.user["role"] == "AGENT"


@pytest.mark.parametrize("password", ["short", "x" * 129])
def test_bootstrap_password_must_meet_the_password_rule(password: str) -> None:
    with pytest.raises(ValidationError, match="BOOTSTRAP_ADMIN_PASSWORD"):
        make_settings(
            "sqlite://", bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=password
        )


async def test_serve_on_a_taken_port_exits_at_once_naming_port_and_touches_no_database(
    tmp_path: Path,
) -> None:
    existing = tmp_path / "live.db"
    code, _, err = await cli("migrate", database_url=f"sqlite:///{existing}", cwd=tmp_path)
    assert code == 0, err
    before = (existing.read_bytes(), existing.stat().st_mtime_ns)
    fresh = tmp_path / "never" / "created.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for path in (existing, fresh):
            started = time.monotonic()
            code, out, err = await cli(
                "serve", database_url=f"sqlite:///{path}", cwd=tmp_path, PORT=str(port)
            )
            assert code != 0
            assert time.monotonic() - started < 10
            assert f"127.0.0.1:{port}" in err
            assert "PORT" in err, err
            assert "migrate" not in out + err  # nothing was migrated or started
    assert (existing.read_bytes(), existing.stat().st_mtime_ns) == before
    assert not fresh.parent.exists()
