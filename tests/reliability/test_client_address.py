"""The client's address behind a proxy, and what is counted per address (issue 26, rows 4 and
5), against `notes-api serve` as production runs it, on SQLite and on Postgres.

A proxy appends the address it saw to X-Forwarded-For; everything left of that is whatever
the client wrote. So the address is the rightmost entry that is not a trusted proxy, and
with FORWARDED_ALLOW_IPS=* (a platform's edge proxy as the only way in) the rightmost entry:
a client that writes `X-Forwarded-For: 203.0.113.N` in front of what the proxy appends gets
no fresh allowance of guesses per made-up address. Sign-ups are limited per address."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import pytest

from notes_api.server import ForwardedFor
from tests.conftest import PASSWORD
from tests.reliability.harness import ApiProcess, Processes

pytestmark = pytest.mark.timeout(180)

PROXY = "198.51.100.7"  # the address the (simulated) edge proxy appends: the client's


async def started(procs: Processes, database_url: str, **env: str) -> ApiProcess:
    api = procs.api({"DATABASE_URL": database_url, **env})
    await api.wait_healthy()
    return api


@pytest.mark.parametrize("trusted", ["*", "127.0.0.1"])
async def test_addresses_a_client_writes_itself_earn_no_more_guesses(
    procs: Processes, database_url: str, trusted: str
) -> None:
    api = await started(procs, database_url, FORWARDED_ALLOW_IPS=trusted)
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
        email = f"owner-{uuid.uuid4().hex[:8]}@example.com"
        created = await http.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        codes = Counter()
        for i in range(20):
            answer = await http.post(
                "/auth/login",
                json={"email": email, "password": f"wrong-{i}"},
                headers={"X-Forwarded-For": f"203.0.113.{i}, {PROXY}"},
            )
            codes[answer.status_code] += 1
        # Was 20 x 401 with `*`: every made-up leftmost address a client of its own.
        assert codes == {401: 5, 429: 15}, codes
        # Another real address (what the proxy appends for someone else) is not held back.
        other = await http.post(
            "/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Forwarded-For": f"{PROXY}, 192.0.2.1"},
        )
        assert other.status_code == 200, other.text


async def test_sign_ups_are_limited_per_client_address(procs: Processes, database_url: str) -> None:
    api = await started(
        procs, database_url, FORWARDED_ALLOW_IPS="*", SIGNUP_PER_CLIENT_PER_HOUR="3"
    )
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:

        async def sign_up(address: str) -> httpx.Response:
            email = f"new-{uuid.uuid4().hex[:10]}@example.com"
            return await http.post(
                "/auth/signup",
                json={"email": email, "password": PASSWORD},
                headers={"X-Forwarded-For": f"203.0.113.{uuid.uuid4().int % 250}, {address}"},
            )

        answers = [await sign_up(PROXY) for _ in range(6)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429, 429]
        refused = answers[-1]
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        # The refusals counted nothing, and another address has its own allowance.
        assert (await sign_up("192.0.2.80")).status_code == 201


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ("*", "10.0.0.1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),
        ("127.0.0.1,10.0.0.0/8", "10.0.0.1", "203.0.113.9, 198.51.100.7, 10.1.1.1", PROXY),
        ("127.0.0.1", "127.0.0.1", "10.0.0.2", "10.0.0.2"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"),  # a chain of trusted proxies
        ("127.0.0.1", "127.0.0.1", "not-an-address", "not-an-address"),
    ],
)
def test_the_client_is_the_rightmost_entry_that_is_not_a_trusted_proxy(
    trusted: str, peer: str, forwarded: str, client: str
) -> None:
    assert ForwardedFor(None, trusted).client(peer, forwarded) == client


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS"):
        ForwardedFor(None, "127.0.0.1,proxy.internal")
