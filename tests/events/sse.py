"""A small Server-Sent Events reader over a real HTTP response, for the stream tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    at: float = 0.0  # monotonic arrival time

    @property
    def json(self) -> dict[str, Any]:
        assert self.data is not None
        body: dict[str, Any] = json.loads(self.data)
        return body


class Reader:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0, *, comments: bool = False) -> Event:
        """The next event (with `comments`, comment-only blocks too)."""
        async with asyncio.timeout(timeout):
            while True:
                block = await self._block()
                if block.event or block.data or (comments and block.comments):
                    return block

    async def _block(self) -> Event:
        block = Event()
        async for line in self._lines:
            if line == "":
                if block.id or block.data or block.comments or block.retry is not None:
                    block.at = time.monotonic()
                    return block
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                block.comments.append(value)
            elif name == "id":
                block.id = value
            elif name == "event":
                block.event = value
            elif name == "data":
                block.data = value if block.data is None else block.data + "\n" + value
            elif name == "retry":
                block.retry = int(value)
        raise EOFError("the stream ended")

    async def ended(self, timeout: float = 10.0) -> bool:
        """Whether the server ends the stream within `timeout` (heartbeats may come first;
        an event may not)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    block = await self._block()
                    if block.data is not None:
                        return False
        except EOFError:
            return True
        except TimeoutError:
            return False


@asynccontextmanager
async def open_stream(
    base_url: str, path: str, token: str, last_event_id: str | None = None
) -> AsyncIterator[Reader]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0)) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Reader(response)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(database_url: str, port: int, **env: Any) -> subprocess.Popen[bytes]:
    """`notes-api serve` in a process of its own, with no embedded worker."""
    values = {
        "DATABASE_URL": database_url,
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKER_EMBEDDED": "false",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_TIME_COST": "1",
    }
    values.update({k.upper(): str(v) for k, v in env.items()})
    with tempfile.NamedTemporaryFile(prefix="api-", suffix=".log", delete=False) as log:
        return subprocess.Popen(
            [sys.executable, "-m", "notes_api.cli", "serve"],
            env={**os.environ, **values},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(base_url: str, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client, asyncio.timeout(timeout):
        while True:
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
