"""Managing endpoints: admins only, their organization only; secrets shown once; a bounded
number per organization; URLs that could reach the server's own network refused."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.models import utcnow
from notes_api.webhooks.models import WebhookDelivery
from notes_api.webhooks.targets import TargetRefused, resolve
from tests.conftest import (
    Account,
    add_user,
    client_for,
    create_note,
    make_settings,
    running_app,
    serve,
    signup,
)
from tests.webhooks.conftest import FAST_RETRIES, deliveries, eventually, register
from tests.webhooks.receiver import Receiver

PUBLIC_URL = "https://crm.example.com/hooks"


def _routes(endpoint_id: str, delivery_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    return [
        ("GET", f"/webhooks/{endpoint_id}", None),
        ("PATCH", f"/webhooks/{endpoint_id}", {"enabled": False}),
        ("POST", f"/webhooks/{endpoint_id}/rotate-secret", None),
        ("GET", f"/webhooks/{endpoint_id}/deliveries", None),
        ("POST", f"/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend", None),
        ("DELETE", f"/webhooks/{endpoint_id}", None),
    ]


async def test_agents_get_403_on_every_webhook_route(
    api: httpx.AsyncClient, admin: Account
) -> None:
    agent = await add_user(api, admin, "AGENT")
    endpoint = await register(api, admin, PUBLIC_URL)
    calls = [
        ("POST", "/webhooks", {"url": PUBLIC_URL, "events": ["note.done"]}),
        ("GET", "/webhooks", None),
    ]
    calls += _routes(endpoint["id"], str(uuid.uuid4()))
    for method, path, body in calls:
        answer = await api.request(method, path, headers=agent.headers, json=body)
        assert answer.status_code == 403, (method, path, answer.text)


async def test_another_organizations_endpoint_is_404_and_never_listed(
    api: httpx.AsyncClient, admin: Account
) -> None:
    endpoint = await register(api, admin, PUBLIC_URL)
    stranger = await signup(api, organization="Other")
    for method, path, body in _routes(endpoint["id"], str(uuid.uuid4())):
        answer = await api.request(method, path, headers=stranger.headers, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    assert (await api.get("/webhooks", headers=stranger.headers)).json()["items"] == []
    mine = (await api.get(f"/webhooks/{endpoint['id']}", headers=admin.headers)).json()
    assert mine["enabled"] is True  # the stranger's PATCH changed nothing


async def test_the_secret_is_shown_only_at_creation_and_rotation(
    api: httpx.AsyncClient, admin: Account
) -> None:
    endpoint = await register(api, admin, PUBLIC_URL, ["note.done", "note.failed"])
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) >= 6 + 32
    assert endpoint["events"] == ["note.done", "note.failed"]
    shown = await api.get(f"/webhooks/{endpoint['id']}", headers=admin.headers)
    listed = await api.get("/webhooks", headers=admin.headers)
    assert "secret" not in shown.json() and "secret" not in listed.json()["items"][0]
    assert endpoint["secret"] not in shown.text + listed.text
    changed = await api.patch(
        f"/webhooks/{endpoint['id']}", headers=admin.headers, json={"events": ["note.queued"]}
    )
    assert changed.json()["events"] == ["note.queued"] and "secret" not in changed.json()
    gone = await api.delete(f"/webhooks/{endpoint['id']}", headers=admin.headers)
    assert gone.status_code == 204
    assert (await api.get(f"/webhooks/{endpoint['id']}", headers=admin.headers)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": PUBLIC_URL, "events": []},
        {"url": PUBLIC_URL, "events": ["note.exploded"]},
        {"url": PUBLIC_URL, "events": ["note.done", "note.done"]},
        {"url": PUBLIC_URL, "events": ["note.done"], "secret": "whsec_mine"},
        {"url": "not a url", "events": ["note.done"]},
    ],
)
async def test_bad_endpoints_are_422(
    api: httpx.AsyncClient, admin: Account, body: dict[str, object]
) -> None:
    answer = await api.post("/webhooks", headers=admin.headers, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_an_organization_has_a_bounded_number_of_endpoints(database_url: str) -> None:
    settings = make_settings(database_url, webhook_max_endpoints=2)
    async with running_app(settings) as app, client_for(app) as api:
        admin = await signup(api, organization="Acme")
        await register(api, admin, PUBLIC_URL)
        await register(api, admin, PUBLIC_URL)
        third = await api.post(
            "/webhooks", headers=admin.headers, json={"url": PUBLIC_URL, "events": ["note.done"]}
        )
        assert third.status_code == 409


async def _add_endpoint(strict: tuple[FastAPI, httpx.AsyncClient], url: str) -> httpx.Response:
    """A new organization's admin asks the strict service for an endpoint at `url`."""
    _, api = strict
    admin = await signup(api, organization="Acme")
    body = {"url": url, "events": ["note.done"]}
    return await api.post("/webhooks", headers=admin.headers, json=body)


