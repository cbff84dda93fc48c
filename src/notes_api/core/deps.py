"""What a route's endpoint is given: the request's unit of work (`SessionDep`), the
settings and the database; and the route class that runs an endpoint in its unit of work
(`UnitOfWorkRoute`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.core.db import Database

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
_UNIT = "notes_api.unit_of_work"  # the request scope's key for its unit of work


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


def unit_of(request: Request) -> AsyncSession:
    """The request's unit of work, which its route (`UnitOfWorkRoute`) opened: for
    `get_session` and for a dependency marked `takes_unit`."""
    session: AsyncSession | None = request.scope.get(_UNIT)
    if session is None:  # a router built without UnitOfWorkRoute: a mistake in the code
        raise RuntimeError(f"{request.url.path} has no unit of work: use UnitOfWorkRoute")
    return session


async def get_session(request: Request) -> AsyncSession:
    """The request's unit of work. A signed-in route takes it with its caller
    (`users.deps.CallerWork`)."""
    return unit_of(request)


_TAKES_UNIT: set[Callable[..., Any]] = {get_session}
_D = TypeVar("_D", bound=Callable[..., Any])


def takes_unit(dependency: _D) -> _D:
    """Marks a dependency that reads the request's unit of work itself (`unit_of`): a route
    that depends on it runs in one, as a route that takes `SessionDep` does. FastAPI resolves
    every dependency of a chain at each request, so the caller's takes no `SessionDep` of
    its own."""
    _TAKES_UNIT.add(dependency)
    return dependency


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]


class UnitOfWorkRoute(APIRoute):
    """Every router's route class. A route whose endpoint takes the unit of work
    (`SessionDep`, directly or through a dependency) runs all of it, the dependencies, the
    endpoint and the serialized answer, inside `unit_of_work`: it commits before the answer
    is sent, so a client that gets 2xx can rely on its write being durable, and an error
    rolls it back before the error's answer is made.

    Not a dependency with `yield`: FastAPI wraps each one in two context managers, an exit
    stack and a cancel scope, at about a tenth of a read's CPU."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _takes_unit(self.dependant):
            return handler

        async def in_unit_of_work(request: Request) -> Response:
            async with unit_of_work(request) as session:
                request.scope[_UNIT] = session
                return await handler(request)

        return in_unit_of_work


def _takes_unit(dependant: Dependant) -> bool:
    return any(d.call in _TAKES_UNIT or _takes_unit(d) for d in dependant.dependencies)
