"""The event streams' tests run against a real server: `served` is the app (with the
module's own `settings`) behind uvicorn on a free port, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from notes_api.core.config import Settings
from tests.conftest import running_app, serve


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, str, httpx.AsyncClient]]:
    async with (
        running_app(settings) as app,
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url) as client,
    ):
        yield app, base_url, client
