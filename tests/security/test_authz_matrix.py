"""Who may call what: one declared answer for every route of the app and every kind of
caller, checked against the running app. The routes come from the app itself, so a new route
fails `test_matrix_declares_every_route` until its row is written here.

Also: server-owned fields smuggled into any JSON body (mass assignment), and ids that give
nothing away (random UUIDv4; another organization's id answers exactly like a made-up one)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from notes_api.main import create_app
from tests.conftest import (
    PASSWORD,
    Account,
    add_user,
    create_note,
    make_settings,
    signup,
    stream_status,
)

ACTORS = ("anonymous", "owner", "colleague", "admin", "other_admin")
PUBLIC = dict.fromkeys(ACTORS, 200)


# Names of what is stored but never shown (excessive data exposure, OWASP API3).
NEVER_SENT = ("password_hash", "token_hash", "request_hash", "lease_token", "$argon2")


def row(anonymous: int, owner: int, colleague: int, admin: int, other_admin: int) -> dict[str, int]:
    return dict(zip(ACTORS, (anonymous, owner, colleague, admin, other_admin), strict=True))


# The expected status per caller. `owner` and `colleague` are agents of organization X,
# `admin` is X's admin, `other_admin` the admin of organization Y. Note routes act on a note
# of `owner`; /users/{user_id} acts on `owner`. 409 on retry means "reached the note, which
# has not failed": authorization passed.
MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("HEAD", "/openapi.json"): PUBLIC,
    ("GET", "/"): dict.fromkeys(ACTORS, 307),  # to /docs
    ("HEAD", "/"): dict.fromkeys(ACTORS, 307),
    ("GET", "/docs"): PUBLIC,
    ("HEAD", "/docs"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/auth/signup"): dict.fromkeys(ACTORS, 201),
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/auth/token"): PUBLIC,
    ("POST", "/auth/refresh"): PUBLIC,
    ("POST", "/auth/logout"): row(401, 204, 204, 204, 204),
    ("GET", "/users/me"): row(401, 200, 200, 200, 200),
    ("GET", "/users"): row(401, 403, 403, 200, 200),
    ("POST", "/users"): row(401, 403, 403, 201, 201),
    ("PATCH", "/users/{user_id:uuid}"): row(401, 403, 403, 200, 404),
    ("GET", "/organizations/me/usage"): row(401, 403, 403, 200, 200),
    ("POST", "/notes"): row(401, 202, 202, 202, 202),
    ("GET", "/notes"): row(401, 200, 200, 200, 200),
    ("GET", "/notes/{note_id}"): row(401, 200, 404, 200, 404),
    ("PATCH", "/notes/{note_id}"): row(401, 200, 404, 200, 404),
    ("DELETE", "/notes/{note_id}"): row(401, 204, 404, 204, 404),
    ("POST", "/notes/{note_id}/retry"): row(401, 409, 404, 409, 404),
    ("GET", "/notes/events"): row(401, 200, 200, 200, 200),
    # The stream path's other methods: 405 with `Allow: GET` for anyone, before any sign-in
    # (without these, PATCH /notes/events was taken for PATCH /notes/{note_id}).
    **{
        (method, "/notes/events"): dict.fromkeys(ACTORS, 405)
        for method in ("HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    },
    ("GET", "/notes/{note_id}/events"): row(401, 200, 404, 200, 404),
    # Webhook routes act on an endpoint of X. No delivery exists in this world: the admin's
    # 404 on resend means it reached X's endpoint and found no such attempt.
    ("POST", "/webhooks"): row(401, 403, 403, 201, 201),
    ("GET", "/webhooks"): row(401, 403, 403, 200, 200),
    ("GET", "/webhooks/{webhook_id}"): row(401, 403, 403, 200, 404),
    ("PATCH", "/webhooks/{webhook_id}"): row(401, 403, 403, 200, 404),
    ("DELETE", "/webhooks/{webhook_id}"): row(401, 403, 403, 204, 404),
    ("POST", "/webhooks/{webhook_id}/rotate-secret"): row(401, 403, 403, 200, 404),
    ("GET", "/webhooks/{webhook_id}/deliveries"): row(401, 403, 403, 200, 404),
    ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/resend"): row(
        401, 403, 403, 404, 404
    ),
}
WEBHOOK_URL = "https://crm.example.com/hooks"


def app_routes() -> list[tuple[str, str]]:
    app = create_app(make_settings("sqlite:///unused-route-listing.db"))
    found = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path
        for method in route.methods or ()
    }
    return sorted(found)


ROUTES = app_routes()


@dataclass
class World:
    owner: Account
    colleague: Account
    admin: Account
    other_admin: Account

    def actor(self, name: str) -> Account | None:
        return None if name == "anonymous" else getattr(self, name)


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    admin = await signup(client, organization=f"X {uuid.uuid4().hex[:6]}")
    other_admin = await signup(client, organization=f"Y {uuid.uuid4().hex[:6]}")
    owner = await add_user(client, admin, "AGENT")
    colleague = await add_user(client, admin, "AGENT")
    return World(owner, colleague, admin, other_admin)


def fresh_email() -> str:
    return f"matrix-{uuid.uuid4().hex[:10]}@example.com"


async def request_for(
    client: httpx.AsyncClient,
    world: World,
    method: str,
    path: str,
    actor: str,
    app: FastAPI | None = None,
) -> httpx.Response:
    """Make the route's request as `actor`, with whatever body and target it needs."""
    who = world.actor(actor)
    headers = who.headers if who else {}
    # An anonymous caller of a route that takes credentials in the body uses the owner's.
    creds = who or world.owner
    json: Any = None
    data: Any = None
    url = path
    if path == "/auth/signup":
        json = {"email": fresh_email(), "password": PASSWORD}
    elif path == "/auth/login":
        json = {"email": creds.email, "password": PASSWORD}
    elif path == "/auth/token":
        data = {"username": creds.email, "password": PASSWORD}
    elif path in ("/auth/refresh", "/auth/logout"):
        # A fresh session each time, so one actor's call cannot spend another's token.
        login = await client.post("/auth/login", json={"email": creds.email, "password": PASSWORD})
        json = {"refresh_token": login.json()["refresh_token"]}
    elif path == "/users" and method == "POST":
        json = {"email": fresh_email(), "password": PASSWORD, "role": "AGENT"}
    elif path == "/users/{user_id:uuid}":
        url = path.replace("{user_id:uuid}", world.owner.id)
        json = {"role": "AGENT"}
    elif path == "/notes" and method == "POST":
        json = {"raw_text": "A note from the matrix."}
    elif "{note_id}" in path:
        note = await create_note(client, world.owner, "The owner's note.", title="original")
        url = path.replace("{note_id}", note["id"])
        json = {"title": "changed"} if method == "PATCH" else None
    elif path == "/webhooks" and method == "POST":
        json = {"url": WEBHOOK_URL, "events": ["note.done"]}
    elif "{webhook_id}" in path:
        made = await client.post(
            "/webhooks",
            headers=world.admin.headers,
            json={"url": WEBHOOK_URL, "events": ["note.done"]},
        )
        url = path.replace("{webhook_id}", made.json()["id"])
        url = url.replace("{delivery_id}", str(uuid.uuid4()))
        json = {"description": "changed"} if method == "PATCH" else None
    if path.endswith("/events") and method == "GET":  # a stream: only its status
        assert app is not None
        return await stream_status(app, url, headers)
    return await client.request(method, url, headers=headers, json=json, data=data)


