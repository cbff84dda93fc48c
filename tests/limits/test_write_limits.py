"""Write limits per user and per organization, and the daily summaries quota, through the
API on SQLite and Postgres: the RateLimit headers on every limited answer, 429 with
Retry-After past a limit, and only accepted writes spend anything: a refusal (404, 409, 422,
429, a deactivated caller) spends nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from notes_api.core.config import Settings
from tests.conftest import add_user, client_for, make_settings, running_app, signup

POLICY = re.compile(r'"(\w+)";q=(\d+);w=(\d+)')
STANDING = re.compile(r'"(\w+)";r=(\d+);t=(\d+)')


def _policies(response: httpx.Response) -> dict[str, tuple[int, int]]:
    header = response.headers["RateLimit-Policy"]
    return {name: (int(q), int(w)) for name, q, w in POLICY.findall(header)}


def _standing(response: httpx.Response) -> dict[str, tuple[int, int]]:
    header = response.headers["RateLimit"]
    return {name: (int(r), int(t)) for name, r, t in STANDING.findall(header)}


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as app, client_for(app) as client:
        yield client


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url,
        rate_limit_user_writes_per_minute=3,
        rate_limit_org_writes_per_minute=5,
    )
    async for client in _client(settings):
        yield client


async def _post(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post("/notes", headers=headers, json={"raw_text": "A note.", **body})


async def test_accepted_writes_say_what_is_left(limited: httpx.AsyncClient) -> None:
    admin = await signup(limited, organization="Acme")
    left = []
    for _ in range(3):
        response = await _post(limited, admin.headers)
        assert response.status_code == 202, response.text
        assert _policies(response) == {"user": (3, 60), "org": (5, 60)}
        standing = _standing(response)
        assert 1 <= standing["user"][1] <= 60
        left.append((standing["user"][0], standing["org"][0]))
    assert left == [(2, 4), (1, 3), (0, 2)]


async def test_past_the_user_limit_429_with_retry_after_and_headers(
    limited: httpx.AsyncClient,
) -> None:
    admin = await signup(limited, organization="Acme")
    for _ in range(3):
        assert (await _post(limited, admin.headers)).status_code == 202
    refused = await _post(limited, admin.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["status"] == 429
    assert "user" in refused.json()["detail"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert _standing(refused)["user"] == (0, retry_after)
    assert _policies(refused)["user"] == (3, 60)
    # Nothing was saved for the refused request.
    listing = await limited.get("/notes", headers=admin.headers)
    assert len(listing.json()["items"]) == 3


async def test_edits_and_retries_count_too(limited: httpx.AsyncClient) -> None:
    admin = await signup(limited, organization="Acme")
    note = (await _post(limited, admin.headers)).json()
    edited = await limited.patch(
        f"/notes/{note['id']}", headers=admin.headers, json={"title": "New title"}
    )
    assert edited.status_code == 200
    assert _standing(edited)["user"][0] == 1
    retried = await limited.post(f"/notes/{note['id']}/retry", headers=admin.headers)
    assert retried.status_code == 409  # the note is not failed: refused, and not counted
    again = await limited.patch(f"/notes/{note['id']}", headers=admin.headers, json={"title": "3"})
    assert again.status_code == 200
    assert _standing(again)["user"][0] == 0
    refused = await limited.patch(
        f"/notes/{note['id']}", headers=admin.headers, json={"title": "4"}
    )
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    # The refused edit did not happen.
    shown = await limited.get(f"/notes/{note['id']}", headers=admin.headers)
    assert shown.json()["title"] == "3"


async def test_refused_writes_spend_nothing(limited: httpx.AsyncClient) -> None:
    admin = await signup(limited, organization="Acme")
    agent = await add_user(limited, admin, "AGENT")
    missing = "00000000-0000-4000-8000-000000000000"
    for _ in range(20):
        assert (
            await limited.patch(f"/notes/{missing}", headers=agent.headers, json={"title": "x"})
        ).status_code == 404
        assert (
            await limited.post(f"/notes/{missing}/retry", headers=agent.headers)
        ).status_code == 404
        assert (await limited.post("/notes", headers=agent.headers, json={})).status_code == 422
    # Neither the agent's limit nor its organization's was touched.
    accepted = await _post(limited, agent.headers)
    assert accepted.status_code == 202
    assert _standing(accepted)["user"][0] == 2
    assert _standing(accepted)["org"][0] == 4


async def test_a_deactivated_callers_writes_spend_nothing(limited: httpx.AsyncClient) -> None:
    admin = await signup(limited, organization="Acme")
    agent = await add_user(limited, admin, "AGENT")
    off = await limited.patch(
        f"/users/{agent.id}", headers=admin.headers, json={"is_active": False}
    )
    assert off.status_code == 200
    for _ in range(10):
        assert (await _post(limited, agent.headers)).status_code == 401
    accepted = await _post(limited, admin.headers)
    assert _standing(accepted)["org"][0] == 4


async def test_the_organization_limit_is_shared_by_its_users_and_no_one_else(
    limited: httpx.AsyncClient,
) -> None:
    admin = await signup(limited, organization="Acme")
    agent = await add_user(limited, admin, "AGENT")
    outsider = await signup(limited, organization="Other")
    statuses = [(await _post(limited, who.headers)).status_code for who in [admin, agent] * 3]
    assert statuses == [202, 202, 202, 202, 202, 429]  # 5 a minute for the organization
    refused = await _post(limited, agent.headers)
    assert refused.status_code == 429
    assert "organization" in refused.json()["detail"]
    assert (await _post(limited, outsider.headers)).status_code == 202


async def test_a_user_over_its_own_limit_does_not_spend_its_organizations(
    limited: httpx.AsyncClient,
) -> None:
    admin = await signup(limited, organization="Acme")
    agent = await add_user(limited, admin, "AGENT")
    for _ in range(3):
        assert (await _post(limited, agent.headers)).status_code == 202
    for _ in range(10):
        assert (await _post(limited, agent.headers)).status_code == 429
    # The organization has 2 of its 5 left: the agent's refusals took none of them.
    accepted = await _post(limited, admin.headers)
    assert _standing(accepted)["org"][0] == 1


async def test_reads_carry_no_limit_headers(limited: httpx.AsyncClient) -> None:
    admin = await signup(limited, organization="Acme")
    response = await limited.get("/notes", headers=admin.headers)
    assert response.status_code == 200
    assert "RateLimit" not in response.headers


async def test_summaries_per_day_apply_only_with_a_paid_summarizer(database_url: str) -> None:
    settings = make_settings(
        database_url,
        summarizer="openai",
        openai_base_url="http://127.0.0.1:9/v1",
        summaries_per_org_per_day=2,
    )
    async for client in _client(settings):
        admin = await signup(client, organization="Acme")
        first = await _post(client, admin.headers)
        assert _policies(first) == {"model": (2, 86400)}  # the per-minute limits are off (0)
        # A title-only edit queues no summary: it spends none of the quota.
        titled = await client.patch(
            f"/notes/{first.json()['id']}", headers=admin.headers, json={"title": "Renamed"}
        )
        assert titled.status_code == 200
        assert "RateLimit" not in titled.headers
        assert (await _post(client, admin.headers)).status_code == 202
        refused = await _post(client, admin.headers)
        assert refused.status_code == 429
        assert "summaries" in refused.json()["detail"]
        # Until the next UTC midnight.
        assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
        # A new text is a new summary: refused too, and the note keeps its text.
        edited = await client.patch(
            f"/notes/{first.json()['id']}", headers=admin.headers, json={"raw_text": "New."}
        )
        assert edited.status_code == 429
        shown = await client.get(f"/notes/{first.json()['id']}", headers=admin.headers)
        assert shown.json()["raw_text"] == "A note."
    free = make_settings(database_url, summaries_per_org_per_day=2)  # extractive: no quota
    async for client in _client(free):
        admin = await signup(client, organization="Free")
        for _ in range(3):
            response = await _post(client, admin.headers)
            assert response.status_code == 202
            assert "RateLimit-Policy" not in response.headers
