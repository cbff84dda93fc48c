"""User administration: admins only, their own organization only, and an organization always
keeps one active admin."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, Account, add_user, serve, signup


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def new_email() -> str:
    return f"users-{uuid.uuid4().hex[:10]}@example.com"


async def walk(client: httpx.AsyncClient, admin: Account, limit: int) -> list[list[str]]:
    """Every page of GET /users, as lists of e-mails."""
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = await client.get("/users", headers=admin.headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([u["email"] for u in body["items"]])
        if body["next_cursor"] is None:
            return pages
        params["cursor"] = body["next_cursor"]
        assert len(pages) < 20, "pagination does not end"


async def test_agent_gets_403_on_every_users_route(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Agents")
    agent = await add_user(client, admin, "AGENT")
    default_agent = await signup(client)
    for account in (agent, default_agent):
        responses = [
            await client.get("/users", headers=account.headers),
            await client.post(
                "/users", headers=account.headers, json={"email": new_email(), "password": PASSWORD}
            ),
            await client.patch(
                f"/users/{account.id}", headers=account.headers, json={"role": "ADMIN"}
            ),
            await client.patch(
                f"/users/{admin.id}", headers=account.headers, json={"is_active": False}
            ),
        ]
        for response in responses:
            assert_problem(response, 403)
    # Nothing changed.
    assert (await client.get("/users/me", headers=agent.headers)).json()["role"] == "AGENT"
    assert (await client.get("/users/me", headers=admin.headers)).json()["is_active"] is True


async def test_users_routes_need_signing_in(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/users"), 401)
    assert_problem(await client.post("/users", json={}), 401)
    assert_problem(await client.patch(f"/users/{uuid.uuid4()}", json={}), 401)


async def test_admin_lists_only_own_organization_page_by_page(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client, organization="Mine")
    mine = [admin.email]
    for role in ("AGENT", "AGENT", "ADMIN", "AGENT"):
        mine.append((await add_user(client, admin, role)).email)
    other = await signup(client, organization="Theirs")
    await add_user(client, other, "AGENT")
    await signup(client)  # the default organization

    pages = await walk(client, admin, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [email for page in pages for email in page]
    assert sorted(seen) == sorted(mine)
    assert len(set(seen)) == len(seen)
    # Oldest first.
    assert seen == mine


async def test_last_page_that_is_exactly_full_has_no_cursor(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Even")
    await add_user(client, admin, "AGENT")
    response = await client.get("/users", headers=admin.headers, params={"limit": 2})
    assert len(response.json()["items"]) == 2
    assert response.json()["next_cursor"] is None


async def test_cursor_from_another_organization_shows_nothing_of_it(
    client: httpx.AsyncClient,
) -> None:
    first = await signup(client, organization="First")
    for _ in range(2):
        await add_user(client, first, "AGENT")
    cursor = (await client.get("/users", headers=first.headers, params={"limit": 1})).json()[
        "next_cursor"
    ]
    second = await signup(client, organization="Second")
    response = await client.get("/users", headers=second.headers, params={"cursor": cursor})
    assert response.status_code == 200
    assert {u["organization_id"] for u in response.json()["items"]} <= {
        second.user["organization_id"]
    }


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "!!!!",
        "é",
        base64.urlsafe_b64encode(b"garbage").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        # A fixed id, not uuid4(): the test's id must be the same in every xdist worker.
        base64.urlsafe_b64encode(
            b'["2026-01-01T00:00:00", "7d1e65f0-7f59-4c65-9854-7fbcedb855c0"]'
        ).decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "nope"]').decode(),
    ],
)
async def test_forged_cursor_is_422_problem(client: httpx.AsyncClient, cursor: str) -> None:
    admin = await signup(client, organization="Cursor")
    response = await client.get("/users", headers=admin.headers, params={"cursor": cursor})
    problem = assert_problem(response, 422)
    assert problem["errors"] == [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]


async def test_cursor_with_datetime_out_of_range_in_utc_is_422(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client, organization="Cursor range")
    raw = json.dumps(["0001-01-01T00:00:00+05:00", str(uuid.uuid4())]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode()
    response = await client.get("/users", headers=admin.headers, params={"cursor": cursor})
    assert_problem(response, 422)


@pytest.mark.parametrize("limit", [0, 101, -1, "x"])
async def test_limit_out_of_range_is_422(client: httpx.AsyncClient, limit: Any) -> None:
    admin = await signup(client, organization="Limits")
    response = await client.get("/users", headers=admin.headers, params={"limit": limit})
    assert_problem(response, 422)


@pytest.mark.parametrize("role", ["AGENT", "ADMIN"])
async def test_admin_provisions_user_who_can_then_log_in(
    client: httpx.AsyncClient, role: str
) -> None:
    admin = await signup(client, organization="Provision")
    email = new_email()
    response = await client.post(
        "/users", headers=admin.headers, json={"email": email, "password": PASSWORD, "role": role}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["role"] == role
    assert created["organization_id"] == admin.user["organization_id"]
    assert created["is_active"] is True
    assert "password_hash" not in created
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json() == created


async def test_provisioned_user_defaults_to_agent(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Default role")
    response = await client.post(
        "/users", headers=admin.headers, json={"email": new_email(), "password": PASSWORD}
    )
    assert response.json()["role"] == "AGENT"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "x@example.com", "password": PASSWORD, "role": "OWNER"},
        {"email": "x@example.com", "password": "short"},
        {"email": "nope", "password": PASSWORD},
        {"email": "x@example.com", "password": PASSWORD, "organization_id": str(uuid.uuid4())},
        {"email": "x@example.com", "password": PASSWORD, "is_active": False},
    ],
)
async def test_provisioning_invalid_body_is_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    admin = await signup(client, organization="Invalid")
    assert_problem(await client.post("/users", headers=admin.headers, json=body), 422)


async def test_provisioning_existing_email_is_409(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Taken")
    elsewhere = await signup(client)
    for email in (admin.email, elsewhere.email, elsewhere.email.upper()):
        response = await client.post(
            "/users", headers=admin.headers, json={"email": email, "password": PASSWORD}
        )
        assert_problem(response, 409)


async def test_patch_user_of_another_organization_is_404(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Here")
    other_admin = await signup(client, organization="There")
    other_agent = await add_user(client, other_admin, "AGENT")
    default_agent = await signup(client)
    for target in (other_admin, other_agent, default_agent):
        for body in ({"role": "ADMIN"}, {"is_active": False}):
            response = await client.patch(f"/users/{target.id}", headers=admin.headers, json=body)
            assert_problem(response, 404)
    # Untouched.
    me = await client.get("/users/me", headers=other_agent.headers)
    assert me.json()["role"] == "AGENT"
    assert me.json()["is_active"] is True


async def test_patch_unknown_user_is_404_and_so_is_an_id_that_is_no_uuid(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client, organization="Unknown")
    assert_problem(
        await client.patch(f"/users/{uuid.uuid4()}", headers=admin.headers, json={"role": "AGENT"}),
        404,
    )
    # The route takes only UUIDs (so that /users/me is never read as an id): anything else
    # names no user.
    assert_problem(
        await client.patch("/users/not-a-uuid", headers=admin.headers, json={"role": "AGENT"}), 404
    )


@pytest.mark.parametrize("body", [{"role": "OWNER"}, {"is_active": "maybe"}, {"email": "a@b.c"}])
async def test_patch_invalid_body_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    admin = await signup(client, organization="Patch")
    agent = await add_user(client, admin, "AGENT")
    assert_problem(await client.patch(f"/users/{agent.id}", headers=admin.headers, json=body), 422)


@pytest.mark.parametrize(
    "body", [{"role": "AGENT"}, {"is_active": False}, {"role": "AGENT", "is_active": False}]
)
async def test_last_active_admin_cannot_demote_or_deactivate_themself(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    admin = await signup(client, organization="Solo")
    await add_user(client, admin, "AGENT")
    response = await client.patch(f"/users/{admin.id}", headers=admin.headers, json=body)
    assert_problem(response, 409)
    # Still an active admin, still signed in, sessions intact.
    me = await client.get("/users/me", headers=admin.headers)
    assert me.json()["role"] == "ADMIN"
    assert me.json()["is_active"] is True
    refreshed = await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    assert refreshed.status_code == 200


async def test_with_two_admins_one_can_demote_the_other(client: httpx.AsyncClient) -> None:
    first = await signup(client, organization="Pair")
    second = await add_user(client, first, "ADMIN")
    response = await client.patch(
        f"/users/{second.id}", headers=first.headers, json={"role": "AGENT"}
    )
    assert response.status_code == 200
    assert response.json()["role"] == "AGENT"
    # Now `first` is the last one and cannot step down.
    assert_problem(
        await client.patch(f"/users/{first.id}", headers=first.headers, json={"role": "AGENT"}), 409
    )


DUEL_ROUNDS = 8


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Both PATCHes go out together over a real server, on HTTP and database connections
    opened beforehand, round after round: without the organization lock both demotions
    succeed in some round (each counts the other, still uncommitted, as an admin)."""
    duels = []
    for i in range(DUEL_ROUNDS):
        first = await signup(client, organization=f"Duel {i} {uuid.uuid4().hex[:6]}")
        duels.append((first, await add_user(client, first, "ADMIN")))
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url, limits=limits) as web:
        # Open the HTTP connections and fill the database pool before the first round.
        warm = await asyncio.gather(
            *(web.get("/users/me", headers=a.headers) for pair in duels[:2] for a in pair)
        )
        assert {r.status_code for r in warm} == {200}
        for first, second in duels:
            responses = await asyncio.gather(
                web.patch(f"/users/{second.id}", headers=first.headers, json={"role": "AGENT"}),
                web.patch(f"/users/{first.id}", headers=second.headers, json={"role": "AGENT"}),
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses in ([200, 403], [200, 409]), [r.text for r in responses]
            roles = [
                (await web.get("/users/me", headers=a.headers)).json()["role"]
                for a in (first, second)
            ]
            assert sorted(roles) == ["ADMIN", "AGENT"]


async def test_admin_can_step_down_while_another_admin_remains(
    client: httpx.AsyncClient,
) -> None:
    first = await signup(client, organization="Step down")
    second = await add_user(client, first, "ADMIN")
    response = await client.patch(
        f"/users/{first.id}", headers=first.headers, json={"role": "AGENT"}
    )
    assert response.status_code == 200
    assert_problem(await client.get("/users", headers=first.headers), 403)
    assert (await client.get("/users", headers=second.headers)).status_code == 200


async def test_admin_can_deactivate_themself_while_another_admin_remains(
    client: httpx.AsyncClient,
) -> None:
    first = await signup(client, organization="Leaving")
    second = await add_user(client, first, "ADMIN")
    response = await client.patch(
        f"/users/{first.id}", headers=first.headers, json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert_problem(await client.get("/users/me", headers=first.headers), 401)
    listed = (await client.get("/users", headers=second.headers)).json()["items"]
    assert {u["email"]: u["is_active"] for u in listed} == {first.email: False, second.email: True}


async def test_deactivated_admin_does_not_count_as_the_remaining_admin(
    client: httpx.AsyncClient,
) -> None:
    first = await signup(client, organization="Inactive admin")
    second = await add_user(client, first, "ADMIN")
    deactivated = await client.patch(
        f"/users/{second.id}", headers=first.headers, json={"is_active": False}
    )
    assert deactivated.status_code == 200
    assert_problem(
        await client.patch(f"/users/{first.id}", headers=first.headers, json={"role": "AGENT"}), 409
    )


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Empty patch")
    agent = await add_user(client, admin, "AGENT")
    response = await client.patch(f"/users/{agent.id}", headers=admin.headers, json={})
    assert response.status_code == 200
    assert response.json() == agent.user
