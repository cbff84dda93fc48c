"""The write limit holds across API processes: two `notes-api serve` processes on one
Postgres, concurrent requests at both, and the accepted ones never exceed the limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD, empty_pg
from tests.reliability.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 10


def _serve(pg_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "RATE_LIMIT"))}
    env.update(
        DATABASE_URL=pg_url,
        APP_ENV="test",
        HOST="127.0.0.1",
        PORT=str(port),
        WORKER_EMBEDDED="false",
        LOG_LEVEL="WARNING",
        ARGON2_MEMORY_KIB="1024",
        ARGON2_TIME_COST="1",
        RATE_LIMIT_USER_WRITES_PER_MINUTE=str(LIMIT),
        RATE_LIMIT_ORG_WRITES_PER_MINUTE="0",
    )
    script = Path(sys.executable).with_name("notes-api")
    return subprocess.Popen(
        [str(script), "serve", "--no-migrate"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def two_servers(pg_url: str) -> Iterator[list[str]]:
    empty_pg(pg_url)
    ports = [free_port(), free_port()]
    procs = [_serve(pg_url, port) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for base, proc in zip(bases, procs, strict=True):
            while True:
                assert proc.poll() is None, "a server exited at start-up"
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "a server did not start"
                time.sleep(0.1)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


async def test_concurrent_writes_at_two_processes_never_pass_the_limit(
    two_servers: list[str],
) -> None:
    # The limit's window is a wall-clock minute: start well inside one.
    if (second := time.time() % 60) > 45:
        await asyncio.sleep(61 - second)
    async with httpx.AsyncClient(timeout=30) as client:
        signed = await client.post(
            two_servers[0] + "/auth/signup",
            json={"email": "burst@example.com", "password": PASSWORD},
        )
        headers = {"Authorization": "Bearer " + signed.json()["access_token"]}

        async def post(i: int) -> httpx.Response:
            return await client.post(
                two_servers[i % 2] + "/notes", headers=headers, json={"raw_text": f"Note {i}."}
            )

        responses = await asyncio.gather(*(post(i) for i in range(4 * LIMIT)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {202: LIMIT, 429: 3 * LIMIT}
    # Both processes accepted some and refused some: the count is shared, not per process.
    for base in two_servers:
        mine = Counter(r.status_code for r in responses if str(r.url).startswith(base))
        assert mine[429] > 0
    assert all("Retry-After" in r.headers for r in responses if r.status_code == 429)
