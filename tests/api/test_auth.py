"""Sign-up, login, throttling, refresh rotation and logout, as the HTTP contract states them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from notes_api.auth import throttle
from notes_api.auth.models import LoginAttempt
from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.organizations.models import DEFAULT_ORGANIZATION_ID
from notes_api.users.models import RefreshToken
from notes_api.users.passwords import Passwords
from tests.conftest import PASSWORD, client_for, make_settings, running_app, signup

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def new_email() -> str:
    return f"auth-{uuid.uuid4().hex[:10]}@example.com"


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


# Sign-up


async def test_signup_without_organization_joins_default_organization_as_agent(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    assert account.user["role"] == "AGENT"
    assert account.user["organization_id"] == str(DEFAULT_ORGANIZATION_ID)
    assert account.user["is_active"] is True
    assert "password_hash" not in account.user


async def test_signup_with_organization_name_makes_caller_admin_of_new_organization(
    client: httpx.AsyncClient,
) -> None:
    first = await signup(client, organization="Acme")
    second = await signup(client, organization="Acme")
    assert first.user["role"] == second.user["role"] == "ADMIN"
    assert first.user["organization_id"] != str(DEFAULT_ORGANIZATION_ID)
    # The same name twice gives two organizations, not a shared one.
    assert first.user["organization_id"] != second.user["organization_id"]


async def test_signup_response_carries_user_and_tokens(client: httpx.AsyncClient) -> None:
    email = new_email()
    response = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == email
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["expires_in"] == 900


@pytest.mark.parametrize(
    "extra",
    [{"role": "ADMIN"}, {"role": "AGENT"}, {"is_active": True}, {"organization_id": "x"}],
)
async def test_signup_rejects_role_and_any_unknown_field(
    client: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    body = {"email": new_email(), "password": PASSWORD, **extra}
    problem = assert_problem(await client.post("/auth/signup", json=body), 422)
    assert [e["loc"] for e in problem["errors"]] == [["body", next(iter(extra))]]
    # Nothing was created: the e-mail is still free.
    retry = await client.post("/auth/signup", json={"email": body["email"], "password": PASSWORD})
    assert retry.status_code == 201
    assert retry.json()["user"]["role"] == "AGENT"


async def test_signup_with_taken_email_in_other_case_is_409(client: httpx.AsyncClient) -> None:
    await signup(client, email="Ada@X.com")
    for email in ("ada@x.com", "ADA@X.COM"):
        response = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert_problem(response, 409)


async def test_concurrent_signups_with_one_email_create_one_account(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    responses = await asyncio.gather(
        *[
            client.post("/auth/signup", json={"email": email, "password": PASSWORD})
            for _ in range(4)
        ]
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]


async def test_signup_with_taken_email_does_not_create_the_organization(
    client: httpx.AsyncClient,
) -> None:
    owner = await signup(client, organization="First")
    response = await client.post(
        "/auth/signup",
        json={"email": owner.email, "password": PASSWORD, "organization_name": "Orphan"},
    )
    assert_problem(response, 409)
    users = await client.get("/users", headers=owner.headers)
    assert [u["email"] for u in users.json()["items"]] == [owner.email]


async def test_signup_stores_email_case_folded_and_login_ignores_case(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client, email="Grace.Hopper@Example.COM")
    assert account.user["email"] == "grace.hopper@example.com"
    response = await login(client, "GRACE.HOPPER@example.com", PASSWORD)
    assert response.status_code == 200


@pytest.mark.parametrize("password", ["", "short", "7chars!"])
async def test_signup_with_weak_password_is_422(client: httpx.AsyncClient, password: str) -> None:
    response = await client.post("/auth/signup", json={"email": new_email(), "password": password})
    problem = assert_problem(response, 422)
    assert ["body", "password"] in [e["loc"] for e in problem["errors"]]


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", ""])
async def test_signup_with_invalid_email_is_422(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    problem = assert_problem(response, 422)
    assert ["body", "email"] in [e["loc"] for e in problem["errors"]]


@pytest.mark.parametrize("blank", ["   ", "\u00a0", "\t\u3000"])
async def test_signup_with_blank_organization_name_is_422(
    client: httpx.AsyncClient, blank: str
) -> None:
    response = await client.post(
        "/auth/signup",
        json={"email": new_email(), "password": PASSWORD, "organization_name": blank},
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [
        {"loc": ["body", "organization_name"], "msg": "Value error, must not be blank"}
    ]


async def test_signup_closed_is_403(database_url: str) -> None:
    settings = make_settings(database_url, signup_open=False)
    async with running_app(settings) as app, client_for(app) as client:
        response = await client.post(
            "/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
    assert_problem(response, 403)


# Login


async def test_login_returns_bearer_token_pair(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await login(client, account.email, PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == account.id


async def test_oauth2_token_form_logs_in_with_email_as_username(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    response = await client.post(
        "/auth/token", data={"username": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["email"] == account.email


async def test_oauth2_token_form_with_wrong_password_is_401(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.post(
        "/auth/token", data={"username": account.email, "password": "wrong password"}
    )
    assert_problem(response, 401)


async def test_login_unknown_email_and_wrong_password_get_same_answer(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    wrong_password = await login(client, account.email, "not the password")
    unknown_email = await login(client, new_email(), PASSWORD)
    assert_problem(wrong_password, 401)
    assert_problem(unknown_email, 401)
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.headers["www-authenticate"] == unknown_email.headers["www-authenticate"]


async def test_login_of_deactivated_user_gets_the_bad_credentials_answer(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client, organization="Deact")
    email = new_email()
    created = await client.post(
        "/users", headers=admin.headers, json={"email": email, "password": PASSWORD}
    )
    await client.patch(
        f"/users/{created.json()['id']}", headers=admin.headers, json={"is_active": False}
    )
    deactivated = await login(client, email, PASSWORD)
    unknown = await login(client, new_email(), PASSWORD)
    assert_problem(deactivated, 401)
    assert deactivated.json() == unknown.json()


async def test_login_with_missing_field_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/auth/login", json={"email": new_email()}), 422)


async def test_login_body_that_is_not_json_is_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


# Throttling


async def test_login_throttle_holds_across_two_app_instances_sharing_a_database(
    database_url: str,
) -> None:
    settings = make_settings(database_url, login_max_failures=3)
    async with (
        running_app(settings) as app_a,
        running_app(settings) as app_b,
        client_for(app_a) as a,
        client_for(app_b) as b,
    ):
        account = await signup(a)
        # Three failures, spread over both processes.
        for client in (a, b, a):
            assert_problem(await login(client, account.email, "wrong password"), 401)
        # Both now refuse, even the right password, without checking it.
        for client, password in ((b, "wrong password"), (a, PASSWORD), (b, PASSWORD)):
            blocked = await login(client, account.email, password)
            assert_problem(blocked, 429)
            retry_after = int(blocked.headers["retry-after"])
            assert 1 <= retry_after <= settings.login_lockout_seconds


async def test_correct_password_during_lockout_still_gets_429(database_url: str) -> None:
    settings = make_settings(database_url, login_max_failures=3)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        for _ in range(3):
            await login(client, account.email, "wrong password")
        response = await login(client, account.email, PASSWORD)
        assert_problem(response, 429)
        assert "retry-after" in response.headers
        # The OAuth2 form shares the same lock.
        form = await client.post(
            "/auth/token", data={"username": account.email, "password": PASSWORD}
        )
        assert_problem(form, 429)


async def test_lockout_counts_email_case_insensitively(database_url: str) -> None:
    settings = make_settings(database_url, login_max_failures=2)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        await login(client, account.email.upper(), "wrong password")
        await login(client, account.email, "wrong password")
        assert_problem(await login(client, account.email.title(), PASSWORD), 429)


async def test_lockout_with_max_failures_one_blocks_after_first_failure(
    database_url: str,
) -> None:
    settings = make_settings(database_url, login_max_failures=1)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        assert_problem(await login(client, account.email, "wrong password"), 401)
        assert_problem(await login(client, account.email, PASSWORD), 429)


async def test_lockout_ends_when_its_window_has_passed(database_url: str) -> None:
    settings = make_settings(database_url, login_max_failures=2, login_lockout_seconds=1)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        for _ in range(2):
            await login(client, account.email, "wrong password")
        blocked = await login(client, account.email, PASSWORD)
        assert_problem(blocked, 429)
        assert blocked.headers["retry-after"] == "1"
        await asyncio.sleep(1.1)
        assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_throttle_is_per_email_and_unknown_emails_are_throttled_too(
    database_url: str,
) -> None:
    settings = make_settings(database_url, login_max_failures=2)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        stranger = new_email()
        for _ in range(2):
            assert_problem(await login(client, stranger, PASSWORD), 401)
        assert_problem(await login(client, stranger, PASSWORD), 429)
        assert (await login(client, account.email, PASSWORD)).status_code == 200


async def test_successful_login_resets_the_failure_count(database_url: str) -> None:
    settings = make_settings(database_url, login_max_failures=3)
    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        for _ in range(2):
            await login(client, account.email, "wrong password")
        assert (await login(client, account.email, PASSWORD)).status_code == 200
        for _ in range(2):
            assert_problem(await login(client, account.email, "wrong password"), 401)
        assert (await login(client, account.email, PASSWORD)).status_code == 200


# Refresh and logout


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def test_refresh_gives_new_pair_and_old_refresh_token_then_fails(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    response = await refresh(client, account.refresh_token)
    assert response.status_code == 200
    pair = response.json()
    assert pair["token_type"] == "bearer"
    assert pair["refresh_token"] != account.refresh_token
    assert pair["access_token"] != account.access_token
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.json()["id"] == account.id
    assert_problem(await refresh(client, account.refresh_token), 401)


async def test_reusing_spent_refresh_token_revokes_whole_family(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    first = (await refresh(client, account.refresh_token)).json()["refresh_token"]
    newest = (await refresh(client, first)).json()["refresh_token"]
    # The first token is presented again: someone holds a copy.
    reused = await refresh(client, account.refresh_token)
    assert_problem(reused, 401)
    assert reused.headers["www-authenticate"] == "Bearer"
    assert_problem(await refresh(client, newest), 401)
    assert_problem(await refresh(client, first), 401)


async def test_concurrent_refreshes_of_one_token_succeed_once(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    responses = await asyncio.gather(*[refresh(client, account.refresh_token) for _ in range(3)])
    assert sorted(r.status_code for r in responses) == [200, 401, 401]


async def test_reuse_revokes_only_that_family(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    other_session = (await login(client, account.email, PASSWORD)).json()["refresh_token"]
    await refresh(client, account.refresh_token)
    assert_problem(await refresh(client, account.refresh_token), 401)
    assert (await refresh(client, other_session)).status_code == 200


async def test_expired_refresh_token_is_401(client: httpx.AsyncClient, db: Database) -> None:
    account = await signup(client)
    async with db.session(write=True) as session:
        await session.execute(
            update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_problem(await refresh(client, account.refresh_token), 401)


@pytest.mark.parametrize("token", ["unknown-token", "x" * 512])
async def test_refresh_with_unknown_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    assert_problem(await refresh(client, token), 401)


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": "x" * 513}])
async def test_refresh_with_malformed_body_is_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert_problem(await client.post("/auth/refresh", json=body), 422)


async def test_logout_is_204_and_that_refresh_token_stops_working(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    response = await client.post(
        "/auth/logout", headers=account.headers, json={"refresh_token": account.refresh_token}
    )
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await refresh(client, account.refresh_token), 401)


async def test_logout_leaves_other_sessions_signed_in(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    other = (await login(client, account.email, PASSWORD)).json()["refresh_token"]
    await client.post(
        "/auth/logout", headers=account.headers, json={"refresh_token": account.refresh_token}
    )
    assert (await refresh(client, other)).status_code == 200


async def test_logout_cannot_revoke_another_users_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    alice = await signup(client)
    mallory = await signup(client)
    response = await client.post(
        "/auth/logout", headers=mallory.headers, json={"refresh_token": alice.refresh_token}
    )
    assert response.status_code == 204
    assert (await refresh(client, alice.refresh_token)).status_code == 200


async def test_logout_requires_signing_in(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.post("/auth/logout", json={"refresh_token": account.refresh_token})
    assert_problem(response, 401)
    assert (await refresh(client, account.refresh_token)).status_code == 200


async def test_users_me_returns_the_caller(client: httpx.AsyncClient) -> None:
    account = await signup(client, organization="Me Inc")
    response = await client.get("/users/me", headers=account.headers)
    assert response.status_code == 200
    body = response.json()
    assert body == account.user
    assert set(body) == {"id", "email", "role", "organization_id", "is_active", "created_at"}


# Error shape


async def test_every_error_is_problem_json(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    responses = {
        401: [
            await client.get("/users/me"),
            await login(client, account.email, "wrong password"),
            await refresh(client, "nope"),
        ],
        403: [await client.get("/users", headers=account.headers)],
        404: [await client.get("/no/such/route")],
        405: [await client.delete("/auth/login")],
        409: [
            await client.post("/auth/signup", json={"email": account.email, "password": PASSWORD})
        ],
        422: [
            await client.post("/auth/signup", json={"email": "x", "password": "y"}),
            await client.post("/auth/token", data={"username": account.email}),
        ],
    }
    for status, items in responses.items():
        for response in items:
            body = assert_problem(response, status)
            assert isinstance(body["title"], str)
            assert body["title"]
            assert isinstance(body["detail"], str)
            assert "Traceback" not in response.text


# Password hashing


async def test_production_argon2_parameters_are_owasp_minimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ARGON2_MEMORY_KIB", "ARGON2_TIME_COST"):
        monkeypatch.delenv(name, raising=False)
    passwords = Passwords(Settings(_env_file=None))  # type: ignore[call-arg]
    hashed = await passwords.hash(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await passwords.verify(PASSWORD, hashed)
    assert not await passwords.verify("wrong password", hashed)


async def test_verify_without_a_hash_is_false() -> None:
    passwords = Passwords(make_settings("sqlite://"))
    assert not await passwords.verify(PASSWORD, None)
    assert not await passwords.verify(PASSWORD, "not a hash")


async def test_a_login_holds_no_connection_while_the_password_is_checked(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One connection, and a hash that takes as long as the test likes: other requests (and
    # on SQLite other writers) go on while it runs.
    settings = make_settings(database_url, db_pool_size=1, db_pool_timeout=2)
    hashing, release = asyncio.Event(), asyncio.Event()
    verify = Passwords.verify

    async def slow_verify(self: Passwords, password: str, hashed: str | None) -> bool:
        hashing.set()
        await release.wait()
        return await verify(self, password, hashed)

    async with running_app(settings) as app, client_for(app) as client:
        account = await signup(client)
        monkeypatch.setattr(Passwords, "verify", slow_verify)
        login = asyncio.create_task(
            client.post("/auth/login", json={"email": account.email, "password": PASSWORD})
        )
        await asyncio.wait_for(hashing.wait(), 5)
        async with asyncio.timeout(1):
            created = await client.post("/notes", headers=account.headers, json={"raw_text": "x"})
            assert created.status_code == 202
            assert (await client.get("/users/me", headers=account.headers)).status_code == 200
        release.set()
        assert (await login).status_code == 200


async def age_login_counters(db: Database, seconds: float) -> None:
    """As if every counter's window had started `seconds` ago."""
    async with db.session(write=True) as session:
        started = utcnow() - timedelta(seconds=seconds)
        await session.execute(update(LoginAttempt).values(window_started_at=started))


