"""Health, readiness, metrics, the API documents, and the headers on every response."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from notes_api.core.migrations import head_revision
from tests.conftest import client_for, create_note, make_settings, running_app, signup

CONTRACT_PATHS = {
    "/auth/signup": {"post"},
    "/auth/login": {"post"},
    "/auth/token": {"post"},
    "/auth/refresh": {"post"},
    "/auth/logout": {"post"},
    "/users/me": {"get"},
    "/users": {"get", "post"},
    "/users/{user_id}": {"patch"},
    "/notes": {"get", "post"},
    "/notes/{note_id}": {"get", "patch", "delete"},
    "/notes/{note_id}/retry": {"post"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
}


async def test_healthz_is_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_at_migration_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["migration"] == head_revision()
    assert body["database"] in {"sqlite", "postgresql"}


async def test_readyz_is_503_problem_on_an_unmigrated_database(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'empty.db'}")
    async with running_app(settings) as app, client_for(app) as client:
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert ready.json()["status"] == 503
    assert "retry-after" in ready.headers
    assert health.status_code == 200  # alive, just not ready


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = make_settings("postgresql://nobody@127.0.0.1:1/nothing", db_pool_timeout=2)
    async with running_app(settings) as app, client_for(app) as client:
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert ready.status_code == 503
    assert ready.headers["content-type"].startswith("application/problem+json")
    assert metrics.status_code == 200


async def test_metrics_is_prometheus_text_with_http_and_queue_series(
    client: httpx.AsyncClient,
) -> None:
    account = await signup(client)
    await create_note(client, account)
    await client.get("/notes", headers=account.headers)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE http_requests_total counter" in text
    assert 'http_requests_total{method="GET",route="/notes",status="200"}' in text
    assert "jobs_queue_depth" in text
    assert 'jobs_queue_depth{status="queued"} 1.0' in text


async def test_metrics_labels_routes_by_template_not_by_id(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    note = await create_note(client, account)
    await client.get(f"/notes/{note['id']}", headers=account.headers)
    text = (await client.get("/metrics")).text
    assert 'route="/notes/{note_id}"' in text
    assert note["id"] not in text


async def test_openapi_lists_every_contract_path(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, methods in CONTRACT_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path


async def test_openapi_documents_problem_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "Problem" in spec["components"]["schemas"]
    get_note = spec["paths"]["/notes/{note_id}"]["get"]["responses"]
    assert set(get_note["404"]["content"]) == {"application/problem+json"}


async def test_each_error_status_has_its_own_example(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    seen: dict[str, set[str]] = {}
    for path in spec["paths"].values():
        for operation in path.values():
            for code, response in operation["responses"].items():
                if int(code) < 400:
                    continue
                assert set(response["content"]) == {"application/problem+json"}
                example = response["content"]["application/problem+json"]["example"]
                assert example["status"] == int(code)
                seen.setdefault(code, set()).add(example["title"])
    assert seen["401"] == {"Unauthorized"}
    assert seen["404"] == {"Not found"}
    assert seen["409"] == {"Conflict"}
    assert seen["422"] == {"Invalid input"}


async def test_every_operation_is_listed_under_one_tag(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert len(operation.get("tags", [])) == 1, f"{method.upper()} {path}"


async def test_docs_serves_swagger_ui_from_its_own_files_under_a_strict_csp(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger" in response.text.lower()
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "http" not in csp  # no other origin
    assert "http" not in response.text.replace('lang="en"', "")
    assert response.headers["x-content-type-options"] == "nosniff"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js", "notes.css"):
        asset = await client.get(f"/docs/static/{name}")
        assert asset.status_code == 200, name
        assert len(asset.content) > 100


@pytest.mark.parametrize("path", ["/healthz", "/notes", "/nope", "/openapi.json"])
async def test_security_headers_on_responses(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"]
    if path != "/openapi.json":
        assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_security_headers_on_api_success_and_413(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    created = await client.post("/notes", headers=account.headers, json={"raw_text": "x"})
    too_big = await client.post(
        "/notes",
        headers={**account.headers, "Content-Type": "application/json"},
        content=b" " * (2 * 1024 * 1024),
    )
    for response in (created, too_big):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"]
        assert "content-security-policy" in response.headers
        assert response.headers["x-request-id"]


@pytest.mark.parametrize("request_id", ["abc-123", "req.2024:07_x", "a" * 64])
async def test_sane_request_id_is_echoed(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["a" * 65, "has space", "<script>", "semi;colon", "caf\u00e9", ""],
    ids=["too-long", "space", "html", "semicolon", "non-ascii", "empty"],
)
async def test_insane_request_id_is_replaced(client: httpx.AsyncClient, request_id: str) -> None:
    headers = [(b"x-request-id", request_id.encode("latin-1"))]
    response = await client.get("/healthz", headers=headers)
    replaced = response.headers["x-request-id"]
    assert replaced != request_id
    assert replaced.isalnum()
    assert 16 <= len(replaced) <= 64


async def test_missing_request_id_is_generated_per_request(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
