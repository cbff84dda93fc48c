"""Swagger UI at /docs in a real headless Chromium against a real server, with every request
to another origin blocked: the page must render and work from the service's files alone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import PASSWORD, serve, signup

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it as root)",
)


@dataclass
class Browsed:
    base_url: str
    page: object
    elsewhere: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@pytest.fixture
async def docs(app: FastAPI) -> AsyncIterator[Browsed]:
    from playwright.async_api import Route, async_playwright

    async with serve(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            context = await browser.new_context()
            page = await context.new_page()
            browsed = Browsed(base_url, page)

            async def only_the_service(route: Route) -> None:
                if route.request.url.startswith(base_url + "/"):
                    await route.continue_()
                else:
                    browsed.elsewhere.append(route.request.url)
                    await route.abort()

            await context.route("**/*", only_the_service)
            page.on("console", lambda message: browsed.console.append(message.text))
            page.on("pageerror", lambda error: browsed.console.append(str(error)))
            yield browsed
        finally:
            await browser.close()


async def test_docs_render_every_operation_with_no_request_to_another_origin(
    docs: Browsed, client: httpx.AsyncClient
) -> None:
    from playwright.async_api import Page, expect

    page = docs.page
    assert isinstance(page, Page)
    await page.goto(f"{docs.base_url}/docs")
    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible(timeout=20_000)
    spec = (await client.get("/openapi.json")).json()
    documented = sum(len(item) for item in spec["paths"].values())
    await expect(operations).to_have_count(documented)
    await expect(page.locator(".opblock-summary-path", has_text="/users/me")).to_have_count(1)
    assert docs.elsewhere == []
    assert not [line for line in docs.console if "Content Security Policy" in line]


async def test_authorize_asks_only_for_email_and_password_and_shows_why_it_failed(
    docs: Browsed, client: httpx.AsyncClient
) -> None:
    from playwright.async_api import Page, expect

    account = await signup(client)
    page = docs.page
    assert isinstance(page, Page)
    await page.goto(f"{docs.base_url}/docs")
    await page.locator("button.authorize").first.click()
    dialog = page.locator(".auth-container")
    await expect(dialog.locator("#oauth_username")).to_be_visible(timeout=20_000)
    await expect(dialog.locator("#oauth_password")).to_be_visible()
    for unused in ("#client_id_password", "#client_secret_password", "#password_type"):
        await expect(dialog.locator(unused)).to_be_hidden()

    await dialog.locator("#oauth_username").fill(account.email)
    await dialog.locator("#oauth_password").fill("not the password")
    await dialog.locator("button.authorize").click()
    await expect(dialog.locator(".errors")).to_contain_text(
        "Incorrect email or password", timeout=10_000
    )

    await dialog.locator("#oauth_password").fill(PASSWORD)
    await dialog.locator("button.authorize").click()
    await expect(dialog.locator("button", has_text="Logout")).to_be_visible(timeout=10_000)
    await expect(dialog).to_contain_text("Authorized")
    assert docs.elsewhere == []
