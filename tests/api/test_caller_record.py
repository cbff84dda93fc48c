"""The remembered callers (users/callers.py): a change that decides a caller ends its access
on every process within a second, whichever process made it, and nothing is remembered
while a process cannot hear the announcements."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from notes_api.core.identity import Caller, Role
from notes_api.users.callers import CallerRecord
from tests.conftest import (
    PASSWORD,
    Account,
    client_for,
    empty_pg,
    make_settings,
    running_app,
    signup,
)
from tests.limits.test_two_processes import two_servers  # noqa: F401 (a fixture)

# Long enough that only an announcement, not an entry's age, can end a remembered caller.
REMEMBER = "60"


async def refused_within(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], seconds: float
) -> float:
    started = time.monotonic()
    while True:
        status = (await client.get(url, headers=headers)).status_code
        elapsed = time.monotonic() - started
        if status == 401:
            return elapsed
        assert status == 200, status
        assert elapsed < seconds, f"still let in after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


async def _account(client: httpx.AsyncClient, base: str) -> tuple[Account, Account]:
    admin_body = {"email": f"a-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
    admin_body["organization_name"] = "Record"
    signed = (await client.post(base + "/auth/signup", json=admin_body)).json()
    admin = Account(
        admin_body["email"],
        PASSWORD,
        signed["user"],
        signed["access_token"],
        signed["refresh_token"],
    )
    email = f"b-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post(
        base + "/users",
        headers=admin.headers,
        json={"email": email, "password": PASSWORD, "role": "AGENT"},
    )
    assert created.status_code == 201
    login = await client.post(base + "/auth/login", json={"email": email, "password": PASSWORD})
    pair = login.json()
    agent = Account(email, PASSWORD, created.json(), pair["access_token"], pair["refresh_token"])
    return admin, agent


Change = Callable[[httpx.AsyncClient, str, Account, Account], Awaitable[None]]


async def _deactivate(client: httpx.AsyncClient, base: str, admin: Account, agent: Account) -> None:
    r = await client.patch(
        f"{base}/users/{agent.id}", headers=admin.headers, json={"is_active": False}
    )
    assert r.status_code == 200


async def _logout(client: httpx.AsyncClient, base: str, _admin: Account, agent: Account) -> None:
    r = await client.post(
        base + "/auth/logout", headers=agent.headers, json={"refresh_token": agent.refresh_token}
    )
    assert r.status_code == 204


async def _reuse(client: httpx.AsyncClient, base: str, _admin: Account, agent: Account) -> None:
    body = {"refresh_token": agent.refresh_token}
    assert (await client.post(base + "/auth/refresh", json=body)).status_code == 200
    assert (await client.post(base + "/auth/refresh", json=body)).status_code == 401


@pytest.mark.parametrize(
    "change", [_deactivate, _logout, _reuse], ids=["deactivation", "logout", "refresh-reuse"]
)
async def test_a_change_made_at_one_process_ends_access_at_the_other_within_a_second(
    remember_long: None,
    two_servers: list[str],  # noqa: F811
    change: Change,
) -> None:
    first, second = two_servers
    async with httpx.AsyncClient(timeout=10) as client:
        admin, agent = await _account(client, first)
        # The second process confirms the agent, and from then on remembers it.
        for _ in range(3):
            assert (
                await client.get(second + "/users/me", headers=agent.headers)
            ).status_code == 200
        await change(client, first, admin, agent)
        elapsed = await refused_within(client, second + "/users/me", agent.headers, 1.0)
    assert elapsed < 1.0


async def test_a_demotion_at_one_process_is_the_rule_at_the_other_within_a_second(
    remember_long: None,
    two_servers: list[str],  # noqa: F811
) -> None:
    first, second = two_servers
    async with httpx.AsyncClient(timeout=10) as client:
        admin, _agent = await _account(client, first)
        email = f"c-{uuid.uuid4().hex[:8]}@example.com"
        other = await client.post(
            first + "/users",
            headers=admin.headers,
            json={"email": email, "password": PASSWORD, "role": "ADMIN"},
        )
        pair = (
            await client.post(first + "/auth/login", json={"email": email, "password": PASSWORD})
        ).json()
        headers = {"Authorization": "Bearer " + pair["access_token"]}
        assert (await client.get(second + "/users", headers=headers)).status_code == 200
        demoted = await client.patch(
            f"{first}/users/{other.json()['id']}", headers=admin.headers, json={"role": "AGENT"}
        )
        assert demoted.status_code == 200
        started = time.monotonic()
        while (status := (await client.get(second + "/users", headers=headers)).status_code) == 200:
            assert time.monotonic() - started < 1.0, "still an admin at the other process"
            await asyncio.sleep(0.02)
        assert status == 403


@pytest.fixture
def remember_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started after this remember a caller for a minute."""
    monkeypatch.setenv("CALLER_RECORD_SECONDS", REMEMBER)


