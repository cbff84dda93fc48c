"""Argon2id hashing off the event loop, with a bound on hashes in flight.

Each hash holds `memory_cost` KiB; on a 512 MB instance twenty concurrent logins at 19 MiB
would be 380 MB, so only `hash_concurrency` run at once and the rest wait their turn. They
run on threads of their own: the allocator keeps a freed hash buffer in the arena of the
thread that used it, so hashes spread over a shared pool's dozens of threads would each
leave 19 MiB behind; and see `_hand_hash_memory_back`.

A hash is either finished or refused before it starts: the wait for a turn does not count
against the request's deadline (it is bounded here instead), and a request that would wait
longer than `request_timeout` for its turn is refused at once with 503 and `Retry-After`,
rather than queued, hashed, and cut off by the deadline after its hash was paid for."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from notes_api.core.config import Settings
from notes_api.core.deadline import excused
from notes_api.core.errors import ServiceUnavailable

T = TypeVar("T")
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


@functools.cache
def _hand_hash_memory_back() -> None:
    """glibc maps a block as large as a hash's memory afresh and unmaps it when freed, but
    only until the first such free: then it raises its threshold and keeps later blocks in
    the arenas, where the API held 19 MiB for each hashing thread from then on. A fixed
    threshold keeps them mapped: measured under 64 concurrent logins for 10 s, RSS 119 MB
    instead of 158 MB, for a third fewer logins per second (41/s instead of 60/s: each hash
    now faults its pages in again). Memory is what the smallest hosts lack."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):  # glibc; musl and macOS differ
        libc.mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    memory_cost=settings.argon2_memory_kib,
                    time_cost=settings.argon2_time_cost,
                    parallelism=1,
                ),
            )
        )
        _hand_hash_memory_back()
        self._threads = ThreadPoolExecutor(settings.hash_concurrency, thread_name_prefix="argon2")
        self._turns = asyncio.Semaphore(settings.hash_concurrency)
        self._concurrency = settings.hash_concurrency
        self._max_wait = settings.request_timeout
        self._waiting = 0
        self._seconds = 0.05  # a hash's duration, a moving average of the last ones
        self._dummy: str | None = None

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        expected = (self._waiting + 1) * self._seconds / self._concurrency
        if self._turns.locked() and expected > self._max_wait:
            raise ServiceUnavailable(
                "Too many sign-ins at once; try again shortly", retry_after=math.ceil(expected)
            )
        self._waiting += 1
        try:
            with excused():  # bounded above, not by the request's deadline
                await self._turns.acquire()
        finally:
            self._waiting -= 1
        try:
            started = time.monotonic()
            result = await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)
            return result
        finally:
            self._turns.release()

    async def hash(self, password: str) -> str:
        return await self._run(self._hash.hash, password)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Verify against `hashed`, or against a dummy hash when there is no such user, so an
        unknown e-mail costs exactly as much time as a wrong password."""
        if hashed is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password for unknown users")
            await self._run(self._safe_verify, password, self._dummy)
            return False
        return await self._run(self._safe_verify, password, hashed)

    def close(self) -> None:
        self._threads.shutdown(wait=False)

    def _safe_verify(self, password: str, hashed: str) -> bool:
        try:
            return self._hash.verify(password, hashed)
        except Exception:
            return False
