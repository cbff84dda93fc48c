"""Offline, deterministic extractive summaries: no network, no model, any language."""

import asyncio
import math
import re
import unicodedata
from collections import Counter
from typing import NamedTuple

from notes_api.summarize.base import PermanentSummarizerError

# Scripts written without spaces between words: \w+ would turn a whole clause into one
# "word", so runs of these characters are tokenized as overlapping character bigrams.
_SPACELESS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
)
# Python's \w leaves out combining marks, which would cut Devanagari (vowel signs), Arabic
# (harakat) and Hebrew (points) words into pieces; the Indic range skips the dandas.
_MARKS = "\u0300-\u036f\u0591-\u05c7\u064b-\u065f\u0670\u0900-\u0963\u0966-\u0dff"
_TOKEN = re.compile(rf"([{_SPACELESS}]+)|((?:[^\W{_SPACELESS}]|[{_MARKS}])+)")

# A sentence ends at Latin-style terminators (. ! ? ellipsis, Arabic full stop) only when
# whitespace follows, so "3.5" and "example.com" stay whole; CJK full stop and fullwidth
# ! ?, the Devanagari dandas, the Arabic question mark and the Armenian and Ethiopic full
# stops end it outright. Closing quotes and brackets stay with their sentence. A run of
# terminators is only tried from its first character, and possessively, which keeps long
# runs ("....", "?!?!") linear instead of quadratic.
_LATIN_END = "[.!?\u2026\u06d4]"
_CJK_END = "[\u3002\uff01\uff1f]"
_SENTENCE = re.compile(
    rf"\S.*?(?:(?<!{_LATIN_END}){_LATIN_END}++[\"'\u201d\u2019\u00bb)\]]*+(?=\s|$)"
    rf"|(?<!{_CJK_END}){_CJK_END}++[\u201d\u2019\u300d\u300f\uff09)]*+"
    r"|[\u0964\u0965\u061f\u0589\u1362]++|$)"
)
_CJK_STOP = re.compile(rf"{_CJK_END}[\u201d\u2019\u300d\u300f\uff09)]*$")
_ABBREVIATION = re.compile(
    r"(?:^|[\s(])(?:[Mm]rs?|[Mm]s|[Dd]r|[Pp]rof|[SsJj]r|[Ss]t|vs|e\.g|i\.e|approx|[A-Z])\.$"
)
# "- ", "* ", "+ ", bullets and dashes, "1. ", "2) ", "a) ", "[ ] ", "[x] "
_BULLET = re.compile(
    r"^(?:[-*+\u2022\u2023\u25e6\u25aa\u25cf\u00b7\u2013\u2014]|\d{1,3}[.)]|[a-zA-Z]\)"
    r"|\[[ xX]?\])\s"
)
_TRAILING_JUNK = " ,;:-\u2013\u2014"  # stripped before an ellipsis is appended

# English only; other languages rely on IDF, which already mutes words found everywhere.
_STOP_WORDS_TEXT = (
    "a an and are as at be been but by for from had has have he her his i if in into is it "
    "its me my no not of on or our she so than that the their them then there these they "
    "this to too us was we were what when which who will with would you your"
)
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

_CHUNK_WORDS = 25  # unpunctuated text is cut into pieces of about a sentence
_MAX_UNIT_WORDS = 60  # beyond this a "sentence" is really unpunctuated text
_SPACELESS_CHUNK_CHARS = 100
_FIRST_UNIT_BONUS = 1.1  # notes tend to open with what they are about
_MIN_TOKENS = 4  # shorter units ("OK.", "Thanks!") are scaled down
_NEAR_DUPLICATE = 0.7  # Jaccard overlap of token sets above which a unit repeats another
_KEPT_SHARE = 3  # a summary keeps about one sentence in three


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# What a CRM reader acts on (English words; numbers and currency signs in any language): when,
# how much or how many, and what is asked. A sentence with more kinds of these ranks first;
# centrality orders sentences within a kind. Looked up in the tokens the scoring makes
# anyway, so the cues cost a few set operations per sentence, not a regex scan.
_WHEN = _words(
    "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs "
    "fri sat sun mondays fridays weekend weekends today tonight tomorrow yesterday eod eow "
    "asap deadline due overdue week weeks month months quarter year days hours morning "
    "afternoon evening january february march april june july august september october "
    "november december jan feb mar apr jun jul aug sep sept oct nov dec q1 q2 q3 q4"
)
_AMOUNT = re.compile(r"[\d$\u20ac\u00a3\u00a5\u20b9%]")  # a digit, a currency sign, a percent
_AMOUNT_WORDS = _words("dozen hundred thousand million billion percent usd eur gbp")
_ASKED = _words(
    "please need needs needed want wants wanted asked asks ask request requests requested "
    "require requires required must should remind confirm approve approval sign todo "
    "follow schedule send"
)
# A sentence or bullet that starts with one of these is an instruction ("Send the quote").
_IMPERATIVE = _words(
    "call email send schedule book prepare share check review update ask fix log credit "
    "invite draft"
)
_THREAD_THRESHOLD = 20_000  # characters; above this the work would stall the event loop