async def test_a_new_window_counts_failures_afresh_and_locks_out_again(
    database_url: str,
) -> None:
    settings = make_settings(database_url, login_max_failures=3, login_lockout_seconds=60)
    async with running_app(settings) as app, client_for(app) as client:
        db: Database = app.state.db
        account = await signup(client)
        for _ in range(3):
            assert_problem(await login(client, account.email, "wrong password"), 401)
        assert_problem(await login(client, account.email, PASSWORD), 429)
        await age_login_counters(db, 61)  # the window has passed
        for _ in range(3):  # the first failure of the new window counts one, not more
            assert_problem(await login(client, account.email, "wrong password"), 401)
        blocked = await login(client, account.email, PASSWORD)
        assert_problem(blocked, 429)
        assert 59 <= int(blocked.headers["retry-after"]) <= 60  # the new window's end


async def test_purge_drops_only_counters_whose_window_has_ended(db: Database) -> None:
    ended = throttle.Attempt("old@example.com", "10.0.0.1")
    current = throttle.Attempt("new@example.com", "10.0.0.1")
    async with db.session(write=True) as session:
        for attempt in (ended, current):
            assert await throttle.reserve(session, attempt, limit=5, window=60) == 0
    async with db.session(write=True) as session:
        await session.execute(
            update(LoginAttempt)
            .where(LoginAttempt.key.in_(ended.keys))
            .values(window_started_at=utcnow() - timedelta(seconds=61))
        )
    async with db.session(write=True) as session:
        await throttle.purge(session, 60)
    async with db.session() as session:
        left = set((await session.scalars(select(LoginAttempt.key))).all())
    assert left == set(current.keys)


