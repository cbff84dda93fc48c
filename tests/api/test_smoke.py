from __future__ import annotations

import httpx

from tests.conftest import create_note, signup


async def test_signup_creates_agent_in_default_organization(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    assert account.user["role"] == "AGENT"
    me = await client.get("/users/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json()["email"] == account.email


async def test_note_is_accepted_queued_with_location(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    note = await create_note(client, account)
    assert note["status"] == "queued"
    assert note["summary"] is None
