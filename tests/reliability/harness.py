"""What the reliability and security tests share: a uvicorn server in a background thread,
the API and workers as real processes, and a TCP proxy in front of Postgres that can be cut.

Everything listens on 127.0.0.1 and is stopped by the test that started it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from tests.conftest import empty_pg

# The settings the API and worker processes get unless a test says otherwise: cheap hashes,
# short leases and quick polling, as tests/conftest.py's make_settings has them.
PROCESS_ENV = {
    "APP_ENV": "test",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "ARGON2_MEMORY_KIB": "1024",
    "ARGON2_TIME_COST": "1",
    "WORKER_EMBEDDED": "false",
    "WORKER_CONCURRENCY": "8",
    "JOB_LEASE_SECONDS": "2",
    "JOB_POLL_INTERVAL": "0.5",
    "JOB_BACKOFF_BASE": "0.1",
    "JOB_BACKOFF_MAX": "0.5",
    "JOB_SHUTDOWN_GRACE": "5",
    "SUMMARIZER": "extractive",
    "SIGNUP_OPEN": "true",
    # Load from one account, far past a person's pace: the write limits have tests of their own.
    "RATE_LIMIT_USER_WRITES_PER_MINUTE": "0",
    "RATE_LIMIT_ORG_WRITES_PER_MINUTE": "0",
    "SIGNUP_PER_CLIENT_PER_HOUR": "0",
}
_STRIPPED = ("DATABASE_URL", "JWT_", "BOOTSTRAP_", "OPENAI_", "CORS_", "DB_POOL", "PORT", "HOST")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def truncate(pg_url: str) -> None:
    empty_pg(pg_url)


def via_port(pg_url: str, port: int) -> str:
    """The same database, reached through another local port (the proxy's)."""
    return make_url(pg_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.1
) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(interval)


# ------------------------------------------------------------------ in-process server


class ThreadedServer:
    """A real uvicorn server, with its own event loop in a background thread, running the
    app's lifespan there. `http` picks the parser: the CLI serves with httptools."""

    def __init__(self, app: FastAPI, *, http: str = "httptools", **config: Any) -> None:
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            http=http,
            loop="asyncio",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            **config,
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.base_url = ""

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


# ------------------------------------------------------------------ real processes


class Proc:
    """One `python -m notes_api.cli ...` process; its log goes to a file (an unread pipe
    would fill up and block it)."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.args = args
        self.env = env
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED)}
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "notes_api.cli", *self.args],
                env={**environ, **PROCESS_ENV, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ApiProcess(Proc):
    """`notes-api serve` on a free port (migrations first, as in production)."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(["serve"], {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}, "api")
        self.base_url = f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, timeout: float = 30) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            deadline = time.monotonic() + timeout
            while True:
                if not self.alive():
                    raise RuntimeError(f"the API process exited:\n{self.log()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the API did not come up:\n{self.log()[-3000:]}")
                await asyncio.sleep(0.1)


def worker_process(env: dict[str, str]) -> Proc:
    return Proc(["worker"], env, "worker")


# ------------------------------------------------------------------ a proxy that can be cut


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target. `cut()` closes every open connection and stops
    listening, so new connections are refused at once, as when a database server goes away;
    `freeze()` keeps every connection open but passes no more bytes either way, as in a
    network partition; `restore()` undoes either. It runs its own loop in a thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self.connections = 0
        self.frozen = False

    def __enter__(self) -> TcpProxy:
        self.thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

        async def cancel_handlers() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(cancel_handlers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def restore(self) -> None:
        self.frozen = False

        async def listen() -> None:
            if self._server is None:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True
                )

        self._run(listen())

    def freeze(self) -> None:
        self.frozen = True

    async def _thaw(self) -> None:
        while self.frozen:
            await asyncio.sleep(0.05)

    def cut(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for transport in list(self._transports):
                transport.abort()  # a reset, not a polite FIN: like a vanished host
            self._transports.clear()

        self._run(close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._transports.add(writer.transport)
        await self._thaw()  # frozen: accepted, and never answered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        if self._server is None:  # cut while this connection was being set up
            for transport in pair:
                transport.abort()
            return
        self._transports.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    await self._thaw()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._transports.difference_update(pair)


class Processes:
    """Every process a test starts; whatever still runs at the end is killed."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, proc: Proc) -> Proc:
        self.started.append(proc.start())
        return proc

    def api(self, env: dict[str, str], port: int | None = None) -> ApiProcess:
        api = ApiProcess(env, port)
        self.start(api)
        return api

    def worker(self, env: dict[str, str]) -> Proc:
        return self.start(worker_process(env))

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.alive():
                with contextlib.suppress(Exception):
                    proc.stop(signal.SIGKILL, timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} {p.pid}\n{p.log()[-4000:]}" for p in self.started)
