from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.core.db import Database

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies are `async def` even when they never await: FastAPI runs a plain `def`
# dependency in a worker thread, a hand-off that costs more than the function itself.
async def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def unit_of_work(request: Request) -> AbstractAsyncContextManager[AsyncSession]:
    """The request's unit of work (`Database.session`): a writer for every method but GET."""
    db: Database = request.app.state.db
    return db.session(write=request.method not in _READ_ONLY)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The unit of work of a route with no caller (signing in and up); a signed-in route's
    comes with its caller (`users.deps.CallerWork`)."""
    async with unit_of_work(request) as session:
        yield session


# scope="function": the commit happens before the response, so a client that gets 2xx
# can rely on its write being durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
