"""What a request's deadline does not count: time spent waiting for its body and for its
turn at the database, each bounded on its own (the body's read timeout, DB_POOL_TIMEOUT).
The deadline is for work that has begun: a query the database never answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Budget:
    def __init__(self) -> None:
        self._excused = 0.0
        self._since: float | None = None
        self._depth = 0

    @contextmanager
    def excused(self) -> Iterator[None]:
        if self._depth == 0:
            self._since = time.monotonic()
        self._depth += 1
        try:
            yield
        finally:
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


@contextmanager
def excused() -> Iterator[None]:
    budget = current_budget.get()
    if budget is None:
        yield
        return
    with budget.excused():
        yield
