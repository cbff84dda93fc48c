from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.errors import AppError

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies are `async def` even when they never await: FastAPI runs a plain `def`
# dependency in a worker thread, a hand-off that costs more than the function itself.
async def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    db: Database = request.app.state.db
    read_only = request.method in _READ_ONLY
    async with db.new_session(write=not read_only, read_only=read_only) as session:
        try:
            yield session
        except AppError as exc:
            await (session.commit() if exc.keep_writes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


# scope="function": the commit happens before the response, so a client that gets 2xx
# can rely on its write being durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
