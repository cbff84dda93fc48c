"""The stand-in summarizer of `make demo` and of the walkthrough video (video/browser.py): an
OpenAI-compatible chat-completions server, so both run the service's real OpenAI client
offline and without a key.

The summary is the note's first sentence, after `delay` seconds (so a note can be seen
`processing`); while `failing` is set, a note containing "[fail]" is refused with HTTP 400,
which the service treats as a permanent error."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModel(ThreadingHTTPServer):
    daemon_threads = True
    failing = False
    delay = 0.0
    base_url = ""


class _Handler(BaseHTTPRequestHandler):
    server: FakeModel

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        text = re.sub(r"^Title: .*\n\n", "", request["messages"][-1]["content"])
        reply: dict[str, Any]
        if "[fail]" in text and self.server.failing:
            status, reply = 400, {"error": {"message": "the demo model refuses [fail] notes"}}
        else:
            time.sleep(self.server.delay)
            summary = re.split(r"(?<=[.!?;])\s", text.replace("[fail] ", "").strip(), maxsplit=1)[0]
            status, reply = 200, {"choices": [{"message": {"content": summary}}]}
        payload = json.dumps(reply).encode()
        with contextlib.suppress(ConnectionError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def running_fake_model(delay: float, *, failing: bool = False) -> Iterator[FakeModel]:
    model = FakeModel(("127.0.0.1", 0), _Handler)
    model.delay, model.failing = delay, failing
    model.base_url = f"http://127.0.0.1:{model.server_address[1]}/v1"
    threading.Thread(target=model.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield model
    finally:
        model.shutdown()
        model.server_close()
