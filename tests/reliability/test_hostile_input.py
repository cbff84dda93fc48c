"""Hostile input against a real uvicorn server, beyond what tests/api/test_errors.py covers:
oversized headers and URLs, request framing that smuggling relies on, absurd query values,
a stalled body, and connections that never finish their headers. Each must get a clear 4xx
quickly (or, for the last, not starve anyone else), never a 5xx or a hang.

The server's own limits: uvicorn with httptools (what `notes-api serve` runs) sets no limit
on header size, so the app refuses headers over 16 KiB (431) and URLs over 8 KiB (414);
httptools itself refuses malformed framing with a plain-text 400; h11 refuses over 16 KiB
with 400 on its own. Neither times out a request whose headers never end; `notes-api serve`
does (server.HeaderDeadline, tested in tests/security/test_bounded_work.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

import notes_api.main
from notes_api.server import SERVER_OPTIONS
from tests.conftest import PASSWORD, make_settings
from tests.reliability.harness import ThreadedServer

STALL_TIMEOUT = 1.0


@dataclass
class Served:
    base_url: str
    port: int
    parser: str
    headers: dict[str, str]  # an agent's
    admin_headers: dict[str, str]  # the admin of another organization


@pytest.fixture(scope="module", params=["httptools", "h11"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("hostile") / "notes.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(notes_api.main, "BODY_READ_TIMEOUT", STALL_TIMEOUT)
        app = notes_api.main.create_app(make_settings(f"sqlite:///{path}"))
    with ThreadedServer(app, http=request.param) as server:
        with httpx.Client(base_url=server.base_url) as client:
            email = f"hostile-{uuid.uuid4().hex[:8]}@example.com"
            signed = client.post("/auth/signup", json={"email": email, "password": PASSWORD})
            token = signed.json()["access_token"]
            admin = client.post(
                "/auth/signup",
                json={"email": f"admin-{email}", "password": PASSWORD, "organization_name": email},
            ).json()
            assert admin["user"]["role"] == "ADMIN"
        yield Served(
            server.base_url,
            server.port,
            request.param,
            {"Authorization": f"Bearer {token}"},
            {"Authorization": f"Bearer {admin['access_token']}"},
        )


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=10) as client:
        yield client
        # Whatever was thrown at it, the server still answers.
        assert (await client.get("/healthz")).status_code == 200


RESET = -1  # the server cut the connection while the client was still sending


async def raw(served: Served, data: bytes, timeout: float = 5.0) -> tuple[int, bytes, float]:
    """Send bytes as they are; the status, the whole answer and how long it took. The
    server must answer and close within `timeout`."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            answer = await reader.read()  # until the server closes
    except ConnectionResetError:
        return RESET, b"", time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer, time.monotonic() - started