async def snapshot(client: httpx.AsyncClient, world: World) -> Any:
    """What a refused call must leave as it was: the owner's notes and the owner's account."""
    notes = await client.get("/notes", headers=world.owner.headers)
    users = await client.get("/users", headers=world.admin.headers)
    owner = [u for u in users.json()["items"] if u["id"] == world.owner.id]
    return notes.json(), owner


def test_matrix_declares_every_route() -> None:
    assert set(ROUTES) == set(MATRIX), (
        f"undeclared: {sorted(set(ROUTES) - set(MATRIX))}; "
        f"gone: {sorted(set(MATRIX) - set(ROUTES))}"
    )


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_route_answers_each_caller_as_declared(
    client: httpx.AsyncClient, app: FastAPI, world: World, method: str, path: str
) -> None:
    expected = MATRIX.get((method, path))
    assert expected is not None, f"{method} {path} is not in MATRIX"
    got: dict[str, int] = {}
    for actor in ACTORS:
        before = await snapshot(client, world)
        response = await request_for(client, world, method, path, actor, app)
        got[actor] = response.status_code
        for secret in NEVER_SENT:
            assert secret not in response.text, f"{method} {path} sent {secret}"
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            # Refused means refused: nothing of the owner's changed.
            if "{note_id}" not in path:
                assert await snapshot(client, world) == before, f"{actor} changed state"
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    assert got == expected


async def test_refused_note_calls_change_nothing(client: httpx.AsyncClient, world: World) -> None:
    note = await create_note(client, world.owner, "Keep me.", title="kept")
    for actor in ("colleague", "other_admin"):
        who = world.actor(actor)
        assert who is not None
        for method, suffix, body in (
            ("PATCH", "", {"title": "hijacked", "raw_text": "gone"}),
            ("DELETE", "", None),
            ("POST", "/retry", None),
        ):
            response = await client.request(
                method, f"/notes/{note['id']}{suffix}", headers=who.headers, json=body
            )
            assert response.status_code == 404
    after = await client.get(f"/notes/{note['id']}", headers=world.owner.headers)
    assert after.json() == note


# ------------------------------------------------------------------ mass assignment

SERVER_OWNED = (
    "id",
    "owner_id",
    "organization_id",
    "role",
    "status",
    "summary",
    "attempts",
    "error",
    "is_active",
    "password_hash",
    "created_at",
)


