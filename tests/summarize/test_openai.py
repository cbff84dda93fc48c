"""OpenAISummarizer against a real local HTTP server speaking chat completions."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

import pytest
from tests.fake_model import running_fake_model

from notes_api.core.retry_after import retry_after_seconds
from notes_api.summarize.base import (
    PermanentSummarizerError,
    SummarizerError,
    TransientSummarizerError,
    Usage,
)
from notes_api.summarize.chunking import estimate_tokens, split_text
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


async def test_a_note_over_the_budget_is_summarized_in_parts_then_combined(
    chat_server: ChatServer,
) -> None:
    paragraphs = [f"Paragraph {i}. " + "The customer asked about pricing. " * 20 for i in range(8)]
    client = OpenAISummarizer(chat_server.base_url, API_KEY, "m", max_input_tokens=800)
    try:
        assert await client.summarize("\n\n".join(paragraphs)) == "A short summary."
    finally:
        await client.aclose()
    *parts, combine = [r["json"]["messages"] for r in chat_server.requests]
    assert len(parts) >= 2
    for number, (system, user) in enumerate(parts, 1):
        assert "one part of a long note" in system["content"]
        assert user["content"].startswith(f"Part {number} of {len(parts)}:")
        assert estimate_tokens(system["content"] + user["content"]) <= 800
    # Split at paragraph boundaries: every paragraph is whole in exactly one part.
    for paragraph in paragraphs:
        assert sum(paragraph.strip() in user["content"] for _, user in parts) == 1
    assert "summaries of consecutive parts" in combine[0]["content"]
    assert combine[1]["content"] == "\n\n".join(["A short summary."] * len(parts))


def test_a_paragraph_too_long_is_split_at_sentences_then_whitespace() -> None:
    sentences = [f"Sentence number {i} says something about the account." for i in range(40)]
    paragraph = " ".join(sentences)
    parts = split_text(paragraph, 60)
    assert all(estimate_tokens(part) <= 60 for part in parts)
    assert " ".join(parts) == paragraph
    assert all(part.endswith(".") for part in parts)  # cut after a sentence, never inside
    word_run = "word " * 500
    cut = split_text(word_run, 50)
    assert all(estimate_tokens(part) <= 50 for part in cut)
    assert " ".join(cut).split() == word_run.split()


async def test_a_60000_character_note_passes_a_server_that_refuses_over_4000_tokens() -> None:
    note = "\n\n".join(
        f"Call {i} with Acme. " + "They discussed the renewal, seats and the discount. " * 9
        for i in range(125)
    )[:60_000]
    assert len(note) == 60_000
    with running_fake_model() as fake:
        fake.max_input_tokens = 4_000
        fake.bytes_per_token = 2.0  # the server counts more tokens than the estimate
        client = OpenAISummarizer(fake.base_url, None, "m", max_input_tokens=16_000)
        try:
            summary, usage = await client.summarize_metered(note)
        finally:
            await client.aclose()
    assert summary.startswith("summary: ")
    assert fake.refused, "the first budget was too large for the server"
    assert client.max_input_tokens < 16_000
    assert max(fake.accepted) <= 4_000
    assert fake.totals["calls"] >= 3  # parts, then their combination
    assert usage == Usage(
        fake.totals["calls"], fake.totals["prompt_tokens"], fake.totals["completion_tokens"]
    )


async def test_a_context_length_refusal_with_no_room_left_is_permanent() -> None:
    with running_fake_model() as fake:
        fake.max_input_tokens = 10
        client = OpenAISummarizer(fake.base_url, None, "m", max_input_tokens=400)
        try:
            with pytest.raises(PermanentSummarizerError, match="maximum context length"):
                await client.summarize("A note that no budget can fit. " * 5)
        finally:
            await client.aclose()


@pytest.mark.parametrize("wait", ["30", "Wed, 21 Oct 2099 07:28:00 GMT"])
async def test_a_429_says_when_to_come_back(wait: str) -> None:
    with running_fake_model() as fake:
        client = OpenAISummarizer(fake.base_url, None, "m")
        try:
            with pytest.raises(TransientSummarizerError, match="HTTP 429") as info:
                await client.summarize(f"Busy provider [ratelimited:1:{wait}]")
            assert await client.summarize(f"Busy provider [ratelimited:1:{wait}]")
        finally:
            await client.aclose()
    expected = 30.0 if wait == "30" else 86_400.0  # a date decades away is read as a day
    assert info.value.retry_after == pytest.approx(expected)


def test_retry_after_reads_seconds_and_http_dates_and_ignores_nonsense() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    unzoned = format_datetime(datetime.now(UTC) + timedelta(seconds=60)).replace("+0000", "-0000")
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(soon) == pytest.approx(90, abs=2)
    assert retry_after_seconds(unzoned) == pytest.approx(60, abs=2)  # a naive date is UTC
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None  # already past
    assert retry_after_seconds("99999999") == 86_400.0  # at most a day
    for nonsense in ("soon", "-5", "1e9", "nan", "", None):
        assert retry_after_seconds(nonsense) is None, nonsense
    assert retry_after_seconds("0") is None


async def test_usage_is_read_from_each_reply(chat_server: ChatServer) -> None:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129},
    }
    chat_server.send_raw(json.dumps(body).encode())
    client = OpenAISummarizer(chat_server.base_url, None, "m")
    try:
        assert await client.summarize_metered(NOTE) == ("Done.", Usage(1, 120, 9))
    finally:
        await client.aclose()


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
    ("model", "timeout", "max_input_tokens"),
    [(" ", 1.0, 1000), ("m", 0.0, 1000), ("m", 1.0, 0), ("m", 1.0, 100)],
)
def test_invalid_settings_are_rejected_at_construction(
    model: str, timeout: float, max_input_tokens: int
) -> None:
    with pytest.raises(ValueError, match="must"):
        OpenAISummarizer("http://127.0.0.1/v1", None, model, timeout, max_input_tokens)
