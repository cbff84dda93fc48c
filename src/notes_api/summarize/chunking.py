"""Cutting a note that is too long for one model call into parts that each fit: at
paragraph boundaries where it can, then sentences, then (a sentence too long on its own)
whitespace. Sizes are counted in tokens, estimated without a tokenizer."""

from __future__ import annotations

import math
import re

# No tokenizer is downloaded: a token is taken to be at least 3 bytes of UTF-8. English
# runs about 4 characters a token and most other scripts more bytes per token, so the
# estimate errs high; a server that still refuses a part shrinks the budget (openai.py).
BYTES_PER_TOKEN = 3

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(
    r"(?<=[.!?\u2026\u3002\uff01\uff1f\u0964\u061f])\s+|(?<=[\u3002\uff01\uff1f])"
)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def split_text(text: str, max_tokens: int) -> list[str]:
    """Consecutive parts of `text`, each estimated at no more than `max_tokens`."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if estimate_tokens(text) <= max_tokens:
        return [text]
    pieces: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        if paragraph.strip():
            pieces.extend(_fit(paragraph.strip(), max_tokens))
    return _pack(pieces, max_tokens, "\n\n")


def _fit(paragraph: str, max_tokens: int) -> list[str]:
    """A paragraph as pieces that fit: itself, its sentences, or cuts of a long sentence."""
    if estimate_tokens(paragraph) <= max_tokens:
        return [paragraph]
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if not sentence.strip():
            continue
        if estimate_tokens(sentence) <= max_tokens:
            sentences.append(sentence.strip())
        else:
            sentences.extend(_cut(sentence.strip(), max_tokens * BYTES_PER_TOKEN))
    return _pack(sentences, max_tokens, " ")


def _cut(sentence: str, max_bytes: int) -> list[str]:
    """Cut at the last whitespace that keeps a piece within `max_bytes` (mid-word only when a
    word alone is that long); never inside a character."""
    pieces: list[str] = []
    rest = sentence
    while len(rest.encode("utf-8")) > max_bytes:
        head = rest.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
        space = head.rfind(" ")
        cut = space if space > len(head) // 2 else len(head)
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


def _pack(pieces: list[str], max_tokens: int, joiner: str) -> list[str]:
    """Join consecutive pieces while the whole still fits."""
    parts: list[str] = []
    for piece in pieces:
        if parts and estimate_tokens(parts[-1] + joiner + piece) <= max_tokens:
            parts[-1] = parts[-1] + joiner + piece
        else:
            parts.append(piece)
    return parts
