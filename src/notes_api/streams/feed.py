"""One feed per process: it knows which streams are open, and wakes the ones a new event
concerns. Streams hold no database connection while they wait; the feed reads the new
events' ids and scopes in one short query when a signal says there are some (after a commit
in this process, or a NOTIFY from another), and on a slow poll in case a signal was lost.

Ids are handed out when a row is inserted, not when it commits: on Postgres, event 11 can
commit while event 10's transaction is still open. A reader that moved past 11 would never
see 10. So the feed keeps a horizon: the highest id below which every event has committed
(or never will). It moves over consecutive ids only; a gap is waited for (its transaction is
still running) for at most `gap_timeout` seconds, then taken for a rollback. Streams read
only up to the horizon. On SQLite writers take turns, so there are no such gaps."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from datetime import timedelta

import structlog

from notes_api.core.db import Database
from notes_api.core.errors import TooManyRequests
from notes_api.core.identity import Caller
from notes_api.core.models import utcnow
from notes_api.events import repository as events
from notes_api.events import signals
from notes_api.notes import repository

log = structlog.get_logger("notes_api.events")

_BATCH = 1000
_UNKNOWN = -1


class Subscription:
    """One open stream: what it watches, and the event that wakes it."""

    def __init__(self, caller: Caller, note_id: uuid.UUID | None) -> None:
        self.caller = caller
        self.note_id = note_id
        self.wake = asyncio.Event()
        # Counted against this organization until it ends (a caller moved to another one
        # ends its streams at their next wake).
        self.organization_id = caller.organization_id

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        """What wakes it: its note's events, or (a stream of every note the caller may see)
        the events the notes' tenancy rule lets the caller see."""
        if self.note_id is not None:
            return ("note", self.note_id)
        return repository.tenant_key(self.caller)


class Feed:
    def __init__(
        self,
        db: Database,
        *,
        per_user: int,
        per_process: int,
        per_organization: int | None = None,
        poll_interval: float = 5.0,
        gap_timeout: float = 5.0,
    ) -> None:
        self.db = db
        self.per_user = per_user
        self.per_process = per_process
        # One organization (the default one, where anyone can sign up, above all) may hold
        # only part of the process's streams (by default a fifth): the rest stays for the
        # others.
        self.per_organization = min(per_organization or max(1, per_process // 5), per_process)
        self.poll_interval = poll_interval
        self.gap_timeout = gap_timeout
        self.closed = False
        self._horizon: int | None = None
        self._gaps: dict[int, float] = {}  # first missing id -> when it was first seen missing
        self._subs: defaultdict[tuple[str, uuid.UUID], set[Subscription]] = defaultdict(set)
        self._count = 0
        self._per_user: Counter[uuid.UUID] = Counter()
        self._per_organization: Counter[uuid.UUID] = Counter()
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        signals.add_listener(self.poke)
        self._task = asyncio.create_task(self._run(), name="event-feed")

    def close(self) -> None:
        """Shutdown has begun: end every stream now (each sees `closed` when woken)."""
        self.closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.wake.set()

    async def stop(self) -> None:
        self.close()
        signals.remove_listener(self.poke)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Something may have been recorded: look soon (many pokes, one look)."""
        self._dirty.set()

    # -- streams --------------------------------------------------------------------------

    def subscribe(self, caller: Caller, note_id: uuid.UUID | None) -> Subscription:
        """A place for one more stream of the caller's, within three limits: the user's, its
        organization's (a share of the process's, so no one organization fills it), and
        the process's."""
        if self._per_user[caller.id] >= self.per_user:
            raise TooManyRequests(
                f"At most {self.per_user} open event streams per user", retry_after=5
            )
        if self._per_organization[caller.organization_id] >= self.per_organization:
            raise TooManyRequests(
                f"At most {self.per_organization} open event streams per organization on "
                "this server",
                retry_after=5,
            )
        if self._count >= self.per_process:
            raise TooManyRequests("Too many open event streams on this server", retry_after=5)
        sub = Subscription(caller, note_id)
        self._subs[sub.key].add(sub)
        self._count += 1
        self._per_user[caller.id] += 1
        self._per_organization[sub.organization_id] += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.key]
        self._count -= 1
        for counts, key in (
            (self._per_user, sub.caller.id),
            (self._per_organization, sub.organization_id),
        ):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]

    def recaller(self, sub: Subscription, caller: Caller) -> None:
        """The caller's role changed: file the stream under its new scope."""
        if caller == sub.caller:
            return
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]
        sub.caller = caller
        self._subs[sub.key].add(sub)

    @property
    def open_streams(self) -> int:
        return self._count

    async def horizon(self) -> int:
        """Every event up to this id has committed (or never will)."""
        if self._horizon is None:
            await self._advance()
        assert self._horizon is not None
        return self._horizon

    # -- the horizon ----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self.closed:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the wait ends, and the task would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1 if self._gaps else self.poll_interval):
                    await self._dirty.wait()
            self._dirty.clear()
            if not self._count:
                self._horizon = None  # nobody listens: start afresh when someone does
                self._gaps.clear()
                continue
            try:
                await self._advance()
            except Exception:
                log.warning("feed.advance_failed", exc_info=True)
                await asyncio.sleep(min(self.poll_interval, 1.0))

    async def _advance(self) -> None:
        async with self._lock:
            async with self.db.session(write=False) as conn:
                if self._horizon is None:
                    # Where to start: the last event old enough that its transaction has
                    # surely ended; when every event is recent, just before the first; with
                    # no events at all, just before the first one to come.
                    before = utcnow() - timedelta(seconds=self.gap_timeout)
                    settled = await events.settled_before(conn, before)
                    if settled is None:
                        first = await events.first(conn)
                        settled = _UNKNOWN if first is None else first - 1
                    self._horizon = int(settled)
                rows = await events.after(conn, self._horizon, _BATCH)
            now = time.monotonic()
            woken: set[Subscription] = set()
            for row in rows:
                if self._horizon == _UNKNOWN:
                    self._horizon = int(row.id) - 1
                expected = self._horizon + 1
                if row.id > expected:
                    first_seen = self._gaps.setdefault(expected, now)
                    if now - first_seen < self.gap_timeout:
                        break  # its transaction may still commit: wait for it
                    self._gaps.pop(expected, None)
                self._horizon = int(row.id)
                for key in (("note", row.note_id), *repository.tenant_keys_of(row)):
                    woken.update(self._subs.get(key, ()))
            else:
                if len(rows) == _BATCH:
                    self._dirty.set()  # more to read
            self._gaps = {k: v for k, v in self._gaps.items() if k > self._horizon}
        for sub in woken:
            sub.wake.set()
