"""Password hashes take turns: a request that would wait longer than its deadline for a
turn is refused at once with 503 and Retry-After, before any hash is paid for; one that is
let in waits for its turn outside its deadline and finishes."""

from __future__ import annotations

import asyncio
import time

import pytest

from notes_api.core.errors import ServiceUnavailable
from notes_api.users.passwords import Passwords
from tests.conftest import make_settings


async def test_a_request_that_would_wait_too_long_is_refused_before_hashing() -> None:
    passwords = Passwords(make_settings("sqlite://", hash_concurrency=1, request_timeout=0.35))
    passwords._seconds = 0.1  # as if each hash had taken 0.1 s
    hashed: list[float] = []
    retry_after: list[int] = []

    def slow_hash(_password: str) -> str:
        hashed.append(time.monotonic())
        time.sleep(0.1)
        return "hash"

    async def attempt() -> tuple[str, float]:
        started = time.monotonic()
        try:
            await passwords._run(slow_hash, "secret")
        except ServiceUnavailable as exc:
            retry_after.append(int(exc.headers["Retry-After"]))
            return "refused", time.monotonic() - started
        return "hashed", time.monotonic() - started

    try:
        outcomes = await asyncio.gather(*(attempt() for _ in range(10)))
    finally:
        passwords.close()
    done = [seconds for what, seconds in outcomes if what == "hashed"]
    refused = [seconds for what, seconds in outcomes if what == "refused"]
    # One hashing, three waiting (0.1, 0.2, 0.3 s expected): the rest would wait past 0.35 s.
    assert len(done) == 4 and len(hashed) == 4
    assert len(refused) == 6
    assert max(refused) < 0.05  # refused at once, not after a wait or a hash
    assert min(retry_after) >= 1


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_hashes_in_flight_never_exceed_the_concurrency(concurrency: int) -> None:
    passwords = Passwords(make_settings("sqlite://", hash_concurrency=concurrency))
    running = peak = 0

    def hash_(_password: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        time.sleep(0.02)
        running -= 1
        return "hash"

    try:
        await asyncio.gather(*(passwords._run(hash_, "secret") for _ in range(8)))
    finally:
        passwords.close()
    assert peak == concurrency
