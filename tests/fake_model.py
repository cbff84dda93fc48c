"""A real OpenAI-compatible chat-completions server for tests that cross process boundaries.

What it answers depends on markers in the note's text, so one server serves many notes:
`[slow:S]` waits S seconds, `[transient:N]` answers 503 to the first N requests for that text,
`[permanent]` answers 400, `[ratelimited:N:S]` answers 429 with `Retry-After: S` to the first
N. Otherwise the summary is "summary: " + the text's first line, so a test can tell which
note a summary came from.

Like a real provider it has a context length (`max_input_tokens`, None for none): a request
whose messages count more tokens is refused with OpenAI's own error (400,
`context_length_exceeded`). Its tokenizer is a stand-in, `bytes_per_token` bytes of UTF-8 to
a token. Each reply reports `usage`, and `totals` adds up what every reply reported."""

from __future__ import annotations

import contextlib
import json
import math
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
        self.max_input_tokens: int | None = None
        self.bytes_per_token = 4.0
        self.totals: Counter[str] = Counter()  # calls, prompt_tokens, completion_tokens
        self.refused: list[int] = []  # the token counts refused as past the context length
        self.accepted: list[int] = []  # the token counts of the requests answered 200

    def tokens(self, text: str) -> int:
        return math.ceil(len(text.encode()) / self.bytes_per_token)

    def reply(self, messages: list[dict[str, str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The status, body and headers for a chat request."""
        text = messages[-1]["content"]
        prompt = sum(self.tokens(m["content"]) + 4 for m in messages)
        limit = self.max_input_tokens
        if limit is not None and prompt > limit:
            with self.lock:
                self.refused.append(prompt)
            message = (
                f"This model's maximum context length is {limit} tokens. However, your "
                f"messages resulted in {prompt} tokens. Please reduce the length of the "
                "messages."
            )
            error = {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
            return 400, {"error": error}, {}
        with self.lock:
            self.seen[text] += 1
            count = self.seen[text]
        limited = re.search(r"\[ratelimited:(\d+):([^\]]+)\]", text)
        if limited and count <= int(limited.group(1)):
            error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}
            return 429, {"error": error}, {"Retry-After": limited.group(2)}
        status, body = self.answer(text, count)
        if status == 200:
            completion = self.tokens(body["choices"][0]["message"]["content"])
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            with self.lock:
                self.accepted.append(prompt)
                self.totals.update(
                    {"calls": 1, "prompt_tokens": prompt, "completion_tokens": completion}
                )
        return status, body, {}

    def answer(self, text: str, count: int) -> tuple[int, dict[str, Any]]:
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
            status, reply, headers = model.reply(body["messages"])
            payload = json.dumps(reply).encode()
            with contextlib.suppress(ConnectionError):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
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
