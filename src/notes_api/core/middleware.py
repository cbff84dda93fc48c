"""The one ASGI middleware of the service (pure ASGI: BaseHTTPMiddleware copies every
response body)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from secrets import token_hex
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notes_api.core.deadline import Budget, RequestDeadline
from notes_api.core.errors import send_problem

log = structlog.get_logger("notes_api.http")
_ACCESS_LOG = logging.getLogger("notes_api.http")  # its level decides whether a line is made

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Each label set's metric children, found once: `labels()` costs a lock and a tuple per call.
_COUNTS: dict[tuple[str, str, int], Any] = {}
_LATENCIES: dict[tuple[str, str], Any] = {}
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DOCS = ("/docs", "/redoc", "/openapi.json")
_CSP_API = "default-src 'none'; frame-ancestors 'none'"
_UNEXPECTED = "Something went wrong on our side"
MAX_HEADER_BYTES = 16 * 1024
MAX_URL_BYTES = 8 * 1024


class RequestContext:
    """Everything done around every HTTP request, in one layer (each layer of middleware
    costs a request a frame at every await, a twelfth of a read's CPU for two of them):

    - its request id, access log line, metrics and security headers;
    - its bounds: a body over `max_bytes` is refused with 413 whether or not Content-Length
      is sent, a body not whole `read_timeout` seconds after the app first asks for it with
      408 (one deadline for the whole body: a byte every few seconds must not hold a request
      open forever), and (httptools sets no limit of its own) headers over 16 KiB with 431
      and URLs over 8 KiB with 414;
    - its deadline (`core/deadline.RequestDeadline`): `deadline_seconds` to begin its
      answer, time spent receiving its body or waiting its turn at the database aside."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, read_timeout: float, deadline_seconds: float
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self.deadline_seconds = deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else token_hex(16)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        path: str = scope["path"]
        docs = path.startswith(_DOCS)

        responded = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if not docs:
                    headers.append((b"content-security-policy", _CSP_API.encode()))
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await send_problem(send_wrapper, *refusal)
                return
            deadline = RequestDeadline(self.deadline_seconds, scope, send_wrapper)
            body = _Body(receive, deadline.budget, self.max_bytes, self.read_timeout)
            await deadline.run(self.app(scope, body.receive, deadline.send))
        except Exception as exc:
            # Starlette answers an unhandled error from outside every middleware, which would
            # send the 500 without the request id and the headers above: answer it here.
            if responded:
                raise
            log.error("http.unhandled", error=type(exc).__name__, exc_info=exc)
            await send_problem(send_wrapper, 500, "Internal Server Error", _UNEXPECTED)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            _observe(method, route, status, elapsed)
            if _ACCESS_LOG.isEnabledFor(logging.INFO):
                log.info(
                    "http.request",
                    method=method,
                    path=path,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """The problem a request is refused with before the app sees it, if any."""
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return (
                413,
                "Request body too large",
                f"The body must be at most {self.max_bytes} bytes",
            )
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            return 431, "Request headers too large", "At most 16 KiB of headers"
        if len(scope.get("raw_path") or b"") + len(scope["query_string"]) > MAX_URL_BYTES:
            return 414, "URI too long", "The URL must be at most 8 KiB"
        return None


def _observe(method: str, route: str, status: int, elapsed: float) -> None:
    count = _COUNTS.get((method, route, status))
    if count is None:
        count = _COUNTS[method, route, status] = HTTP_REQUESTS.labels(method, route, str(status))
    latency = _LATENCIES.get((method, route))
    if latency is None:
        latency = _LATENCIES[method, route] = HTTP_LATENCY.labels(method, route)
    count.inc()
    latency.observe(elapsed)


class _Body:
    """A request's body as the app reads it: at most `max_bytes`, whole within
    `read_timeout` of the first read, the wait excused from the request's deadline."""

    def __init__(
        self, receive: Receive, budget: Budget, max_bytes: int, read_timeout: float
    ) -> None:
        self._receive = receive
        self._budget = budget
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        self._seen = 0
        self._more = True
        self._deadline: float | None = None

    async def receive(self) -> Message:
        if not self._more:  # the body is in: what is left to hear is a disconnect
            with self._budget:
                return await self._receive()
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.read_timeout
        try:
            with self._budget:
                async with asyncio.timeout_at(self._deadline):
                    message = await self._receive()
        except TimeoutError:
            detail = "The request body did not arrive in time; send it whole"
            # The rest of the body may still come: the connection cannot be reused.
            raise HTTPException(408, detail, headers={"Connection": "close"}) from None
        if message["type"] == "http.request":
            self._more = message.get("more_body", False)
            self._seen += len(message.get("body", b""))
            if self._seen > self.max_bytes:
                # An HTTPException passes through FastAPI's body parsing untouched.
                raise HTTPException(413, f"The body must be at most {self.max_bytes} bytes")
        return message


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
                return None
    return None