@pytest.fixture
async def strict(database_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The production rule: https only, and only public addresses."""
    settings = make_settings(database_url, **{**FAST_RETRIES, "webhook_allow_private": False})
    async with (
        running_app(settings) as app,
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url) as api,
    ):
        yield app, api


@pytest.mark.parametrize(
    "url",
    [
        "http://crm.example.com/hooks",  # not https
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://0.0.0.0/hooks",
        "https://224.0.0.1/hooks",
        "https://user:pass@crm.example.com/hooks",
    ],
)
async def test_urls_that_could_reach_private_networks_are_refused(
    strict: tuple[FastAPI, httpx.AsyncClient], url: str
) -> None:
    answer = await _add_endpoint(strict, url)
    assert answer.status_code == 422, answer.text


# Each IPv6 form that carries an IPv4 address, around a private one (the cloud metadata
# service, 169.254.169.254) and around a public one (8.8.8.8): judged by the IPv4 inside.
EMBEDDED = {
    "NAT64 64:ff9b::/96": ("64:ff9b::a9fe:a9fe", "64:ff9b::808:808"),
    "6to4 2002::/16": ("2002:a9fe:a9fe::1", "2002:808:808::1"),
    # Teredo: server 65.54.227.120, client (stored inverted) 169.254.169.254 or 8.8.8.8.
    "Teredo 2001::/32": ("2001:0:4136:e378:8000:63bf:5601:5601", "2001:0:4136:e378::f7f7:f7f7"),
    "IPv4-compatible ::a.b.c.d": ("::169.254.169.254", "::8.8.8.8"),
    "IPv4-mapped ::ffff:a.b.c.d": ("::ffff:169.254.169.254", "::ffff:8.8.8.8"),
    "IPv4-translated ::ffff:0:a.b.c.d": ("::ffff:0:169.254.169.254", "::ffff:0:8.8.8.8"),
}


@pytest.mark.parametrize("form", sorted(EMBEDDED))
async def test_ipv6_forms_embedding_a_private_ipv4_are_refused(
    strict: tuple[FastAPI, httpx.AsyncClient], form: str
) -> None:
    private, public = EMBEDDED[form]
    _, api = strict
    admin = await signup(api, organization="Acme")
    refused = await api.post(
        "/webhooks",
        headers=admin.headers,
        json={"url": f"https://[{private}]/latest/meta-data/", "events": ["note.done"]},
    )
    assert refused.status_code == 422, refused.text
    with pytest.raises(TargetRefused):
        await resolve(f"https://[{private}]/latest/meta-data/", allow_private=False)
    accepted = await api.post(
        "/webhooks",
        headers=admin.headers,
        json={"url": f"https://[{public}]/hooks", "events": ["note.done"]},
    )
    assert accepted.status_code == 201, accepted.text
    target = await resolve(f"https://[{public}]/hooks", allow_private=False)
    assert ipaddress.ip_address(target.url.host) == ipaddress.ip_address(public)


async def test_nat64_local_use_prefix_is_refused_whatever_it_embeds() -> None:
    # RFC 8215's 64:ff9b:1::/48: where the IPv4 sits depends on each network's prefix length.
    for url in ("https://[64:ff9b:1::a9fe:a9fe]/", "https://[64:ff9b:1::808:808]/"):
        with pytest.raises(TargetRefused):
            await resolve(url, allow_private=False)


@pytest.mark.parametrize(
    "url", ["http://crm.example.com/hooks", "https://10.1.2.3/hooks", "https://[::1]/hooks"]
)
async def test_a_refusal_that_local_development_may_lift_names_the_setting(
    strict: tuple[FastAPI, httpx.AsyncClient], url: str
) -> None:
    answer = await _add_endpoint(strict, url)
    assert answer.status_code == 422, answer.text
    assert "WEBHOOK_ALLOW_PRIVATE=true" in answer.json()["detail"]
    assert "WEBHOOK_ALLOW_PRIVATE=true" in answer.json()["errors"][0]["msg"]


async def test_a_host_name_resolving_to_loopback_is_refused_at_delivery(
    strict: tuple[FastAPI, httpx.AsyncClient], receiver: Receiver
) -> None:
    _, api = strict
    admin = await signup(api, organization="Acme")
    # A name is accepted when registered (DNS may change); what it resolves to is checked
    # at each delivery.
    endpoint = await register(
        api, admin, f"https://localhost:{receiver.port}/hooks", ["note.queued"]
    )
    await create_note(api, admin, "Must not reach localhost. Two sentences.")

    async def refused() -> bool:
        log = await deliveries(api, admin, endpoint["id"])
        return bool(log) and str(log[0]["error"]).startswith("refused")

    await eventually(refused)
    await asyncio.sleep(0.5)
    assert receiver.received == []
    log = await deliveries(api, admin, endpoint["id"])
    assert len(log) == 1  # not retried
    # The log says why, not where the name led: it would map the server's own network.
    assert log[0]["error"] == (
        "refused: localhost resolves to a non-public address"
        " (WEBHOOK_ALLOW_PRIVATE=true allows it for local development)"
    )


async def test_resolve_checks_every_address_and_pins_the_checked_one() -> None:
    with pytest.raises(TargetRefused):
        await resolve("https://localhost/hooks", allow_private=False)
    with pytest.raises(TargetRefused):
        await resolve("https://127.0.0.1/hooks", allow_private=False)
    public = await resolve("https://93.184.215.14:8443/x?y=1", allow_private=False)
    assert str(public.url) == "https://93.184.215.14:8443/x?y=1"
    local = await resolve("http://localhost:8080/hooks", allow_private=True)
    assert local.url.host in {"127.0.0.1", "::1"}
    assert (local.host_header, local.sni_hostname) == ("localhost:8080", "localhost")


def test_settings_default_to_refusing_private_targets() -> None:
    assert Settings(_env_file=None).webhook_allow_private is False  # type: ignore[call-arg]


async def test_the_delivery_log_pages_newest_first_by_cursor(
    api: httpx.AsyncClient, admin: Account, db: Database
) -> None:
    """Attempts logged in one instant still page in a fixed order (the id breaks the tie),
    each once, newest first; the last page has no cursor."""
    endpoint = await register(api, admin, PUBLIC_URL)
    at = utcnow()
    async with db.session() as session:
        for attempt in range(5):
            session.add(
                WebhookDelivery(
                    endpoint_id=uuid.UUID(endpoint["id"]),
                    event_id=1,
                    type="note.done",
                    attempt=attempt + 1,
                    created_at=at if attempt < 3 else at + timedelta(seconds=1),
                )
            )
    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = await api.get(
            f"/webhooks/{endpoint['id']}/deliveries", headers=admin.headers, params=params
        )
        assert answer.status_code == 200, answer.text
        pages.append([d["attempt"] for d in answer.json()["items"]])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2, 1]
    seen = [attempt for page in pages for attempt in page]
    assert sorted(seen) == [1, 2, 3, 4, 5]
    assert set(seen[:2]) == {4, 5}  # the later second first
