"""The offline summary keeps what a CRM reader acts on: each note in crm_notes.json lists the
facts (dates and days, amounts and quantities, what is asked) its summary must keep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from notes_api.summarize.extractive import summarize_text

NOTES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "crm_notes.json").read_text())


@pytest.mark.parametrize("note", NOTES, ids=[n["name"] for n in NOTES])
def test_summary_keeps_the_facts_a_reader_acts_on(note: dict[str, Any]) -> None:
    summary = summarize_text(note["text"])
    missing = [fact for fact in note["keep"] if fact not in summary]
    assert not missing, f"{missing} left out of {summary!r}"
    assert len(summary) < len(note["text"]), summary


def test_the_set_covers_dates_amounts_quantities_and_requests() -> None:
    assert len(NOTES) >= 10
    facts = " ".join(f for n in NOTES for f in n["keep"])
    for kind in ("$", "%", "Monday", "Friday", "seats", "Dec", "next week"):
        assert kind in facts, kind


def test_one_sentence_note_is_shortened_where_its_clauses_allow() -> None:
    note = (
        "Dana from Acme called about the renewal, and they want the CRM export by Friday "
        "and a quote for 40 seats."
    )
    summary = summarize_text(note)
    assert summary == "They want the CRM export by Friday and a quote for 40 seats."


def test_one_sentence_note_that_does_not_divide_is_returned_as_is() -> None:
    note = "Dana from Acme wants the CRM export by Friday."
    assert summarize_text(note) == note
