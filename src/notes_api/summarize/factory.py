"""Chooses the summarizer named in the settings."""

from notes_api.summarize.base import Summarizer
from notes_api.summarize.extractive import ExtractiveSummarizer
from notes_api.summarize.openai import OpenAISummarizer


def build_summarizer(
    kind: str,
    *,
    openai_base_url: str,
    openai_api_key: str | None,
    openai_model: str,
    openai_timeout: float,
    openai_max_input_tokens: int = 8_000,
) -> Summarizer:
    """Build the summarizer `kind` ("extractive" or "openai"); anything else is a ValueError."""
    match kind.strip().lower():
        case "extractive":
            return ExtractiveSummarizer()
        case "openai":
            return OpenAISummarizer(
                openai_base_url,
                openai_api_key,
                openai_model,
                timeout=openai_timeout,
                max_input_tokens=openai_max_input_tokens,
            )
    raise ValueError(f"unknown summarizer {kind!r}; expected 'extractive' or 'openai'")
