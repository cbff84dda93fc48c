"""A stranger cannot turn the login throttle against an account's owner (issue 26, row 1).

Only checked guesses count: an attempt refused with 429 counts nothing. A client is limited
per address and the account as a whole ten times higher, but a client holding a device
cookie (set by an earlier login to that account) is counted on its own and is never locked
out by what other clients did. Real uvicorn on SQLite and Postgres, parallel clients; the
server trusts the local proxy, so X-Forwarded-For names each client."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from notes_api.auth import devices, throttle
from notes_api.auth.models import LoginAttempt
from notes_api.core.db import Database
from notes_api.core.models import utcnow
from tests.conftest import Account, serve, signup

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def base_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


def new_client(base_url: str) -> httpx.AsyncClient:
    """A client of its own: its own cookie jar, as a separate browser or script would be."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=100)
    )


async def guess(http: httpx.AsyncClient, email: str, password: str, address: str) -> httpx.Response:
    return await http.post(
        "/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
    )


async def owner(base_url: str) -> Account:
    async with new_client(base_url) as http:
        return await signup(http)


async def test_refused_attempts_do_not_count_toward_the_account_wide_limit(
    base_url: str,
) -> None:
    """The issue's reproduction: 51 wrong passwords from one address used to spend the
    account-wide ceiling of 50 (46 of them refused), locking the owner out everywhere."""
    who = await owner(base_url)
    async with new_client(base_url) as stranger:
        answers = [
            await guess(stranger, who.email, f"wrong-{i}", "203.0.113.66") for i in range(51)
        ]
    assert Counter(a.status_code for a in answers) == {401: 5, 429: 46}
    async with new_client(base_url) as elsewhere:  # no device cookie, another address
        answer = await guess(elsewhere, who.email, who.password, "198.51.100.20")
    assert answer.status_code == 200, answer.text


async def test_a_device_cookie_lets_the_owner_in_when_strangers_hit_the_account_ceiling(
    base_url: str,
) -> None:
    who = await owner(base_url)
    async with new_client(base_url) as laptop:
        first = await guess(laptop, who.email, who.password, "198.51.100.20")
        assert first.status_code == 200, first.text
        cookie = laptop.cookies.get(devices.COOKIE)
        assert cookie, first.headers
        set_cookie = first.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert "path=/auth" in set_cookie

        # Ten strangers' addresses, five checked guesses each: the account-wide ceiling.
        async with new_client(base_url) as botnet:
            for n in range(10):
                burst = await asyncio.gather(
                    *(guess(botnet, who.email, "nope", f"10.9.0.{n}") for _ in range(7))
                )
                assert Counter(a.status_code for a in burst) == {401: 5, 429: 2}
            locked = await guess(botnet, who.email, who.password, "10.9.0.99")
            assert locked.status_code == 429  # a client without the cookie is held back

        # The owner's laptop, now on another network, is not.
        again = await guess(laptop, who.email, who.password, "192.0.2.44")
        assert again.status_code == 200, again.text


async def test_a_device_cookie_has_a_small_limit_of_its_own(base_url: str) -> None:
    who = await owner(base_url)
    async with new_client(base_url) as stolen:
        assert (await guess(stolen, who.email, who.password, "198.51.100.1")).status_code == 200
        burst = await asyncio.gather(
            *(guess(stolen, who.email, f"wrong-{i}", "198.51.100.1") for i in range(9))
        )
        assert Counter(a.status_code for a in burst) == {401: 5, 429: 4}
        blocked = await guess(stolen, who.email, who.password, "198.51.100.2")
        assert blocked.status_code == 429  # the cookie is locked, whatever the address
        assert int(blocked.headers["retry-after"]) > 0
    # The cookie's guesses were its own: a client without it is not held back by them.
    async with new_client(base_url) as other:
        assert (await guess(other, who.email, who.password, "198.51.100.1")).status_code == 200


async def test_a_forged_or_another_accounts_device_cookie_counts_as_none(base_url: str) -> None:
    who, other = await owner(base_url), await owner(base_url)
    async with new_client(base_url) as http:
        assert (await guess(http, other.email, other.password, "198.51.100.9")).status_code == 200
        others_cookie = http.cookies[devices.COOKIE]
    issued = others_cookie.rsplit(".", 1)[0]
    for cookie in (others_cookie, issued + ".forged", "x" * 5000, "a.b.c"):
        async with new_client(base_url) as http:
            http.cookies.set(devices.COOKIE, cookie, path="/auth")
            answers = [await guess(http, who.email, "nope", "203.0.113.5") for _ in range(6)]
            # Held to the per-client limit like any client without a cookie: not exempt.
            assert [a.status_code for a in answers].count(401) <= 5
            assert answers[-1].status_code == 429


def test_device_cookies_are_bound_to_their_email_and_expire() -> None:
    secret = "s" * 32
    cookie = devices.issue(secret, "Ada@Example.com")
    assert devices.verify(secret, "ada@example.com", cookie)
    assert devices.verify(secret, "bob@example.com", cookie) is None
    assert devices.verify("t" * 32, "ada@example.com", cookie) is None
    old = devices.issue(secret, "ada@example.com", now=0)
    assert devices.verify(secret, "ada@example.com", old) is None


async def test_purge_keeps_sign_up_counters_for_their_hour(db: Database) -> None:
    """Sign-ups are counted per hour beside login attempts (5-minute windows): the worker's
    house-keeping must not end a sign-up window early, which would reset the limit."""
    async with db.session() as session:
        await throttle.admit_signup(db, "203.0.113.1", 5)
        await throttle.reserve(
            session, throttle.Attempt("a@example.com", "203.0.113.1"), limit=5, window=60
        )
    for age, left in ((61, {"signup:203.0.113.1"}), (3601, set())):
        async with db.session() as session:
            started = utcnow() - timedelta(seconds=age)
            await session.execute(update(LoginAttempt).values(window_started_at=started))
        async with db.session() as session:
            await throttle.purge(session, 60)
        async with db.session() as session:
            assert set((await session.scalars(select(LoginAttempt.key))).all()) == left
