"""What a newcomer meets first: the bare address, a token pasted without its scheme, a body
left out."""

from __future__ import annotations

import httpx

from tests.conftest import signup


async def test_root_redirects_to_swagger_ui(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/docs"
    assert (await client.get("/", follow_redirects=True)).status_code == 200


async def test_token_without_bearer_is_told_to_add_it(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.get("/users/me", headers={"Authorization": account.access_token})
    assert response.status_code == 401
    assert response.json()["detail"] == "Send the token as 'Authorization: Bearer <access_token>'"
    assert response.headers["www-authenticate"] == "Bearer"
    # No header at all is still "not signed in"; a bearer token still works.
    assert (await client.get("/users/me")).json()["detail"] == "Not signed in"
    assert (await client.get("/users/me", headers=account.headers)).status_code == 200


async def test_missing_body_names_the_required_fields(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    response = await client.post("/auth/logout", headers=account.headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"loc": ["body", "refresh_token"], "msg": "Field required"}
    ]
    response = await client.post("/auth/signup")
    assert [e["loc"] for e in response.json()["errors"]] == [
        ["body", "email"],
        ["body", "password"],
    ]