def request_bytes(head: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [head, "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_4xx(status: int, answer: bytes) -> None:
    assert 400 <= status < 500, answer[:300]
    if b"application/problem+json" in answer:  # the app answered, not the parser
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["status"] == status


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ------------------------------------------------------------------ headers and URLs


@pytest.mark.parametrize(
    "headers",
    [
        ["X-Big: " + "a" * 20_000],
        ["X-Big: " + "a" * 1_000_000],
        [f"X-{i}: a" for i in range(5_000)],
        ["Authorization: Bearer " + "a" * 30_000],
        ["Cookie: " + "; ".join(f"c{i}=v" for i in range(4_000))],
    ],
    ids=["20KiB", "1MiB", "5000-headers", "30KiB-token", "4000-cookies"],
)
async def test_oversized_headers_are_4xx(
    served: Served, http: httpx.AsyncClient, headers: list[str]
) -> None:
    status, answer, took = await raw(served, request_bytes("GET /notes HTTP/1.1", *headers))
    # h11 answers 400 and closes while a 1 MiB header is still arriving: a reset.
    assert status in (400, 431, RESET), answer[:300]
    if status != RESET:
        assert_4xx(status, answer)
    assert took < 3


async def test_headers_under_the_limit_are_served(served: Served, http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz", headers={"X-Padding": "a" * 14_000})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "/notes?q=" + "a" * 9_000,
        "/notes/" + "a" * 9_000,
        "/healthz?" + "&".join(f"p{i}=1" for i in range(3_000)),
        "/notes?q=" + "a" * 1_000_000,
    ],
    ids=["9KiB-query", "9KiB-path", "3000-params", "1MiB-query"],
)
async def test_oversized_urls_are_4xx(served: Served, http: httpx.AsyncClient, target: str) -> None:
    status, answer, took = await raw(served, request_bytes(f"GET {target} HTTP/1.1"))
    assert status in (400, 414, RESET), answer[:300]
    if status != RESET:
        assert_4xx(status, answer)
    assert took < 3


@pytest.mark.parametrize(
    "key", ["k" * 1_000, "k" * 10_000, "k" * 17_000], ids=["1KiB", "10KiB", "17KiB"]
)
async def test_overlong_idempotency_key_is_4xx_and_creates_nothing(
    served: Served, http: httpx.AsyncClient, key: str
) -> None:
    before = await http.get("/notes", headers=served.headers)
    response = await http.post(
        "/notes", headers={**served.headers, "Idempotency-Key": key}, json={"raw_text": "x"}
    )
    assert_problem(response, 422 if len(key) < 16_000 else 431)
    after = await http.get("/notes", headers=served.headers)
    assert after.json() == before.json()


# ------------------------------------------------------------------ framing
# These requests carry a valid token and keep the connection open (HTTP/1.1 keep-alive): a
# parser that let one through would have the app answer it (401 without a token would hide
# that), and anything smuggled behind it would get a second answer on the same connection.
# They run against httptools, the parser the service is served with (SERVER_OPTIONS). h11
# would not pass them: it goes by Transfer-Encoding when Content-Length comes too and answers
# the request hidden in the body on the same connection (422 then 404), and it waits for a
# chunk of 2^72 bytes until the body timeout (408).
PRODUCTION_PARSER = pytest.mark.parametrize("served", [SERVER_OPTIONS["http"]], indirect=True)

QUIET = 1.0  # after an answer, how long the connection must stay silent (or be closed)


async def exchange(served: Served, data: bytes, timeout: float = 5.0) -> tuple[list[int], bytes]:
    """Send bytes on a kept-alive connection; the statuses of every answer that comes back
    until the server closes the connection or stays silent for QUIET seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    answer = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await read_some(reader, QUIET if answer else timeout):
                answer += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    statuses = [int(part.split(b" ", 1)[0]) for part in answer.split(b"HTTP/1.1 ")[1:]]
    return statuses, answer


async def read_some(reader: asyncio.StreamReader, quiet: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(65536), quiet)
    except TimeoutError:
        return b""


def keep_alive_request(served: Served, head: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [
        head,
        "Host: 127.0.0.1",
        f"Authorization: {served.headers['Authorization']}",
        "Content-Type: application/json",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@PRODUCTION_PARSER
@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (["Content-Length: 5", "Content-Length: 6"], b"abcdef"),
        (["Transfer-Encoding: chunked"], b"zz\r\nabc\r\n"),
        (["Content-Length: -1"], b""),
        (["Content-Length: 1e3"], b""),
        (["Content-Length: 99999999999999999999999"], b""),
        (["Transfer-Encoding: chunked"], b"ffffffffffffffffff\r\nabc\r\n"),
    ],
    ids=[
        "two-lengths",
        "bad-chunk",
        "negative-length",
        "float-length",
        "huge-length",
        "huge-chunk",
    ],
)
async def test_broken_framing_is_400_from_the_parser(
    served: Served, http: httpx.AsyncClient, headers: list[str], body: bytes
) -> None:
    started = time.monotonic()
    statuses, answer = await exchange(
        served, keep_alive_request(served, "POST /notes HTTP/1.1", *headers, body=body)
    )
    assert statuses == [400], answer[:300]
    assert b"application/problem+json" not in answer  # the parser answered, not the app
    assert time.monotonic() - started < 3 + QUIET
    assert (await http.get("/notes", headers=served.headers)).json()["items"] == []


def test_the_service_is_served_with_httptools() -> None:
    # httptools, with a deadline for each request's headers (server.HeaderDeadline).
    assert issubclass(SERVER_OPTIONS["http"], HttpToolsProtocol)


@PRODUCTION_PARSER
async def test_length_and_chunked_together_never_reach_a_handler_twice(
    served: Served, http: httpx.AsyncClient
) -> None:
    """The classic smuggling pair: refused by the parser with one 400, the connection
    closed, and nothing hidden in the body ever answered."""
    smuggled = keep_alive_request(served, "GET /nope HTTP/1.1")
    chunked = b"0\r\n\r\n" + smuggled
    statuses, answer = await exchange(
        served,
        keep_alive_request(
            served,
            "POST /notes HTTP/1.1",
            f"Content-Length: {len(chunked)}",
            "Transfer-Encoding: chunked",
            body=chunked,
        ),
    )
    assert statuses == [400], answer[:600]
    assert (await http.get("/notes", headers=served.headers)).json()["items"] == []


# ------------------------------------------------------------------ absurd query values


@pytest.mark.parametrize(
    "limit", ["9" * 5_000, "1e999", "nan", "inf", str(10**30), "0x10", "1e1", "--5"]
)
async def test_absurd_limit_is_422(served: Served, http: httpx.AsyncClient, limit: str) -> None:
    response = await http.get("/notes", headers=served.headers, params={"limit": limit})
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("wait", ["nan", "inf", "-inf", "1e308", "30.000001", "-1e-9", "9" * 400])
async def test_absurd_wait_is_422_at_once(
    served: Served, http: httpx.AsyncClient, wait: str
) -> None:
    started = time.monotonic()
    response = await http.get(
        f"/notes/{uuid.uuid4()}", headers=served.headers, params={"wait": wait}
    )
    assert_problem(response, 422)
    assert time.monotonic() - started < 2


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "A" * 7_000,
        b64(b"[" * 140),
        b64(json.dumps(["9" * 140, str(uuid.uuid4())]).encode()),
        b64(json.dumps(["+275760-09-13T00:00:00+00:00", str(uuid.uuid4())]).encode()),
        b64(json.dumps([1e308, 1e308]).encode()),
        "\u00e9" * 100,
        "%00" * 60,
    ],
    ids=["7KiB", "nested", "long-number", "far-future", "floats", "non-ascii", "nul"],
)
async def test_absurd_cursor_is_422(served: Served, http: httpx.AsyncClient, cursor: str) -> None:
    for path in ("/notes", "/users"):
        response = await http.get(path, headers=served.admin_headers, params={"cursor": cursor})
        body = assert_problem(response, 422)
        assert body["errors"][0]["loc"] == ["query", "cursor"]


# ------------------------------------------------------------------ slow clients


async def test_stalled_body_gets_408_and_the_connection_is_closed(
    served: Served, http: httpx.AsyncClient
) -> None:
    token = served.headers["Authorization"]
    status, answer, took = await raw(
        served,
        request_bytes(
            "POST /notes HTTP/1.1",
            f"Authorization: {token}",
            "Content-Type: application/json",
            "Content-Length: 1000",
            body=b'{"raw_text": "only the start',
        ),
        timeout=STALL_TIMEOUT + 4,
    )
    assert status == 408, answer[:300]
    assert b"application/problem+json" in answer
    assert STALL_TIMEOUT * 0.9 <= took < STALL_TIMEOUT + 3
    listed = await http.get("/notes", headers=served.headers)
    assert all(item["raw_text"] != "only the start" for item in listed.json()["items"])


async def test_a_body_trickling_in_fast_enough_is_accepted(
    served: Served, http: httpx.AsyncClient
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        # Whole within the deadline, which is for the whole body (see
        # tests/security/test_bounded_work.py for one trickled past it).
        for part in (b'{"raw_text": ', b'"slow but steady', b'."}'):
            await asyncio.sleep(STALL_TIMEOUT / 5)
            yield part

    headers = {**served.headers, "Content-Type": "application/json"}
    response = await http.post("/notes", headers=headers, content=trickle())
    assert response.status_code == 202, response.text


async def test_connections_that_never_finish_their_headers_do_not_starve_others(
    served: Served, http: httpx.AsyncClient
) -> None:
    stalled = []
    try:
        for _ in range(200):
            _, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            stalled.append(writer)
        await asyncio.gather(*(w.drain() for w in stalled))
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.get("/notes", headers=served.headers) for _ in range(20))
        )
        assert {a.status_code for a in answers} == {200}
        assert time.monotonic() - started < 5
    finally:
        for writer in stalled:
            writer.close()


# ------------------------------------------------------------------ regressions


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_nul_in_login_email_is_401_not_500(client: httpx.AsyncClient, form: bool) -> None:
    """Found by the fuzzer: Postgres refuses NUL even in a WHERE clause, which gave a 500.
    A JSON body is refused with 422 by the rule for every request body's text; the form
    reaches the login, which answers as for any unknown email."""
    if form:
        response = await client.post(
            "/auth/token",
            content=b"username=a%00b%40example.com&password=whatever1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        response = await client.post(
            "/auth/login",
            content=b'{"email": "a\\u0000b@example.com", "password": "whatever1"}',
            headers={"Content-Type": "application/json"},
        )
    assert_problem(response, 422 if not form else 401)
