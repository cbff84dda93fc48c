"""OpenAISummarizer against a real local HTTP server speaking chat completions."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from notes_api.summarize.base import (
    PermanentSummarizerError,
    SummarizerError,
    TransientSummarizerError,
)
from notes_api.summarize.openai import OpenAISummarizer

if TYPE_CHECKING:  # fixtures come from this directory's conftest, never imported at run time
    from conftest import ChatServer

API_KEY = "sk-test-0123456789abcdef"
NOTE = "Met Acme about the renewal. They want a discount for 50 more seats."


@pytest.fixture
async def summarizer(chat_server: ChatServer) -> AsyncIterator[OpenAISummarizer]:
    client = OpenAISummarizer(chat_server.base_url, API_KEY, "test-model", timeout=2.0)
    yield client
    await client.aclose()


async def _error(summarizer: OpenAISummarizer) -> SummarizerError:
    with pytest.raises(SummarizerError) as info:
        await summarizer.summarize(NOTE)
    message = str(info.value)
    assert API_KEY not in message
    assert len(message) <= 250
    return info.value


async def test_returns_the_model_reply_trimmed(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    chat_server.answer("  Acme wants a discount for 50 more seats.\n")
    assert await summarizer.summarize(NOTE) == "Acme wants a discount for 50 more seats."


async def test_request_carries_model_messages_and_bearer_key(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    await summarizer.summarize(NOTE, title="Acme renewal")
    [request] = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    body = request["json"]
    assert body["model"] == "test-model"
    assert body["temperature"] == 0
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "same language" in system["content"]
    assert user == {"role": "user", "content": f"Title: Acme renewal\n\n{NOTE}"}


async def test_without_key_sends_no_authorization_and_strips_trailing_slash(
    chat_server: ChatServer,
) -> None:
    client = OpenAISummarizer(chat_server.base_url + "/", None, "local-model")
    try:
        await client.summarize(NOTE)
    finally:
        await client.aclose()
    [request] = chat_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert "Authorization" not in request["headers"]
    assert request["json"]["messages"][1]["content"] == NOTE


async def test_input_is_cut_to_max_input_chars(chat_server: ChatServer) -> None:
    client = OpenAISummarizer(chat_server.base_url, API_KEY, "m", max_input_chars=10)
    try:
        await client.summarize("0123456789 and everything after")
    finally:
        await client.aclose()
    assert chat_server.requests[0]["json"]["messages"][1]["content"] == "0123456789"


async def test_blank_note_is_permanent_and_sends_nothing(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    with pytest.raises(PermanentSummarizerError, match="empty"):
        await summarizer.summarize(" \n\t ")
    assert chat_server.requests == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_overload_and_server_errors_are_transient(
    summarizer: OpenAISummarizer, chat_server: ChatServer, status: int
) -> None:
    chat_server.fail(status, "upstream overloaded")
    error = await _error(summarizer)
    assert isinstance(error, TransientSummarizerError)
    assert error.transient
    assert str(error) == f"summarizer answered HTTP {status}: upstream overloaded"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_permanent(
    summarizer: OpenAISummarizer, chat_server: ChatServer, status: int
) -> None:
    chat_server.fail(status, json.dumps({"error": {"message": "model not found"}}))
    error = await _error(summarizer)
    assert isinstance(error, PermanentSummarizerError)
    assert not error.transient
    assert str(error) == f"summarizer answered HTTP {status}: model not found"


async def test_echoed_key_is_redacted_from_the_message(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {API_KEY}."}}
    chat_server.fail(401, json.dumps(body), "application/json")
    error = await _error(summarizer)
    assert str(error) == "summarizer answered HTTP 401: Incorrect API key provided: [redacted]."


async def test_long_error_bodies_are_truncated(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    chat_server.fail(500, "boom " * 2_000)
    error = await _error(summarizer)
    assert str(error).endswith("…")


async def test_html_error_pages_are_left_out(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    chat_server.fail(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
    assert str(await _error(summarizer)) == "summarizer answered HTTP 502"


async def test_slow_reply_times_out_as_transient(chat_server: ChatServer) -> None:
    chat_server.stall(5.0)
    client = OpenAISummarizer(chat_server.base_url, API_KEY, "m", timeout=0.3)
    started = time.perf_counter()
    try:
        error = await _error(client)
    finally:
        await client.aclose()
    assert isinstance(error, TransientSummarizerError)
    assert "did not answer within 0.3s" in str(error)
    assert time.perf_counter() - started < 2.0


async def test_refused_connection_is_transient(closed_port_url: str) -> None:
    client = OpenAISummarizer(closed_port_url, API_KEY, "m", timeout=2.0)
    try:
        error = await _error(client)
    finally:
        await client.aclose()
    assert isinstance(error, TransientSummarizerError)
    assert "could not reach summarizer" in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"this is not json", "not JSON"),
        (b"\xff\xfe garbage", "not JSON"),
        (b'{"choices": []}', "no message content"),
        (b'{"choices": [{"message": {}}]}', "no message content"),
        (b'{"choices": [{"message": {"content": 42}}]}', "no message content"),
        (b'["choices"]', "no message content"),
    ],
)
async def test_malformed_replies_are_transient(
    summarizer: OpenAISummarizer, chat_server: ChatServer, body: bytes, expected: str
) -> None:
    chat_server.send_raw(body)
    error = await _error(summarizer)
    assert isinstance(error, TransientSummarizerError)
    assert expected in str(error)


@pytest.mark.parametrize("content", [None, "", "   \n", "<think>hmm</think>\n"])
async def test_empty_replies_are_transient(
    summarizer: OpenAISummarizer, chat_server: ChatServer, content: str | None
) -> None:
    chat_server.answer(content)
    error = await _error(summarizer)
    assert isinstance(error, TransientSummarizerError)


async def test_runaway_reply_is_transient(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    chat_server.answer("blah " * 1_000)
    error = await _error(summarizer)
    assert isinstance(error, TransientSummarizerError)
    assert "implausibly long" in str(error)


async def test_thinking_block_is_dropped(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    chat_server.answer("<think>\nThe user wants...\n</think>\n\nAcme wants a discount.")
    assert await summarizer.summarize(NOTE) == "Acme wants a discount."


async def test_oversized_reply_is_cut_off_as_transient(
    summarizer: OpenAISummarizer, chat_server: ChatServer
) -> None:
    chat_server.send_raw(b"x" * 1_500_000)
    error = await _error(summarizer)
    assert isinstance(error, TransientSummarizerError)
    assert "too large" in str(error)


@pytest.mark.parametrize(
    "base_url", ["", "not a url", "ftp://example.com/v1", "http://", "https:///v1", "http://[::1"]
)
def test_invalid_base_url_is_rejected_at_construction(base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        OpenAISummarizer(base_url, API_KEY, "m")


@pytest.mark.parametrize(
    ("model", "timeout", "max_input_chars"), [(" ", 1.0, 10), ("m", 0.0, 10), ("m", 1.0, 0)]
)
def test_invalid_settings_are_rejected_at_construction(
    model: str, timeout: float, max_input_chars: int
) -> None:
    with pytest.raises(ValueError, match="must"):
        OpenAISummarizer("http://127.0.0.1/v1", None, model, timeout, max_input_chars)
