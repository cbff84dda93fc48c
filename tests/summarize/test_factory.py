"""Choosing a summarizer by name."""

import pytest

from notes_api.summarize.extractive import ExtractiveSummarizer
from notes_api.summarize.factory import build_summarizer
from notes_api.summarize.openai import OpenAISummarizer

SETTINGS = {
    "openai_base_url": "https://api.openai.com/v1",
    "openai_api_key": "sk-test",
    "openai_model": "gpt-4o-mini",
    "openai_timeout": 5.0,
}


async def test_builds_extractive() -> None:
    summarizer = build_summarizer("extractive", **SETTINGS)  # type: ignore[arg-type]
    assert isinstance(summarizer, ExtractiveSummarizer)
    assert summarizer.name == "extractive"
    await summarizer.aclose()


async def test_builds_openai_case_insensitively() -> None:
    summarizer = build_summarizer(" OpenAI ", **SETTINGS)  # type: ignore[arg-type]
    assert isinstance(summarizer, OpenAISummarizer)
    assert summarizer.name == "openai"
    await summarizer.aclose()


def test_unknown_kind_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown summarizer 'gpt'"):
        build_summarizer("gpt", **SETTINGS)  # type: ignore[arg-type]