class _Unit(NamedTuple):
    text: str
    bullet: bool


def summarize_text(text: str, *, max_sentences: int = 3, max_chars: int = 600) -> str:
    """Pick the most central sentences of `text` and return them in their original order."""
    _check_limits(max_sentences, max_chars)
    if not text.strip():
        raise PermanentSummarizerError("note text is empty")
    units = _split_units(text)
    if len(units) == 1:
        clauses = _clauses(units[0])
        if len(clauses) < 2 and len(units[0].text) <= max_chars:
            return units[0].text  # one sentence, nothing to leave out: the note itself
        units = clauses
    token_sets = [Counter(_tokens(unit.text)) for unit in units]
    cues = [_cue_kinds(unit, counts) for unit, counts in zip(units, token_sets, strict=True)]
    # A summary as long as its note shows nothing: keep about a third of the sentences, or
    # every sentence a reader acts on when there are more of those, never all of them.
    acted_on = sum(1 for kinds in cues if kinds)
    max_sentences = min(max_sentences, max(_share(len(units)), acted_on), len(units) - 1)
    scores = _scores(token_sets)
    ranked = sorted(range(len(units)), key=lambda i: (-cues[i], -scores[i], i))
    chosen: list[int] = []
    used = 0
    for i in ranked:
        extra = len(units[i].text) + (1 if chosen else 0)
        if used + extra > max_chars:
            if not chosen:
                return _truncate(units[i].text, max_chars)
            continue
        if any(_overlap(token_sets[i], token_sets[j]) > _NEAR_DUPLICATE for j in chosen):
            continue
        chosen.append(i)
        used += extra
        if len(chosen) == max_sentences:
            break
    return _join([units[i] for i in sorted(chosen)])


class ExtractiveSummarizer:
    """The `Summarizer` that needs nothing but the note: the default, and the offline fallback."""

    name: str = "extractive"

    def __init__(self, *, max_sentences: int = 3, max_chars: int = 600) -> None:
        _check_limits(max_sentences, max_chars)
        self._max_sentences = max_sentences
        self._max_chars = max_chars

    async def summarize(self, text: str, *, title: str | None = None) -> str:
        # The title is not used: sentences are scored against the note's own vocabulary.
        if len(text) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(
                summarize_text, text, max_sentences=self._max_sentences, max_chars=self._max_chars
            )
        return summarize_text(text, max_sentences=self._max_sentences, max_chars=self._max_chars)

    async def aclose(self) -> None:
        return None


def _cue_kinds(unit: _Unit, counts: Counter[str]) -> int:
    """How many kinds of what a reader acts on the sentence holds (when, how much, asked)."""
    words = counts.keys()
    when = not _WHEN.isdisjoint(words)
    text = _BULLET.sub("", unit.text, count=1) if unit.bullet else unit.text  # not "1. "
    amount = _AMOUNT.search(text) is not None or not _AMOUNT_WORDS.isdisjoint(words)
    first = next(iter(words), "")
    asked = first in _IMPERATIVE or not _ASKED.isdisjoint(words)
    return when + amount + asked


# Inside one long sentence: after a semicolon or a dash, or a comma before a conjunction.
_CLAUSE = re.compile(r"(?<=;)\s+|\s+[\u2013\u2014-]\s+|(?<=,)\s+(?=(?:and|but|so|then|also)\s)")


_LEADING_CONJUNCTION = re.compile(r"^(?:and|but|so|then|also)\s+", re.IGNORECASE)


