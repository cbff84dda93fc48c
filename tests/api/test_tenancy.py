"""Who may touch whose notes, users and webhook endpoints. The matrices are built from the
app's own routes, so a new `/notes/{note_id}...`, `/users/{...}` or `/webhooks/{...}` route is
covered (or fails loudly) without editing this file."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import update

from notes_api.core.db import Database
from notes_api.jobs.models import Job, JobStatus
from notes_api.main import create_app
from notes_api.notes.models import Note, NoteStatus
from notes_api.notes.service import SUMMARIZE
from notes_api.webhooks.models import WebhookDelivery
from tests.conftest import (
    Account,
    add_user,
    create_note,
    make_settings,
    signup,
    stream_status,
)
from tests.webhooks.conftest import register

# Bodies for routes that need one; a new route that needs a body fails until listed here.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/notes/{note_id}"): {"title": "changed by the caller"},
}
# Routes that act only on a note in some state: the note is put in that state first, so
# that "allowed" is seen as a 2xx (retry answers 409 to a note that has not failed).
NEEDS_FAILED_NOTE = {("POST", "/notes/{note_id}/retry")}


async def fail_note(db: Database, note_id: str) -> None:
    """Stand in for the worker giving up on the note's summary."""
    async with db.session(write=True) as session:
        await session.execute(
            update(Job)
            .where(Job.kind == SUMMARIZE, Job.dedupe_key == note_id)
            .values(status=JobStatus.FAILED, attempts=5)
        )
        await session.execute(
            update(Note)
            .where(Note.id == uuid.UUID(note_id))
            .values(status=NoteStatus.FAILED, error="model said no", attempts=5)
        )


def routes_under(*prefixes: str) -> list[tuple[str, str]]:
    app = create_app(make_settings("sqlite:///unused-route-listing.db"))
    # Since FastAPI 0.137 `app.routes` holds included routers unflattened; this walks them
    # and gives each endpoint its full, prefixed path.
    found = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if route.path and route.path.startswith(prefixes)
        for method in route.methods or ()
    }
    return sorted(found)


ROUTES = routes_under("/notes/{note_id}")
# The admins' routes that name one user, endpoint or delivery of the organization.
ORG_ROUTES = routes_under("/users/{", "/webhooks/{")


@dataclass
class World:
    owner: Account  # agent A, org X
    colleague: Account  # agent B, org X
    admin_x: Account
    admin_y: Account
    outsider: Account  # an agent of the default organization


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    admin_x = await signup(client, organization=f"X {uuid.uuid4().hex[:6]}")
    admin_y = await signup(client, organization=f"Y {uuid.uuid4().hex[:6]}")
    owner = await add_user(client, admin_x, "AGENT")
    colleague = await add_user(client, admin_x, "AGENT")
    outsider = await signup(client)
    return World(owner, colleague, admin_x, admin_y, outsider)


async def call(
    client: httpx.AsyncClient, method: str, path: str, note_id: str, headers: dict[str, str]
) -> httpx.Response:
    url = path.replace("{note_id}", note_id)
    body = BODIES.get((method, path))
    return await client.request(method, url, headers=headers, json=body)


def test_matrix_covers_every_known_note_route() -> None:
    assert {
        ("GET", "/notes/{note_id}"),
        ("PATCH", "/notes/{note_id}"),
        ("DELETE", "/notes/{note_id}"),
        ("POST", "/notes/{note_id}/retry"),
    } <= set(ROUTES)
    for _, path in ROUTES:
        assert path.count("{") == 1, f"{path}: the matrix only fills in note_id"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("actor", ["owner", "admin_x"])
