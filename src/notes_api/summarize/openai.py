"""Summaries from any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, ...).

A note longer than the input budget is summarized in parts, then the parts' summaries are
combined (map-reduce). Every call goes through the same error classification; a server
that refuses an input as too long for its context shrinks the budget, and the note is
split again rather than failed."""

import asyncio
import json
import re
from typing import Any

import httpx

from notes_api.core.retry_after import retry_after_seconds
from notes_api.summarize.base import PermanentSummarizerError, TransientSummarizerError, Usage
from notes_api.summarize.chunking import estimate_tokens, split_text
from notes_api.summarize.metrics import MODEL_CALLS, MODEL_TOKENS

_SYSTEM_PROMPT = (
    "You summarize notes kept in a CRM. Reply with a concise summary of two or three "
    "sentences, written in the same language as the note, with no preamble, heading or list."
)
_PART_PROMPT = (
    "You summarize one part of a long note kept in a CRM. Reply with a concise summary of "
    "that part in a few sentences, written in the same language as the note, with no "
    "preamble, heading or list."
)
_COMBINE_PROMPT = (
    "You are given the summaries of consecutive parts of one long note kept in a CRM. "
    "Reply with one concise summary of the whole note in two or three sentences, written in "
    "the same language as the note, with no preamble, heading or list."
)
_MAX_REPLY_BYTES = 1_000_000  # a chat reply this large is broken; stop buffering it
_DETAIL_CHARS = 200
_TRANSIENT_STATUSES = frozenset({408, 425, 429})  # plus every 5xx
# Some reasoning models served behind this API put their deliberation in the content.
_THINKING = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_MESSAGE_OVERHEAD = 16  # tokens the chat format adds around two messages, generously
_MIN_INPUT_TOKENS = (
    100  # below this a budget leaves no room for a note: the server is misconfigured
)
_MAX_COMBINE_ROUNDS = 6
_CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)
_REQUESTED = re.compile(r"(?:resulted in|requested|you have) (\d+) tokens", re.IGNORECASE)


class _ContextTooLong(Exception):
    """The server refused an input as longer than its context; carries its message."""


