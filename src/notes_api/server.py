"""How uvicorn serves the API. A module of its own, free of the app's imports, so that the
benchmark's bare baseline (bench/baseline_app.py) is served exactly the same way."""

from __future__ import annotations

import asyncio
import ipaddress
from types import FrameType
from typing import Any

import uvicorn
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_VERDICTS = 4096
HEADER_TIMEOUT = 10.0  # seconds from a request's first byte (or a connection's opening)


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers. uvicorn
    times out idle keep-alive connections but not a request whose headers never end, so 300
    sockets sending half a header each were held open forever (slowloris)."""

    header_timeout = HEADER_TIMEOUT
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a keep-alive connection's next request: a deadline of its own

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        # The app never saw this request: a plain answer, as the parser's own 400 is.
        msg = b"The request headers did not arrive in time"
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(msg)).encode() + b"\r\nconnection: close\r\n\r\n" + msg
        )
        self.transport.close()


class ForwardedFor:
    """The client's address behind a proxy: when the connecting peer is a trusted proxy
    (FORWARDED_ALLOW_IPS), the rightmost X-Forwarded-For entry that is not itself a trusted
    proxy, which is the address the proxy nearest to us appended. Never the leftmost: a
    client writes its own X-Forwarded-For and a proxy appends to it, so everything left of
    what a trusted proxy appended is the client's choice (uvicorn's own middleware takes the
    leftmost entry when told `*`). `*` trusts the peer alone, whatever its address: the entry
    it appended, the rightmost, names the client."""

    def __init__(self, app: Any, trusted: str) -> None:
        self.app = app
        items = [item.strip() for item in trusted.split(",") if item.strip()]
        self.any_peer = "*" in items
        self.networks = []
        self._verdicts: dict[str, bool] = {}  # host -> trusted, parsed once (at most _VERDICTS)
        for item in items:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"FORWARDED_ALLOW_IPS: {item!r} is not an address, a network or *"
                ) from None

    def trusts(self, host: str) -> bool:
        known = self._verdicts.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self.networks)
            if len(self._verdicts) >= _VERDICTS:
                self._verdicts.clear()
            self._verdicts[host] = known
        return known

    def client(self, peer: str, forwarded: str) -> str:
        entries = [e.strip() for e in forwarded.split(",")]
        if self.any_peer:
            return entries[-1] or peer
        for entry in reversed(entries):
            if entry and not self.trusts(entry):
                return entry
        return entries[0] or peer  # a chain of trusted proxies only

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            if peer and (self.any_peer or self.trusts(peer[0])):
                values = [v for k, v in scope["headers"] if k == b"x-forwarded-for"]
                if values:
                    forwarded = b",".join(values).decode("latin-1")
                    scope["client"] = (self.client(peer[0], forwarded)[:64], 0)
                proto = [v for k, v in scope["headers"] if k == b"x-forwarded-proto"]
                if proto and proto[-1].strip() in (b"http", b"https"):
                    scope["scheme"] = proto[-1].strip().decode()
        await self.app(scope, receive, send)


SERVER_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": HeaderDeadline,
    "access_log": False,  # our middleware logs each request, with its request id
    # X-Forwarded-For is read by `ForwardedFor` (rightmost untrusted entry), not uvicorn.
    "proxy_headers": False,
    "log_config": None,  # logging is configured by notes_api.core.logging
}


class Server(uvicorn.Server):
    """uvicorn, with the client's address taken as `ForwardedFor` says, and telling the app
    the moment a signal asks it to stop, before uvicorn drains the open requests: the app
    stops taking new jobs and answers its long polls at once, instead of only when the drain
    is over (see `main.lifespan`)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        config.load()
        trusted = config.forwarded_allow_ips
        trusted = ",".join(trusted) if isinstance(trusted, list) else (trusted or "127.0.0.1")
        config.loaded_app = ForwardedFor(config.loaded_app, trusted)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        state = getattr(self.config.app, "state", None)
        begin_shutdown = getattr(state, "begin_shutdown", None)
        if begin_shutdown is not None:
            begin_shutdown()
