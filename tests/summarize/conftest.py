"""A real HTTP server speaking the chat-completions API, scripted per test."""

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0


@dataclass
class ChatServer:
    """What the server answers next, and every request it has seen."""

    base_url: str
    reply: Reply = field(default_factory=Reply)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, content: str | None) -> None:
        """Answer with a well-formed completion whose message content is `content`."""
        message = {"role": "assistant", "content": content}
        body = {"id": "chatcmpl-1", "object": "chat.completion", "model": "test-model"}
        body["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
        self.reply = Reply(body=json.dumps(body).encode())

    def fail(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
        self.reply = Reply(status=status, body=body.encode(), content_type=content_type)

    def send_raw(self, body: bytes) -> None:
        """Answer 200 with `body` as it is, well-formed or not."""
        self.reply = Reply(body=body)

    def stall(self, seconds: float) -> None:
        """Hold every reply back for `seconds` (or until the test ends)."""
        self.reply = Reply(body=b"{}", delay=seconds)


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            server.requests.append(
                {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
            )
            reply = server.reply
            # Waits on an event rather than sleeping so teardown can let it go at once.
            if reply.delay and server.release.wait(reply.delay):
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def handle(self) -> None:
            # Clients hang up mid-reply on purpose here (timeouts, oversized replies).
            with contextlib.suppress(ConnectionError):
                super().handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def _chat_server_session() -> Iterator[ChatServer]:
    state = ChatServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def chat_server(_chat_server_session: ChatServer) -> Iterator[ChatServer]:
    """The shared server, reset to a plain successful answer."""
    state = _chat_server_session
    state.requests.clear()
    state.release.clear()
    state.answer("A short summary.")
    yield state
    state.release.set()  # free a handler still holding back a slow reply


@pytest.fixture
def closed_port_url() -> str:
    """A URL on which nothing listens, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
