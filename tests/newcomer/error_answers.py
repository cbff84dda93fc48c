"""How to make each operation answer each documented error status, for
test_error_examples.py: one function per status, given the operation from the OpenAPI
document."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from notes_api.core.db import Database
from notes_api.core.errors import PROBLEM_JSON
from notes_api.core.openapi import BAD_UUID, bounds
from notes_api.events.models import NoteEvent
from notes_api.jobs.models import Job, JobStatus
from notes_api.main import MAX_BODY_BYTES
from notes_api.notes.models import Note, NoteStatus
from notes_api.webhooks.models import WebhookDelivery
from tests.conftest import (
    Account,
    client_for,
    create_note,
    make_settings,
    running_app,
    serve,
    signup,
)

METRICS_TOKEN = "m" * 32


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    admin: Account
    agent: Account
    database_url: str
    calls: dict[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Any:
        return make_settings(self.database_url, webhook_allow_private=True, **overrides)


@asynccontextmanager
async def other_app(world: World, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The same database served with other settings (a limit turned on, sign-up closed)."""
    async with running_app(world.settings(**overrides)) as app, client_for(app) as client:
        yield client


def fill(path: str, **ids: str) -> str:
    """The path with each `{param}` given, or a UUID no resource has."""
    return re.sub(r"{(\w+)}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


def body_for(operation: dict[str, Any]) -> dict[str, Any]:
    """What a request needs to get past validation (the documented statuses other than 422
    are about something else)."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/x-www-form-urlencoded" in content:
        return {"data": {"username": "nobody@example.com", "password": "not the password"}}
    if "application/json" not in content:
        return {}
    ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    valid: dict[str, dict[str, Any]] = {
        "NoteCreate": {"raw_text": "A note. Two sentences."},
        "SignupRequest": {"email": f"u-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
        "LoginRequest": {"email": "nobody@example.com", "password": "not the password"},
        "RefreshRequest": {"refresh_token": "r" * 43},
        "UserCreate": {"email": f"u-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
        "WebhookCreate": {"url": "http://127.0.0.1:9/hook", "events": ["note.done"]},
    }
    return {"json": valid.get(ref, {})}


async def call(
    world: World,
    method: str,
    path: str,
    operation: dict[str, Any],
    *,
    client: httpx.AsyncClient | None = None,
    account: Account | None = None,
    **kwargs: Any,
) -> httpx.Response:
    account = account or world.admin
    headers = {**account.headers, **kwargs.pop("headers", {})}
    request = {**body_for(operation), **kwargs}
    return await (client or world.client).request(method, path, headers=headers, **request)


# ---------------------------------------------------------------- answers, per status


async def answer_400(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return await call(world, method, fill(path), op, content=b"{", headers=headers, json=None)


async def answer_401(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    if path == "/metrics":
        return await world.client.get(path)
    if "security" not in op:  # login, token, refresh: their own credentials are wrong
        # From an address of its own: the 429 checks have spent this one's failed logins.
        transport = httpx.ASGITransport(app=world.app, client=(f"10.0.0.{len(world.calls)}", 1))
        world.calls[path] = True
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as fresh:
            return await fresh.request(method, path, **body_for(op))
    return await world.client.request(method, fill(path), **body_for(op))


async def answer_403(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    if path == "/auth/signup":
        async with other_app(world, signup_open=False) as closed:
            return await closed.post(path, **body_for(op))
    return await call(world, method, fill(path), op, account=world.agent)


async def answer_404(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    return await call(world, method, fill(path), op)


async def answer_413(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    big = b"x" * (MAX_BODY_BYTES + 1)
    headers = {"Content-Type": "application/json"}
    return await call(world, method, fill(path), op, content=big, headers=headers, json=None)


async def answer_415(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    headers = {"Content-Type": "text/plain"}
    return await call(world, method, fill(path), op, content=b"{}", headers=headers, json=None)


async def answer_422(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    """The mistake the example names: a body left out, a path id that is not a UUID, a number
    past its bound, a field the body does not have."""
    example = op["responses"]["422"]["content"][PROBLEM_JSON]["example"]
    where, name = example["errors"][0]["loc"]
    params = {p["name"]: p for p in op.get("parameters", [])}
    if where == "body":
        if name == "unknown_field":
            return await call(world, method, fill(path), op, json={name: 1})
        if "application/x-www-form-urlencoded" in op["requestBody"]["content"]:
            return await call(world, method, path, op, data={})
        return await call(world, method, fill(path), op, json={})
    if where == "path":
        return await call(world, method, fill(path, **{name: BAD_UUID}), op)
    limits = bounds(params[name]["schema"])
    value = str(limits["maximum"] + 1) if "maximum" in limits else str(limits["minimum"] - 1)
    if where == "query":
        return await call(world, method, fill(path), op, params={name: value})
    return await call(world, method, fill(path), op, headers={name: value})


async def answer_409(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    client, admin = world.client, world.admin
    if path in ("/auth/signup", "/users"):
        return await call(
            world, method, path, op, json={"email": admin.email, "password": "x" * 12}
        )
    if path == "/users/{user_id}":  # the organization's only admin steps down
        return await call(world, method, fill(path, user_id=admin.id), op, json={"role": "AGENT"})
    if path == "/notes/{note_id}/retry":  # queued: no worker runs here
        note = await create_note(client, admin)
        return await call(world, method, fill(path, note_id=note["id"]), op)
    if path == "/webhooks":
        for _ in range(10):
            await call(world, method, path, op)
        return await call(world, method, path, op)
    if path == "/webhooks/{webhook_id}/deliveries/{delivery_id}/resend":
        # An organization of its own: the one above has as many endpoints as it may.
        admin = await signup(client, organization=f"Resend {uuid.uuid4().hex[:6]}")
        hook = await client.post(
            "/webhooks",
            headers=admin.headers,
            json={"url": "http://127.0.0.1:9/other", "events": ["note.queued"]},
        )
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        await create_note(client, admin)
        delivery_id = await _delivery(world.app.state.db, uuid.UUID(hook_id))
        await client.patch(f"/webhooks/{hook_id}", headers=admin.headers, json={"enabled": False})
        target = fill(path, webhook_id=hook_id, delivery_id=delivery_id)
        return await call(world, method, target, op, account=admin)
    raise AssertionError(f"no way known to make {method} {path} answer 409")


async def _delivery(db: Database, endpoint_id: uuid.UUID) -> str:
    """An attempt in the log, as a worker would have written it (no worker runs here)."""
    async with db.session() as session:
        event_id = await session.scalar(select(NoteEvent.id).order_by(NoteEvent.id.desc()))
        assert event_id is not None
        delivery = WebhookDelivery(
            endpoint_id=endpoint_id, event_id=event_id, type="note.queued", attempt=1
        )
        session.add(delivery)
        await session.flush()
        return str(delivery.id)


async def answer_429(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    if path in ("/auth/login", "/auth/token"):
        for _ in range(10):
            response = await call(world, method, path, op)
            if response.status_code != 401:
                return response
        raise AssertionError("no 429 after 10 failed logins")
    if path.endswith("/events"):
        return await _second_stream(world, path)
    if path == "/auth/signup":  # a second sign-up from one address, past a limit of one
        async with other_app(world, signup_per_client_per_hour=1) as limited:
            first = await call(world, method, path, op, client=limited)
            assert first.status_code == 201, first.text
            return await call(world, method, path, op, client=limited)
    # A new user's second write in a minute, past a limit of one: only accepted writes count,
    # so the first is a note, and the second a write that would succeed (a failed note's
    # retry, an edit, another note).
    async with other_app(world, rate_limit_user_writes_per_minute=1) as limited:
        writer = await signup(world.client)
        note = await create_note(world.client, writer)
        first = await limited.post("/notes", headers=writer.headers, json={"raw_text": "One."})
        assert first.status_code == 202, first.text
        if path.endswith("/retry"):
            await _fail(world, note["id"])
        target = fill(path, note_id=note["id"])
        return await call(world, method, target, op, client=limited, account=writer)


async def _fail(world: World, note_id: str) -> None:
    """The note's summary failed, as after its last attempt."""
    async with world.app.state.db.session() as session:
        await session.execute(
            update(Note).where(Note.id == uuid.UUID(note_id)).values(status=NoteStatus.FAILED)
        )
        await session.execute(
            update(Job).where(Job.dedupe_key == note_id).values(status=JobStatus.FAILED)
        )


async def _second_stream(world: World, path: str) -> httpx.Response:
    """A second stream of one user while the first is open (at most 1 per user here)."""
    note = await create_note(world.client, world.admin)
    target = fill(path, note_id=note["id"])
    async with (
        running_app(world.settings(event_streams_per_user=1)) as app,
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url) as real,
        real.stream("GET", target, headers=world.admin.headers) as first,
    ):
        assert first.status_code == 200
        lines = first.aiter_lines()  # held: a dropped iterator closes the stream
        await anext(lines)
        async with real.stream("GET", target, headers=world.admin.headers) as second:
            body = await second.aread() if second.status_code != 200 else b""
            return httpx.Response(second.status_code, headers=second.headers, content=body)


async def answer_503(world: World, method: str, path: str, op: dict[str, Any]) -> httpx.Response:
    """The database goes away (a server on a port where none listens)."""
    down = Database(make_settings("postgresql://postgres@127.0.0.1:9/notes", db_pool_timeout=2))
    up, world.app.state.db = world.app.state.db, down
    try:
        return await call(world, method, fill(path), op)
    finally:
        world.app.state.db = up
        await down.dispose()


ANSWERS: dict[int, Callable[..., Awaitable[httpx.Response]]] = {
    400: answer_400,
    401: answer_401,
    403: answer_403,
    404: answer_404,
    409: answer_409,
    413: answer_413,
    415: answer_415,
    422: answer_422,
    429: answer_429,
    503: answer_503,
}
