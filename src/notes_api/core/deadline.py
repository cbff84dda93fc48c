"""Every request's deadline (`RequestDeadline`), and what it does not count: time
spent waiting for its body and for its turn at the database, each bounded on its own (the
body's read timeout, DB_POOL_TIMEOUT). The deadline is for work that has begun: a query the
database never answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from urllib.parse import parse_qs

import structlog
from starlette.types import Message, Scope, Send

from notes_api.core.errors import send_problem

log = structlog.get_logger("notes_api.http")


class Budget:
    """The time a request is excused. `with budget:` excuses what runs inside it (nested
    blocks count once); a class, not a generator, as it is entered at every turn at the
    database and every read of the body."""

    def __init__(self) -> None:
        self._excused = 0.0
        self._since: float | None = None
        self._depth = 0

    def __enter__(self) -> None:
        if self._depth == 0:
            self._since = time.monotonic()
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._since is not None:
            self._excused += time.monotonic() - self._since
            self._since = None

    def take_excused(self) -> float:
        """Seconds excused since the last call, including a wait still going on."""
        now = time.monotonic()
        taken = self._excused
        if self._since is not None:
            taken += now - self._since
            self._since = now
        self._excused = 0.0
        return taken


# The budget of the request being served (each request's task has its own context).
current_budget: ContextVar[Budget | None] = ContextVar("current_budget", default=None)


def excused() -> AbstractContextManager[None]:
    """Excuses what runs inside it from the request's deadline (outside a request: nothing)."""
    return current_budget.get() or nullcontext()


class RequestDeadline:
    """One request's deadline: `seconds` to begin its answer (a long poll, its `wait` on
    top), time spent receiving its body or waiting its turn at the database aside (see the
    module's doc). Past it the client gets a 503 problem at once, sent beside the handler,
    which is cancelled: a database that stops answering must not hold requests, and a
    driver's clean-up after a cancelled query (it tries to cancel the query on the server
    first) can take seconds of its own. The handler runs in the request's own task, watched
    by a timer, so a request costs no task and no wait of its own (core/middleware.py
    runs it)."""

    def __init__(self, seconds: float, scope: Scope, send: Send) -> None:
        self.seconds = seconds
        self.scope = scope
        self.budget = Budget()
        self._send = send
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._answered = self._abandoned = False
        self._answer: asyncio.Task[None] | None = None
        self._deadline = self._loop.time() + seconds + _wait_seconds(scope)
        self._timer: asyncio.TimerHandle | None = None

    async def send(self, message: Message) -> None:
        """The app's `send`: nothing more once the deadline has answered."""
        if self._abandoned:
            return
        self._answered = self._answered or message["type"] == "http.response.start"
        await self._send(message)

    def _check(self) -> None:
        if self._answered:  # a stream: the deadline was for its start
            return
        self._deadline += self.budget.take_excused()
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self._abandoned = True
        self._task.cancel()
        log.warning("http.deadline", path=self.scope["path"], seconds=self.seconds)
        self._answer = self._loop.create_task(_unavailable(self._send))

    async def run(self, handler: Awaitable[None]) -> None:
        """Await `handler` (the app, called with `send` above) within the deadline."""
        self._timer = self._loop.call_at(self._deadline, self._check)
        token = current_budget.set(self.budget)
        try:
            await handler
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            self._task.uncancel()  # the cancel was the deadline's, not the server's
        except Exception as exc:
            if not self._abandoned:
                raise
            log.warning("http.abandoned_failed", error=type(exc).__name__)
        finally:
            self._timer.cancel()  # the one running now, which _check may have replaced
            current_budget.reset(token)
        if self._answer is not None:
            await self._answer


async def _unavailable(send: Send) -> None:
    await send_problem(
        send,
        503,
        "Service unavailable",
        "The request took too long; try again shortly",
        headers=[(b"retry-after", b"2")],
    )


def _wait_seconds(scope: Scope) -> float:
    """The `wait` a long poll asks for (at most 30 s; the route validates it)."""
    if b"wait=" not in scope["query_string"]:
        return 0.0
    values = parse_qs(scope["query_string"].decode("latin-1")).get("wait", [])
    try:
        return min(30.0, max(0.0, float(values[0]))) if values else 0.0
    except ValueError:
        return 0.0