class OpenAISummarizer:
    """Asks a chat model for the summary. Never retries a failed call: the job engine owns
    retries (and honours the server's Retry-After)."""

    name: str = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout: float = 20.0,
        max_input_tokens: int = 8_000,
    ) -> None:
        try:
            url = httpx.URL(base_url.strip().rstrip("/") + "/chat/completions")
        except httpx.InvalidURL as exc:
            raise ValueError("summarizer base URL is not a valid URL") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("summarizer base URL must be an absolute http(s) URL")
        if not model.strip():
            raise ValueError("summarizer model must not be empty")
        if timeout <= 0 or max_input_tokens < _MIN_INPUT_TOKENS * 2:
            raise ValueError(
                f"timeout must be positive and max_input_tokens at least {_MIN_INPUT_TOKENS * 2}"
            )
        self._url = url
        self._model = model
        self._api_key = api_key or None
        self._timeout = timeout
        # Shrinks (never grows) when the server says an input was past its context length.
        self._max_input_tokens = max_input_tokens
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    @property
    def max_input_tokens(self) -> int:
        return self._max_input_tokens

    async def summarize(self, text: str, *, title: str | None = None) -> str:
        summary, _ = await self.summarize_metered(text, title=title)
        return summary

    async def summarize_metered(self, text: str, *, title: str | None = None) -> tuple[str, Usage]:
        """The summary, and the calls and tokens it took (as the server reported them)."""
        note = text.strip()
        if not note:
            raise PermanentSummarizerError("note text is empty")
        heading = f"Title: {title.strip()}\n\n" if title and title.strip() else ""
        usage = Usage()
        while True:
            budget = self._max_input_tokens
            try:
                return await self._map_reduce(note, heading, budget, usage), usage
            except _ContextTooLong as exc:
                smaller = _shrunk_budget(budget, str(exc))
                if smaller < _MIN_INPUT_TOKENS * 2:
                    detail = self._detail(str(exc).encode())
                    raise PermanentSummarizerError(
                        f"summarizer refused even a {budget}-token input: {detail}"
                    ) from exc
                self._max_input_tokens = min(self._max_input_tokens, smaller)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _map_reduce(self, note: str, heading: str, budget: int, usage: Usage) -> str:
        room = budget - _MESSAGE_OVERHEAD - estimate_tokens(_PART_PROMPT) - estimate_tokens(heading)
        parts = split_text(note, max(room, _MIN_INPUT_TOKENS))
        if len(parts) == 1:
            return await self._complete(_SYSTEM_PROMPT, heading + note, usage)
        summaries = []
        for number, part in enumerate(parts, 1):
            content = f"{heading}Part {number} of {len(parts)}:\n\n{part}"
            summaries.append(await self._complete(_PART_PROMPT, content, usage))
        return await self._combine(summaries, heading, room, usage)

    async def _combine(self, summaries: list[str], heading: str, room: int, usage: Usage) -> str:
        """One summary of the parts' summaries; in rounds while they do not fit in one call."""
        for _ in range(_MAX_COMBINE_ROUNDS):
            groups = split_text("\n\n".join(summaries), max(room, _MIN_INPUT_TOKENS))
            if len(groups) == 1:
                return await self._complete(_COMBINE_PROMPT, heading + groups[0], usage)
            summaries = [await self._complete(_COMBINE_PROMPT, g, usage) for g in groups]
        raise PermanentSummarizerError("the parts' summaries did not fit the input budget")

    async def _complete(self, system: str, content: str, usage: Usage) -> str:
        """One chat completion: its summary, its usage added to `usage`."""
        payload = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": content},
            ],
            "temperature": 0,
        }
        try:
            # httpx times each read separately; this bounds the whole exchange.
            async with asyncio.timeout(self._timeout):
                status, headers, body = await self._post(payload)
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
                wait = retry_after_seconds(headers.get("retry-after"))
                raise TransientSummarizerError(message, retry_after=wait)
            if _is_context_length(body):
                raise _ContextTooLong(body.decode("utf-8", "replace"))
            raise PermanentSummarizerError(message)
        summary, used = _parse_reply(body, len(content))
        usage.add(used)
        MODEL_CALLS.inc()
        MODEL_TOKENS.labels("prompt").inc(used.prompt_tokens)
        MODEL_TOKENS.labels("completion").inc(used.completion_tokens)
        return summary

    async def _post(self, payload: dict[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        async with self._client.stream("POST", self._url, json=payload) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > _MAX_REPLY_BYTES:
                    raise TransientSummarizerError("summarizer reply was too large")
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

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


def _error_of(body: bytes) -> dict[str, Any]:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _is_context_length(body: bytes) -> bool:
    """OpenAI: 400 with `error.code` "context_length_exceeded"; vLLM and others say "maximum
    context length" in the message."""
    error = _error_of(body)
    message = str(error.get("message") or body.decode("utf-8", "replace"))
    return error.get("code") == "context_length_exceeded" or bool(_CONTEXT_LIMIT.search(message))


def _shrunk_budget(budget: int, message: str) -> int:
    """A budget the server should accept: scaled by the limit and the count it reported
    ("maximum context length is 4096 tokens ... resulted in 5000 tokens"), else halved."""
    limit, requested = _CONTEXT_LIMIT.search(message), _REQUESTED.search(message)
    if limit and requested and int(requested.group(1)) > 0:
        scaled = int(budget * int(limit.group(1)) / int(requested.group(1)) * 0.9)
        if scaled < budget:
            return scaled
    return budget // 2


def _parse_reply(body: bytes, input_chars: int) -> tuple[str, Usage]:
    # Malformed, empty or runaway replies count as transient: a model hiccup may pass on the
    # next attempt, and the job engine's attempt cap stops a server that always fails.
    try:
        reply = json.loads(body)
        content = reply["choices"][0]["message"]["content"]
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
    return summary, Usage(1, *_tokens(reply.get("usage")))


def _tokens(usage: object) -> tuple[int, int]:
    """`usage.prompt_tokens` and `usage.completion_tokens`; 0 for what a server leaves out."""
    if not isinstance(usage, dict):
        return 0, 0
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