async def test_logins_of_one_account_at_once_never_deadlock_on_its_counters(db: Database) -> None:
    # Each login counts itself on two rows, then a correct password clears both, in
    # transactions of their own. Taken in different orders, the rows deadlock on Postgres,
    # and one login fails with a 5xx.
    attempt = throttle.Attempt("busy@example.com", "10.0.0.1")

    async def login_once() -> None:
        async with db.session(write=True) as session:
            await throttle.reserve(session, attempt, limit=1000, window=60)
        async with db.session(write=True) as session:
            await throttle.clear(session, attempt)

    for _ in range(150):
        await asyncio.gather(*(login_once() for _ in range(10)))


async def test_clearing_one_accounts_counters_leaves_every_other_ones(db: Database) -> None:
    mine = throttle.Attempt("mine@example.com", "10.0.0.1")
    others = [
        throttle.Attempt("other@example.com", "10.0.0.1"),
        throttle.Attempt(mine.email, "10.0.0.2"),
    ]
    async with db.session(write=True) as session:
        for attempt in (mine, *others):
            await throttle.reserve(session, attempt, limit=5, window=60)
    async with db.session(write=True) as session:
        await throttle.clear(session, mine)
    async with db.session() as session:
        left = dict((await session.execute(select(LoginAttempt.key, LoginAttempt.failures))).all())
    # My client's counter is gone; the account-wide one takes back my attempt alone, and
    # keeps the other client's failure (a correct login must not reset strangers' count).
    assert left == {
        others[0].keys[0]: 1,
        others[0].keys[1]: 1,
        others[1].keys[0]: 1,
        mine.keys[1]: 1,
    }
