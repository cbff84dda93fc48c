"""Argon2id hashing off the event loop, with a bound on hashes in flight.

Each hash holds `memory_cost` KiB; on a 512 MB instance twenty concurrent logins at 19 MiB
would be 380 MB, so only `hash_concurrency` run at once and the rest wait their turn."""

from __future__ import annotations

import anyio
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from notes_api.core.config import Settings


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
        self._limiter = anyio.CapacityLimiter(settings.hash_concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hash.hash, password, limiter=self._limiter)

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Verify against `hashed`, or against a dummy hash when there is no such user, so an
        unknown e-mail costs exactly as much time as a wrong password."""
        if hashed is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password for unknown users")
            await anyio.to_thread.run_sync(
                self._safe_verify, password, self._dummy, limiter=self._limiter
            )
            return False
        return await anyio.to_thread.run_sync(
            self._safe_verify, password, hashed, limiter=self._limiter
        )

    def _safe_verify(self, password: str, hashed: str) -> bool:
        try:
            return self._hash.verify(password, hashed)
        except Exception:
            return False
