"""Security hygiene that tests/api/test_ops.py does not cover: CORS answers only the
configured origins (and nothing at all when none are configured), and an unexpected error
leaves as a bare problem+json 500, with no stack trace and nothing of the exception."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError

from notes_api.notes import service as notes_service
from tests.conftest import PASSWORD, client_for, make_settings, running_app, signup

ALLOWED = "https://app.example"
OTHER = "https://evil.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
}


@pytest.fixture
async def cors_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, cors_origins=[ALLOWED])
    async with running_app(settings) as app, client_for(app) as client:
        yield client


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_preflight_from_the_configured_origin_is_answered(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.options("/notes", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {
        h.strip() for h in allowed_headers.split(",")
    }
    # Bearer tokens, not cookies: credentials are never allowed cross-origin.
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_from_another_origin_is_refused_without_cors_headers(
    cors_client: httpx.AsyncClient,
) -> None:
    for origin in (OTHER, "https://app.example.evil.test", "null", ALLOWED + ":8443"):
        response = await cors_client.options("/notes", headers={"Origin": origin, **PREFLIGHT})
        assert response.status_code == 400, origin
        assert "access-control-allow-origin" not in response.headers, origin


async def test_preflight_for_a_method_not_allowed_is_refused(
    cors_client: httpx.AsyncClient,
) -> None:
    response = await cors_client.options(
        "/notes", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "PUT"}
    )
    assert response.status_code == 400


async def test_simple_request_carries_cors_headers_only_for_the_configured_origin(
    cors_client: httpx.AsyncClient,
) -> None:
    account = await signup(cors_client)
    ours = await cors_client.get("/notes", headers={**account.headers, "Origin": ALLOWED})
    assert ours.status_code == 200
    assert ours.headers["access-control-allow-origin"] == ALLOWED
    exposed = ours.headers["access-control-expose-headers"].lower()
    assert "location" in exposed and "retry-after" in exposed
    theirs = await cors_client.get("/notes", headers={**account.headers, "Origin": OTHER})
    # CORS is the browser's to enforce: the answer stands, without a grant for that origin.
    assert theirs.status_code == 200
    assert "access-control-allow-origin" not in theirs.headers
    assert "access-control-allow-credentials" not in theirs.headers


async def test_without_configured_origins_there_are_no_cors_headers(
    client: httpx.AsyncClient,
) -> None:
    preflight = await client.options("/notes", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert cors_headers(preflight) == {}
    assert preflight.status_code == 405
    account = await signup(client)
    simple = await client.get("/notes", headers={**account.headers, "Origin": ALLOWED})
    assert simple.status_code == 200
    assert cors_headers(simple) == {}


SECRET = "password=hunter2 at /srv/notes_api/secret.py line 42"


def unraised_client(app: FastAPI) -> httpx.AsyncClient:
    """As a real server does: send the 500, and do not raise the error in the client."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize("app_env", ["development", "production"])
async def test_an_unexpected_error_is_a_bare_500_problem(
    database_url: str, monkeypatch: pytest.MonkeyPatch, app_env: str
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(SECRET)

    monkeypatch.setattr(notes_service, "list_notes", broken)
    settings = make_settings(database_url, app_env=app_env, jwt_secret="x" * 40)
    async with running_app(settings) as app, unraised_client(app) as client:
        account = await signup(client)
        response = await client.get("/notes", headers=account.headers)
        after = await client.get("/users/me", headers=account.headers)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "Something went wrong on our side",
    }
    for leak in ("Traceback", "RuntimeError", "hunter2", "secret.py", "notes_api", 'File "'):
        assert leak not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-request-id"]
    assert after.status_code == 200  # one broken request does not break the next


@pytest.mark.parametrize(
    ("error", "status"), [(ProgrammingError, 500), (IntegrityError, 409)], ids=["500", "409"]
)
async def test_an_error_inside_the_database_layer_is_a_bare_problem(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, error: type[DBAPIError], status: int
) -> None:
    """A constraint's refusal is a conflict (409); anything else a 500; neither tells more."""

    async def broken(*args: object, **kwargs: object) -> None:
        raise error("INSERT INTO notes -- " + SECRET, {"raw_text": SECRET}, Exception())

    async with unraised_client(app) as client:
        account = await signup(client)
        monkeypatch.setattr(notes_service, "create_note", broken)
        response = await client.post("/notes", headers=account.headers, json={"raw_text": "x"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    for leak in ("INSERT", "hunter2", error.__name__, "Traceback"):
        assert leak not in response.text


async def test_an_unexpected_errors_log_line_has_the_request_id_and_no_secrets(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        password = "hunter2-in-a-local"  # what a traceback with locals would print
        raise RuntimeError(f"boom ({len(password)})")

    monkeypatch.setattr(notes_service, "list_notes", broken)
    settings = make_settings(
        database_url, app_env="production", jwt_secret="x" * 40, log_format="json"
    )
    async with running_app(settings) as app, unraised_client(app) as client:
        account = await signup(client)
        capsys.readouterr()
        headers = {**account.headers, "X-Request-ID": "trace-me-123"}
        response = await client.get("/notes", headers=headers)
    assert response.headers["x-request-id"] == "trace-me-123"
    logged = capsys.readouterr().err
    lines = [json.loads(line) for line in logged.splitlines() if "http.unhandled" in line]
    assert len(lines) == 1, logged[-2000:]
    line = lines[0]
    assert line["request_id"] == "trace-me-123"  # the log line a user's report can be found by
    assert line["error"] == "RuntimeError"
    for secret in ("hunter2", account.access_token, account.refresh_token, PASSWORD):
        assert secret not in logged
    assert len(logged) < 20_000


TRACEBACK_PROBE = """
import structlog
from notes_api.core.logging import configure_logging

configure_logging("json")

def login(password):
    raise RuntimeError("boom")

try:
    login("hunter2-in-a-local")
except RuntimeError:
    structlog.get_logger("probe").error("http.unhandled", exc_info=True)
"""


def test_json_logs_carry_tracebacks_without_local_variables() -> None:
    """In a fresh process, as in production: the frames are logged, their locals are not."""
    done = subprocess.run(
        [sys.executable, "-c", TRACEBACK_PROBE], capture_output=True, text=True, timeout=60
    )
    line = json.loads(done.stderr.strip().splitlines()[-1])
    frames = line["exception"][0]["frames"]
    assert any(frame["name"] == "login" for frame in frames)
    assert all("locals" not in frame for frame in frames)
    assert "hunter2" not in done.stderr