def json_body_fields() -> dict[tuple[str, str], set[str]]:
    """Every operation with a JSON body, and the fields its schema allows."""
    spec = create_app(make_settings("sqlite:///unused-route-listing.db")).openapi()
    schemas = spec["components"]["schemas"]
    found: dict[tuple[str, str], set[str]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            found[(method.upper(), path)] = set(schemas[ref]["properties"])
    return found


BODY_ROUTES = json_body_fields()


def test_every_json_body_route_is_probed_for_mass_assignment() -> None:
    assert set(BODY_ROUTES) == {
        ("POST", "/auth/signup"),
        ("POST", "/auth/login"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("POST", "/users"),
        ("PATCH", "/users/{user_id}"),
        ("POST", "/notes"),
        ("PATCH", "/notes/{note_id}"),
        ("POST", "/webhooks"),
        ("PATCH", "/webhooks/{webhook_id}"),
    }


FORGED: dict[str, Any] = {
    "role": "ADMIN",
    "status": "done",
    "attempts": 0,
    "is_active": True,
    "summary": "forged",
    "error": None,
}


@pytest.mark.parametrize(("method", "path"), sorted(BODY_ROUTES), ids=lambda v: str(v))
async def test_server_owned_fields_in_body_are_422_and_change_nothing(
    client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    smuggled = [name for name in SERVER_OWNED if name not in BODY_ROUTES[(method, path)]]
    assert smuggled
    url, body, headers = await request_body(client, world, method, path)
    before = await snapshot(client, world)
    for name in smuggled:
        value = FORGED.get(name, str(uuid.uuid4()))
        response = await client.request(method, url, headers=headers, json={**body, name: value})
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert ["body", name] in [e["loc"] for e in response.json()["errors"]]
    assert await snapshot(client, world) == before
    if path == "/auth/signup":
        # The address was not taken: the refused sign-ups created nothing.
        again = await client.post("/auth/signup", json=body)
        assert again.status_code == 201, again.text
        assert again.json()["user"]["role"] == "AGENT"


async def request_body(
    client: httpx.AsyncClient, world: World, method: str, path: str
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A valid request for a JSON-body route, as the owner (or the admin for /users)."""
    owner, admin = world.owner, world.admin
    if path == "/auth/signup":
        return path, {"email": fresh_email(), "password": PASSWORD}, {}
    if path == "/auth/login":
        return path, {"email": owner.email, "password": PASSWORD}, {}
    if path in ("/auth/refresh", "/auth/logout"):
        return path, {"refresh_token": owner.refresh_token}, owner.headers
    if path == "/users":
        return path, {"email": fresh_email(), "password": PASSWORD}, admin.headers
    if path == "/users/{user_id}":
        return path.replace("{user_id}", owner.id), {"role": "AGENT"}, admin.headers
    if path == "/notes":
        return path, {"raw_text": "Smuggling attempt."}, owner.headers
    if path == "/webhooks":
        return path, {"url": WEBHOOK_URL, "events": ["note.done"]}, admin.headers
    if path == "/webhooks/{webhook_id}":
        made = await client.post(
            "/webhooks", headers=admin.headers, json={"url": WEBHOOK_URL, "events": ["note.done"]}
        )
        return path.replace("{webhook_id}", made.json()["id"]), {"enabled": True}, admin.headers
    note = await create_note(client, owner, "Target of a smuggling attempt.")
    return path.replace("{note_id}", note["id"]), {"title": "fine"}, owner.headers


# ------------------------------------------------------------------ enumeration


async def test_user_ids_are_random_uuid4(client: httpx.AsyncClient, world: World) -> None:
    ids = [uuid.UUID(a.id) for a in (world.owner, world.colleague, world.admin, world.other_admin)]
    assert all(i.version == 4 for i in ids)
    assert len({i.hex[:8] for i in ids}) == len(ids)


async def test_another_organizations_user_answers_like_a_missing_one(
    client: httpx.AsyncClient, world: World
) -> None:
    theirs = await client.patch(
        f"/users/{world.owner.id}", headers=world.other_admin.headers, json={"role": "ADMIN"}
    )
    made_up = await client.patch(
        f"/users/{uuid.uuid4()}", headers=world.other_admin.headers, json={"role": "ADMIN"}
    )
    assert theirs.status_code == made_up.status_code == 404
    assert theirs.json() == made_up.json()
    assert theirs.headers["content-type"] == made_up.headers["content-type"]
    listed = await client.get("/users", headers=world.admin.headers)
    owner = next(u for u in listed.json()["items"] if u["id"] == world.owner.id)
    assert owner["role"] == "AGENT"


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/retry")]
)
async def test_someone_elses_note_answers_like_a_missing_one(
    client: httpx.AsyncClient, world: World, method: str, suffix: str
) -> None:
    note = await create_note(client, world.owner, "Hidden from others.")
    body = {"title": "x"} if method == "PATCH" else None
    for who in (world.colleague, world.other_admin):
        theirs = await client.request(
            method, f"/notes/{note['id']}{suffix}", headers=who.headers, json=body
        )
        made_up = await client.request(
            method, f"/notes/{uuid.uuid4()}{suffix}", headers=who.headers, json=body
        )
        assert theirs.status_code == made_up.status_code == 404
        assert theirs.json() == made_up.json()
        assert sorted(theirs.headers.keys()) == sorted(made_up.headers.keys())
