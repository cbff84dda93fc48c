from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from notes_api.core.config import Settings
from tests.conftest import Account, client_for, make_settings, running_app, signup
from tests.webhooks.receiver import Receiver

FAST_RETRIES = {
    "worker_embedded": True,
    "webhook_allow_private": True,
    "webhook_retry_base": 0.2,
    "webhook_retry_max": 0.4,
    "webhook_timeout": 2.0,
    # Longer than a delivery's timeout with room to spare: on a starved machine a 2 s lease
    # ran out during a 2 s timed-out delivery, and the attempt read "lease expired".
    "job_lease_seconds": 10.0,
}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, **FAST_RETRIES)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI
    async with running_app(settings) as app, client_for(app) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
async def admin(api: httpx.AsyncClient) -> Account:
    return await signup(api, organization="Acme")


async def register(
    api: httpx.AsyncClient, admin: Account, url: str, events: list[str] | None = None
) -> dict[str, Any]:
    body = {"url": url, "events": events or ["note.queued", "note.done"]}
    created = await api.post("/webhooks", headers=admin.headers, json=body)
    assert created.status_code == 201, created.text
    endpoint: dict[str, Any] = created.json()
    return endpoint


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


async def deliveries(
    api: httpx.AsyncClient, admin: Account, endpoint_id: str
) -> list[dict[str, Any]]:
    page = await api.get(f"/webhooks/{endpoint_id}/deliveries?limit=100", headers=admin.headers)
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items
