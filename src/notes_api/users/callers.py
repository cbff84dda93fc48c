"""Who is calling, confirmed: `confirm_caller` checks a token's user, organization, role and
session against the database, and `CallerRecord` remembers the confirmed callers in this
process, so that a request's caller check needs no round trip; the push that makes
forgetting them prompt is here too.

A confirmation (this user is an active member of this organization with this role, and its
session is live) is remembered for at most `max_age` seconds. Whatever can change one (a
user's role, activity or organization; a session signed out, revoked or expired) forgets it:
on every process through a trigger's NOTIFY on Postgres (migration 20261207_0001, heard by
the LISTEN connection the process already has), and in this process through `changed`, after
the commit that made the change. While the LISTEN connection is down nothing is remembered,
since a change could then go unheard."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from notes_api.core.errors import Unauthorized
from notes_api.core.identity import Caller
from notes_api.core.statements import Once
from notes_api.users.models import ACTIVE_MEMBER, RefreshToken, member_params, users
from notes_api.users.tokens import AccessClaims

CHANNEL = "notes_api_callers"
_SESSION_KEY = "callers.changed"
_LIMIT = 50_000  # entries; past it the record starts again empty

Key = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # user, organization, session


class CallerRecord:
    def __init__(self, max_age: float, *, live: bool) -> None:
        self.max_age = max_age
        # Postgres: live only while the LISTEN connection is up; SQLite: one process, always.
        self.live = live and max_age > 0
        self._entries: dict[Key, tuple[Caller, float]] = {}
        self._by_user: dict[uuid.UUID, list[Key]] = {}
        # Bumped by every forgetting: a confirmation read before a change and remembered
        # after it was announced would otherwise outlive the change.
        self.epoch = 0

    def caller(self, key: Key) -> Caller | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        caller, expires = entry
        if time.monotonic() >= expires:
            return None
        return caller

    def remember(self, key: Key, caller: Caller, epoch: int) -> None:
        """Remember a confirmation read while the record stood at `epoch`."""
        if not self.live or epoch != self.epoch:
            return
        if len(self._entries) >= _LIMIT:
            self.forget_all()
        self._entries[key] = (caller, time.monotonic() + self.max_age)
        self._by_user.setdefault(key[0], []).append(key)

    def forget(self, user_id: uuid.UUID) -> None:
        self.epoch += 1
        for key in self._by_user.pop(user_id, ()):
            self._entries.pop(key, None)

    def forget_all(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._by_user.clear()

    # The listener's hooks (Postgres).
    def on_notify(self, payload: str) -> None:
        if payload == "*":  # (re)connected: anything may have been missed
            self.forget_all()
            self.live = self.max_age > 0
            return
        try:
            self.forget(uuid.UUID(payload))
        except ValueError:
            self.forget_all()

    def on_lost(self) -> None:
        self.live = False
        self.forget_all()


# ------------------------------------------------------------------------ the confirmation

refresh_tokens = cast(Table, RefreshToken.__table__)

# Built once: the caller check, a primary-key lookup of one column and an index probe of the
# session's refresh tokens (a signed-out, revoked or reused session has none unrevoked).
_LIVE_SESSION = exists().where(
    refresh_tokens.c.family_id == bindparam("session_id", type_=refresh_tokens.c.family_id.type),
    refresh_tokens.c.user_id == users.c.id,
    refresh_tokens.c.revoked_at.is_(None),
)
_ACTIVE_ROLE = Once(select(users.c.role).where(ACTIVE_MEMBER, _LIVE_SESSION))


async def confirm_caller(
    session: AsyncSession, claims: AccessClaims, record: CallerRecord | None = None
) -> Caller:
    """The token's user while it is an active member of the token's organization and the
    token's session is live, with the role it holds now; 401 otherwise. Every request's
    caller (`users.deps.caller_work`, which passes the process's `record`) and every event
    stream's, at each wake, is confirmed here."""
    key = (claims.user_id, claims.organization_id, claims.session_id)
    epoch = 0
    if record is not None:
        remembered = record.caller(key)
        if remembered is not None:
            return remembered
        epoch = record.epoch
    params = member_params(claims.user_id, claims.organization_id)
    params["session_id"] = claims.session_id
    role = await _ACTIVE_ROLE.scalar(session, params)
    if role is None:
        raise Unauthorized("Invalid or expired access token")
    caller = Caller(claims.user_id, claims.organization_id, role)
    if record is not None:
        record.remember(key, caller, epoch)
    return caller


# ------------------------------------------------------------------- in-process announcement

Listener = Callable[[uuid.UUID], None]
_listeners: set[Listener] = set()


def add_listener(listener: Listener) -> None:
    _listeners.add(listener)


def remove_listener(listener: Listener) -> None:
    _listeners.discard(listener)


def changed(session: Any, user_id: uuid.UUID) -> None:
    """`user_id`'s confirmations are to be forgotten once this unit of work commits."""
    session.info.setdefault(_SESSION_KEY, set()).add(user_id)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for user_id in session.info.pop(_SESSION_KEY, ()):
        for listener in list(_listeners):
            listener(user_id)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)