def _clauses(unit: _Unit) -> list[_Unit]:
    """A one-sentence note's clauses, each a unit of its own, so that the summary can still
    leave something out; one clause when the sentence does not divide."""
    parts = [_LEADING_CONJUNCTION.sub("", p.strip(" ,;")) for p in _CLAUSE.split(unit.text)]
    parts = [p for p in parts if p]
    if len(parts) < 2:
        return [unit]
    last = len(parts) - 1
    return [
        _Unit(p[0].upper() + p[1:] + ("" if i == last or p[-1] in ".!?" else "."), unit.bullet)
        for i, p in enumerate(parts)
    ]


def _share(units: int) -> int:
    """About a third of the note's sentences, and at least one."""
    return max(1, round(units / _KEPT_SHARE))


def _check_limits(max_sentences: int, max_chars: int) -> None:
    if max_sentences < 1 or max_chars < 10:
        raise ValueError("max_sentences must be >= 1 and max_chars >= 10")


def _split_units(text: str) -> list[_Unit]:
    """Sentences of prose lines; bullet lines whole; long unpunctuated runs in chunks."""
    units: list[_Unit] = []
    for line in text.splitlines():
        line = " ".join(line.split())
        if not line:
            continue
        if _BULLET.match(line):
            units.extend(_Unit(piece, True) for piece in _chunks(line))
            continue
        sentences: list[str] = []
        for match in _SENTENCE.finditer(line):
            # Only the tail is searched: merged sentences can grow to the whole line.
            if sentences and _ABBREVIATION.search(sentences[-1][-10:]):
                sentences[-1] = f"{sentences[-1]} {match.group().strip()}"
            else:
                sentences.append(match.group().strip())
        units.extend(_Unit(piece, False) for s in sentences for piece in _chunks(s))
    return units


def _chunks(unit: str) -> list[str]:
    words = unit.split(" ")
    if len(words) > _MAX_UNIT_WORDS:
        return [" ".join(words[i : i + _CHUNK_WORDS]) for i in range(0, len(words), _CHUNK_WORDS)]
    if len(unit) > 3 * _SPACELESS_CHUNK_CHARS and len(unit) > 30 * len(words):
        size = _SPACELESS_CHUNK_CHARS
        return [unit[i : i + size].strip() for i in range(0, len(unit), size)]
    return [unit]


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", text).casefold()):
        run, word = match.groups()
        if run:
            tokens.extend([run[i : i + 2] for i in range(len(run) - 1)] or [run])
        elif len(word) > 1 and word not in _STOP_WORDS:
            tokens.append(word)
    return tokens


def _scores(token_sets: list[Counter[str]]) -> list[float]:
    """Cosine of each unit's TF-IDF vector with the centroid of all the *other* units.

    Linear in the number of tokens: each unit is compared with document-wide term counts,
    never with every other unit. Leaving the unit itself out of the centroid keeps a
    sentence from looking central merely by repeating its own words.
    """
    doc_tf: Counter[str] = Counter()
    doc_df: Counter[str] = Counter()
    for counts in token_sets:
        doc_tf.update(counts)
        doc_df.update(counts.keys())
    n = len(token_sets)
    idf = {term: math.log((n + 1) / df) for term, df in doc_df.items()}
    scores: list[float] = []
    for position, counts in enumerate(token_sets):
        dot = norm = 0.0
        for term, count in counts.items():
            weight = count * idf[term]
            norm += weight * weight
            dot += weight * (doc_tf[term] - count) * idf[term]
        score = dot / math.sqrt(norm) if norm else 0.0
        score *= min(1.0, counts.total() / _MIN_TOKENS)
        scores.append(score * _FIRST_UNIT_BONUS if position == 0 else score)
    return scores


def _overlap(a: Counter[str], b: Counter[str]) -> float:
    union = len(a.keys() | b.keys())
    return len(a.keys() & b.keys()) / union if union else 0.0


def _join(units: list[_Unit]) -> str:
    """Bullets one per line; prose with spaces, except after a CJK stop, where none is written."""
    if any(unit.bullet for unit in units):
        return "\n".join(unit.text for unit in units)
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(unit.text if _CJK_STOP.search(parts[-1]) else f" {unit.text}")
    return "".join(parts)


def _truncate(text: str, max_chars: int) -> str:
    """Cut on the last word boundary that leaves room for the ellipsis."""
    head = text[:max_chars]
    space = head.rfind(" ")
    cut = head[:space] if space > max_chars // 2 else text[: max_chars - 1]
    return cut.rstrip(_TRAILING_JUNK) + "…"
