"""A real OpenAI-compatible chat-completions server for tests that cross process boundaries.

What it answers depends on markers in the note's text, so one server serves many notes:
`[slow:S]` waits S seconds, `[transient:N]` answers 503 to the first N requests for that text,
`[permanent]` answers 400. Otherwise the summary is "summary: " + the text's first line, so
a test can tell which note a summary came from."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModel:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.down = False
        self.base_url = ""

    def answer(self, text: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.seen[text] += 1
            count = self.seen[text]
        if self.down:
            return 503, {"error": {"message": "model server is down"}}
        if slow := re.search(r"\[slow:([\d.]+)\]", text):
            time.sleep(float(slow.group(1)))
        if "[permanent]" in text:
            return 400, {"error": {"message": "this input is not acceptable"}}
        if (flaky := re.search(r"\[transient:(\d+)\]", text)) and count <= int(flaky.group(1)):
            return 503, {"error": {"message": "overloaded"}}
        summary = "summary: " + text.splitlines()[0][:120]
        return 200, {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": summary}}]
        }


def _handler(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            text = body["messages"][-1]["content"]
            status, reply = model.answer(text)
            payload = json.dumps(reply).encode()
            with contextlib.suppress(ConnectionError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def running_fake_model() -> Iterator[FakeModel]:
    model = FakeModel()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(model))
    httpd.daemon_threads = True
    model.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield model
    finally:
        httpd.shutdown()
        httpd.server_close()