@pytest.fixture
async def pg_app(pg_url: str) -> AsyncIterator[FastAPI]:
    empty_pg(pg_url)
    async with running_app(make_settings(pg_url)) as application:
        yield application


async def test_nothing_is_remembered_while_the_listener_is_down(
    pg_app: FastAPI, pg_url: str
) -> None:
    # Postgres only: on SQLite there is one process and no listener to lose.
    record: CallerRecord = pg_app.state.callers
    async with client_for(pg_app) as client:
        await _listener_down_and_back(record, client, pg_url)


async def _listener_down_and_back(
    record: CallerRecord, client: httpx.AsyncClient, pg_url: str
) -> None:
    for _ in range(100):  # the listener connects in the background at start-up
        if record.live:
            break
        await asyncio.sleep(0.05)
    assert record.live
    agent = await signup(client)
    assert (await client.get("/users/me", headers=agent.headers)).status_code == 200
    assert record.caller(
        (uuid.UUID(agent.id), uuid.UUID(agent.user["organization_id"]), agent.session_id)
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
    for _ in range(100):
        if not record.live:
            break
        await asyncio.sleep(0.01)
    assert not record.live
    assert (
        record.caller(
            (uuid.UUID(agent.id), uuid.UUID(agent.user["organization_id"]), agent.session_id)
        )
        is None
    )
    # While it is down every request asks the database, and remembers nothing.
    assert (await client.get("/users/me", headers=agent.headers)).status_code == 200
    if not record.live:
        assert not record._entries
    for _ in range(200):  # it reconnects, and the record comes back to life
        if record.live:
            break
        await asyncio.sleep(0.05)
    assert record.live


def test_a_confirmation_read_before_a_change_is_not_remembered_after_it() -> None:
    record = CallerRecord(60, live=True)
    user, org, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    caller = Caller(user, org, Role.ADMIN)
    epoch = record.epoch  # the read begins
    record.forget(user)  # a change is announced while it runs
    record.remember((user, org, sid), caller, epoch)
    assert record.caller((user, org, sid)) is None
    record.remember((user, org, sid), caller, record.epoch)
    assert record.caller((user, org, sid)) == caller


def test_a_remembered_caller_is_forgotten_after_its_age() -> None:
    record = CallerRecord(0.05, live=True)
    key = (uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    record.remember(key, Caller(key[0], key[1], Role.AGENT), record.epoch)
    assert record.caller(key) is not None
    time.sleep(0.06)
    assert record.caller(key) is None


async def test_logout_ends_the_access_token_at_once(client: httpx.AsyncClient) -> None:
    agent = await signup(client)
    assert (await client.get("/users/me", headers=agent.headers)).status_code == 200
    r = await client.post(
        "/auth/logout", headers=agent.headers, json={"refresh_token": agent.refresh_token}
    )
    assert r.status_code == 204
    assert (await client.get("/users/me", headers=agent.headers)).status_code == 401


async def test_a_reused_refresh_token_ends_the_sessions_access_tokens(
    client: httpx.AsyncClient,
) -> None:
    agent = await signup(client)
    body = {"refresh_token": agent.refresh_token}
    fresh = (await client.post("/auth/refresh", json=body)).json()
    fresh_headers = {"Authorization": "Bearer " + fresh["access_token"]}
    assert (await client.get("/users/me", headers=fresh_headers)).status_code == 200
    assert (await client.post("/auth/refresh", json=body)).status_code == 401  # reuse
    for headers in (agent.headers, fresh_headers):
        assert (await client.get("/users/me", headers=headers)).status_code == 401


async def test_another_sessions_logout_leaves_this_one_working(client: httpx.AsyncClient) -> None:
    agent = await signup(client)
    other = (
        await client.post("/auth/login", json={"email": agent.email, "password": agent.password})
    ).json()
    r = await client.post(
        "/auth/logout", headers=agent.headers, json={"refresh_token": other["refresh_token"]}
    )
    assert r.status_code == 204
    assert (await client.get("/users/me", headers=agent.headers)).status_code == 200
    other_headers = {"Authorization": "Bearer " + other["access_token"]}
    assert (await client.get("/users/me", headers=other_headers)).status_code == 401
