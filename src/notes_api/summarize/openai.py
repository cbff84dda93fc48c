"""Summaries from any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, ...)."""

import asyncio
import json
import re
from typing import Any

import httpx

from notes_api.summarize.base import PermanentSummarizerError, TransientSummarizerError

_SYSTEM_PROMPT = (
    "You summarize notes kept in a CRM. Reply with a concise summary of two or three "
    "sentences, written in the same language as the note, with no preamble, heading or list."
)
_MAX_REPLY_BYTES = 1_000_000  # a chat reply this large is broken; stop buffering it
_DETAIL_CHARS = 200
_TRANSIENT_STATUSES = frozenset({408, 425, 429})  # plus every 5xx
# Some reasoning models served behind this API put their deliberation in the content.
_THINKING = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


class OpenAISummarizer:
    """Asks a chat model for the summary. Never retries: the job engine owns retries."""

    name: str = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout: float = 20.0,
        max_input_chars: int = 100_000,
    ) -> None:
        try:
            url = httpx.URL(base_url.strip().rstrip("/") + "/chat/completions")
        except httpx.InvalidURL as exc:
            raise ValueError("summarizer base URL is not a valid URL") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("summarizer base URL must be an absolute http(s) URL")
        if not model.strip():
            raise ValueError("summarizer model must not be empty")
        if timeout <= 0 or max_input_chars < 1:
            raise ValueError("timeout and max_input_chars must be positive")
        self._url = url
        self._model = model
        self._api_key = api_key or None
        self._timeout = timeout
        self._max_input_chars = max_input_chars
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def summarize(self, text: str, *, title: str | None = None) -> str:
        note = text.strip()
        if not note:
            raise PermanentSummarizerError("note text is empty")
        # Past the limit the beginning of a note stands for all of it.
        note = note[: self._max_input_chars]
        content = f"Title: {title.strip()}\n\n{note}" if title and title.strip() else note
        payload = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": _SYSTEM_PROMPT},
                {"role": "user", "content": content},
            ],
            "temperature": 0,
        }
        try:
            # httpx times each read separately; this bounds the whole exchange.
            async with asyncio.timeout(self._timeout):
                status, body = await self._post(payload)
        except (TimeoutError, httpx.TimeoutException) as exc:
            message = f"summarizer did not answer within {self._timeout:g}s"
            raise TransientSummarizerError(message) from exc
        except httpx.HTTPError as exc:
            message = f"could not reach summarizer ({type(exc).__name__})"
            raise TransientSummarizerError(message) from exc
        if not 200 <= status < 300:
            message = f"summarizer answered HTTP {status}"
            if detail := self._detail(body):
                message = f"{message}: {detail}"
            if status in _TRANSIENT_STATUSES or status >= 500:
                raise TransientSummarizerError(message)
            raise PermanentSummarizerError(message)
        return _parse_reply(body, len(note))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, payload: dict[str, Any]) -> tuple[int, bytes]:
        async with self._client.stream("POST", self._url, json=payload) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > _MAX_REPLY_BYTES:
                    raise TransientSummarizerError("summarizer reply was too large")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def _detail(self, body: bytes) -> str:
        """The server's own error message, one line, without the key, at most ~200 chars."""
        text = body.decode("utf-8", "replace")
        try:
            error = json.loads(text).get("error")
            text = str(error.get("message") or text) if isinstance(error, dict) else text
        except (ValueError, AttributeError):
            pass
        text = " ".join(text.split())
        if text.startswith("<"):  # an HTML error page from a proxy says nothing useful
            return ""
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


def _parse_reply(body: bytes, input_chars: int) -> str:
    # Malformed, empty or runaway replies count as transient: a model hiccup may pass on the
    # next attempt, and the job engine's attempt cap stops a server that always fails.
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except ValueError as exc:
        raise TransientSummarizerError("summarizer reply was not JSON") from exc
    except (KeyError, IndexError, TypeError) as exc:
        raise TransientSummarizerError("summarizer reply had no message content") from exc
    if not isinstance(content, str):
        raise TransientSummarizerError("summarizer reply had no message content")
    summary = _THINKING.sub("", content).strip()
    if not summary:
        raise TransientSummarizerError("summarizer reply was empty")
    if len(summary) > max(4 * input_chars, 2_000):
        raise TransientSummarizerError(f"summarizer reply was implausibly long ({len(summary)})")
    return summary