async def test_owner_and_own_admin_may_use_note_route(
    client: httpx.AsyncClient,
    app: FastAPI,
    db: Database,
    world: World,
    method: str,
    path: str,
    actor: str,
) -> None:
    note = await create_note(client, world.owner, title="original")
    if (method, path) in NEEDS_FAILED_NOTE:
        await fail_note(db, note["id"])
    headers = getattr(world, actor).headers
    if path.endswith("/events"):  # a stream: over a real server, up to its first line
        url = path.replace("{note_id}", note["id"])
        response = await stream_status(app, url, headers)
    else:
        response = await call(client, method, path, note["id"], headers)
    assert 200 <= response.status_code < 300, response.text


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("actor", ["colleague", "admin_y", "outsider"])
async def test_other_agents_and_other_organizations_get_404_and_change_nothing(
    client: httpx.AsyncClient, world: World, method: str, path: str, actor: str
) -> None:
    note = await create_note(client, world.owner, title="original")
    response = await call(client, method, path, note["id"], getattr(world, actor).headers)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    # Indistinguishable from a note that does not exist at all.
    missing = await call(client, method, path, str(uuid.uuid4()), getattr(world, actor).headers)
    assert missing.status_code == 404
    assert missing.json() == response.json()
    after = await client.get(f"/notes/{note['id']}", headers=world.owner.headers)
    assert after.status_code == 200
    assert after.json() == note


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["anonymous", "garbage-token", "basic-auth"],
)
async def test_anonymous_caller_gets_401_on_note_route(
    client: httpx.AsyncClient, world: World, method: str, path: str, headers: dict[str, str]
) -> None:
    note = await create_note(client, world.owner, title="original")
    response = await call(client, method, path, note["id"], headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
    after = await client.get(f"/notes/{note['id']}", headers=world.owner.headers)
    assert after.json() == note


async def test_anonymous_caller_gets_401_on_note_collection(client: httpx.AsyncClient) -> None:
    assert (await client.get("/notes")).status_code == 401
    assert (await client.post("/notes", json={"raw_text": "x"})).status_code == 401


def ids_of(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["items"]}


@pytest.fixture
async def notes(client: httpx.AsyncClient, world: World) -> dict[str, set[str]]:
    """Two notes by each agent of org X, one by the outsider."""
    made: dict[str, set[str]] = {"owner": set(), "colleague": set(), "outsider": set()}
    for name, count in (("owner", 2), ("colleague", 2), ("outsider", 1)):
        for i in range(count):
            note = await create_note(client, getattr(world, name), f"{name} note {i}")
            made[name].add(note["id"])
    return made


async def test_agent_lists_only_own_notes(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    assert ids_of(await client.get("/notes", headers=world.owner.headers)) == notes["owner"]
    colleague = await client.get("/notes", headers=world.colleague.headers)
    assert ids_of(colleague) == notes["colleague"]


async def test_admin_lists_every_note_of_own_organization(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    listed = ids_of(await client.get("/notes", headers=world.admin_x.headers))
    assert listed == notes["owner"] | notes["colleague"]


async def test_admin_of_another_organization_lists_none_of_them(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    assert ids_of(await client.get("/notes", headers=world.admin_y.headers)) == set()
    by_owner = await client.get(
        "/notes", headers=world.admin_y.headers, params={"owner_id": world.owner.id}
    )
    assert ids_of(by_owner) == set()


async def test_admin_filters_by_owner_id(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    for name in ("owner", "colleague"):
        response = await client.get(
            "/notes", headers=world.admin_x.headers, params={"owner_id": getattr(world, name).id}
        )
        assert ids_of(response) == notes[name]
        assert {i["owner_id"] for i in response.json()["items"]} == {getattr(world, name).id}


async def test_agent_filtering_by_someone_elses_owner_id_gets_empty_list(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    for other in (world.colleague, world.admin_x, world.outsider):
        response = await client.get(
            "/notes", headers=world.owner.headers, params={"owner_id": other.id}
        )
        assert ids_of(response) == set()
    own = await client.get(
        "/notes", headers=world.owner.headers, params={"owner_id": world.owner.id}
    )
    assert ids_of(own) == notes["owner"]


async def test_note_ids_are_random_uuids(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    ids = [uuid.UUID(i) for i in notes["owner"] | notes["colleague"] | notes["outsider"]]
    assert all(i.version == 4 for i in ids)
    # Sequential ids would share a long prefix; five random ones practically never do.
    assert len({i.hex[:8] for i in ids}) == len(ids)


async def test_admin_of_organization_sees_note_after_agent_is_provisioned(
    client: httpx.AsyncClient, world: World
) -> None:
    newcomer = await add_user(client, world.admin_x, "AGENT")
    note = await create_note(client, newcomer, "fresh")
    seen = await client.get(f"/notes/{note['id']}", headers=world.admin_x.headers)
    assert seen.status_code == 200
    hidden = await client.get(f"/notes/{note['id']}", headers=world.owner.headers)
    assert hidden.status_code == 404


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_every_note_route_reaches_notes_only_through_the_tenancy_rule(
    client: httpx.AsyncClient, world: World, method: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the tenancy rule's tenant made one that owns nothing, the owner's own note must
    be out of reach on every route: a query that bypassed the rule would still find it."""
    from notes_api.notes import repository

    note = await create_note(client, world.owner, title="original")
    nobody = {repository.TENANT: uuid.uuid4()}
    monkeypatch.setattr(repository, "tenant_params", lambda caller: nobody)
    response = await call(client, method, path, note["id"], world.owner.headers)
    assert response.status_code == 404, response.text
    listed = await client.get("/notes", headers=world.owner.headers)
    assert ids_of(listed) == set()
    monkeypatch.undo()
    assert (await client.get(f"/notes/{note['id']}", headers=world.owner.headers)).json() == note


async def test_a_token_issued_before_a_role_change_gets_the_new_roles_view(
    client: httpx.AsyncClient, world: World, notes: dict[str, set[str]]
) -> None:
    """The role is the member's current one, not the one written in the token: a demoted
    admin's old token sees only its own notes, a promoted agent's old token the whole
    organization's."""
    second_admin = await add_user(client, world.admin_x, "ADMIN")
    demoted = await client.patch(
        f"/users/{world.admin_x.id}", headers=second_admin.headers, json={"role": "AGENT"}
    )
    assert demoted.status_code == 200, demoted.text
    promoted = await client.patch(
        f"/users/{world.owner.id}", headers=second_admin.headers, json={"role": "ADMIN"}
    )
    assert promoted.status_code == 200, promoted.text
    colleague_note = next(iter(notes["colleague"]))

    assert ids_of(await client.get("/notes", headers=world.admin_x.headers)) == set()
    read = await client.get(f"/notes/{colleague_note}", headers=world.admin_x.headers)
    assert read.status_code == 404

    everyone = notes["owner"] | notes["colleague"]
    assert ids_of(await client.get("/notes", headers=world.owner.headers)) == everyone
    by_colleague = await client.get(
        "/notes", headers=world.owner.headers, params={"owner_id": world.colleague.id}
    )
    assert ids_of(by_colleague) == notes["colleague"]
    read = await client.get(f"/notes/{colleague_note}", headers=world.owner.headers)
    assert read.status_code == 200 and read.json()["id"] == colleague_note


# ------------------------------------------------------------ users and webhook endpoints

ORG_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/users/{user_id:uuid}"): {"role": "ADMIN"},
    ("PATCH", "/webhooks/{webhook_id}"): {"enabled": False, "description": "taken over"},
}


@dataclass
class Organization:
    """What organization X's admin sees of its own: its users and its endpoint (with one
    logged delivery). `ids` fills in a route's path parameters with them."""

    admin: Account
    agent: Account
    ids: dict[str, str]

    async def view(self, client: httpx.AsyncClient) -> list[Any]:
        hook = f"/webhooks/{self.ids['webhook_id']}"
        return [
            (await client.get(path, headers=self.admin.headers)).json()
            for path in ("/users?limit=100", hook, f"{hook}/deliveries")
        ]


async def log_delivery(db: Database, endpoint_id: str) -> str:
    async with db.session(write=True) as session:
        delivery = WebhookDelivery(
            endpoint_id=uuid.UUID(endpoint_id), event_id=1, type="note.queued", attempt=1
        )
        session.add(delivery)
        await session.flush()
        return str(delivery.id)


@pytest.fixture
async def org_x(client: httpx.AsyncClient, db: Database) -> Organization:
    admin = await signup(client, organization=f"X {uuid.uuid4().hex[:6]}")
    agent = await add_user(client, admin, "AGENT")
    endpoint_id = (await register(client, admin, "https://crm.example.com/hooks"))["id"]
    ids = {
        "user_id": agent.id,
        "webhook_id": endpoint_id,
        "delivery_id": await log_delivery(db, endpoint_id),
    }
    return Organization(admin, agent, ids)


async def call_org_route(
    client: httpx.AsyncClient, method: str, path: str, ids: dict[str, str], who: Account
) -> httpx.Response:

    def fill(match: re.Match[str]) -> str:
        assert match[1] in ids, f"{path}: no id to fill {match[0]} with (add it to org_x)"
        return ids[match[1]]

    url = re.sub(r"{(\w+)(?::\w+)?}", fill, path)  # `{user_id:uuid}` too
    body = ORG_BODIES.get((method, path))
    return await client.request(method, url, headers=who.headers, json=body)


def test_org_matrix_covers_every_known_user_and_webhook_route() -> None:
    assert {
        ("PATCH", "/users/{user_id:uuid}"),
        ("GET", "/webhooks/{webhook_id}"),
        ("PATCH", "/webhooks/{webhook_id}"),
        ("DELETE", "/webhooks/{webhook_id}"),
        ("POST", "/webhooks/{webhook_id}/rotate-secret"),
        ("GET", "/webhooks/{webhook_id}/deliveries"),
        ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/resend"),
    } <= set(ORG_ROUTES)


@pytest.mark.parametrize(("method", "path"), ORG_ROUTES, ids=[f"{m} {p}" for m, p in ORG_ROUTES])
async def test_another_organizations_admin_gets_404_on_user_and_webhook_routes(
    client: httpx.AsyncClient, org_x: Organization, method: str, path: str
) -> None:
    """Organization X's user, endpoint or delivery, asked for by organization Y's admin, is
    answered 404, never 403 or 2xx, exactly as one that does not exist; nothing changes.
    (An agent of X gets 403 on these routes: they are for admins, whoever's id they name.)"""
    admin_y = await signup(client, organization=f"Y {uuid.uuid4().hex[:6]}")
    before = await org_x.view(client)
    response = await call_org_route(client, method, path, org_x.ids, admin_y)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    missing_ids = {name: str(uuid.uuid4()) for name in org_x.ids}
    missing = await call_org_route(client, method, path, missing_ids, admin_y)
    assert missing.status_code == 404
    assert missing.json() == response.json()
    assert await org_x.view(client) == before


async def test_another_organizations_delivery_through_an_own_endpoint_is_404(
    client: httpx.AsyncClient, org_x: Organization
) -> None:
    """Y's admin naming its own endpoint and X's delivery: the delivery is not Y's (404),
    the same answer as a delivery that does not exist."""
    admin_y = await signup(client, organization=f"Y {uuid.uuid4().hex[:6]}")
    own = await register(client, admin_y, "https://y.example.com/hooks")
    path = "/webhooks/{webhook_id}/deliveries/{delivery_id}/resend"
    ids = {"webhook_id": own["id"], "delivery_id": org_x.ids["delivery_id"]}
    response = await call_org_route(client, "POST", path, ids, admin_y)
    assert response.status_code == 404, response.text
    missing = await call_org_route(
        client, "POST", path, {**ids, "delivery_id": str(uuid.uuid4())}, admin_y
    )
    assert missing.json() == response.json()


async def test_another_organizations_users_and_endpoints_are_never_listed(
    client: httpx.AsyncClient, org_x: Organization
) -> None:
    admin_y = await signup(client, organization=f"Y {uuid.uuid4().hex[:6]}")
    users = await client.get("/users?limit=100", headers=admin_y.headers)
    assert [u["id"] for u in users.json()["items"]] == [admin_y.id]
    assert (await client.get("/webhooks", headers=admin_y.headers)).json()["items"] == []
