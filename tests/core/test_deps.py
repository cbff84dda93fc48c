"""The request's unit of work, opened by its route (`core.deps.UnitOfWorkRoute`): every
route that takes it runs in it, and a write is committed before its answer is sent (a 429
after a write takes the write back: tests/api/test_notes.py)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select

from notes_api.core.db import Database
from notes_api.core.deps import SessionDep, UnitOfWorkRoute, _takes_unit
from notes_api.notes.models import Note
from tests.conftest import create_note, signup


def test_every_route_that_takes_the_unit_of_work_opens_it(app: FastAPI) -> None:
    # The endpoints with their full paths (app.routes holds the included routers unflattened).
    routes = [(c.path, c.original_route) for c in iter_route_contexts(app.routes)]
    endpoints = [(path, r) for path, r in routes if isinstance(r, APIRoute)]
    taking = [(path, r) for path, r in endpoints if _takes_unit(r.dependant)]
    assert len(taking) > 20  # notes, webhooks, users, usage, auth, streams
    paths = {path for path, _ in taking}
    assert paths >= {"/notes", "/notes/{note_id}", "/auth/signup", "/users/me", "/notes/events"}
    assert all(isinstance(r, UnitOfWorkRoute) for _, r in taking)
    # A route that takes none runs without one: no session is opened for it.
    assert "/healthz" not in paths


async def test_a_route_built_without_the_route_class_fails_loudly() -> None:
    router = APIRouter()

    @router.get("/plain")
    async def plain(session: SessionDep) -> dict[str, str]:  # pragma: no cover - not reached
        return {}

    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/plain")).status_code == 500


async def test_a_write_is_committed_before_its_answer_is_sent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """At the moment the answer's first message leaves the app, another connection already
    sees the note (both databases)."""
    account = await signup(client)
    db: Database = app.state.db
    seen: list[int] = []
    inner = app.middleware_stack
    assert inner is not None

    async def watching(scope: Any, receive: Any, send: Any) -> None:
        async def send_after_looking(message: Any) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST":
                async with db.session(write=False) as other:
                    seen.append(await other.scalar(select(func.count()).select_from(Note)) or 0)
            await send(message)

        await inner(scope, receive, send_after_looking)

    app.middleware_stack = watching
    try:
        await create_note(client, account)
    finally:
        app.middleware_stack = inner
    assert seen == [1]
