"""The text of benchmark notes: about 1 KB each, deterministic per index."""

from __future__ import annotations

import random

WORDS = [
    "customer",
    "renewal",
    "budget",
    "meeting",
    "deadline",
    "export",
    "pipeline",
    "invoice",
    "contract",
    "onboarding",
    "support",
    "ticket",
    "escalation",
    "roadmap",
    "feature",
    "priority",
]


def note_text(i: int) -> str:
    rng = random.Random(i)
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize() + "."
        for _ in range(10)
    ]
    return f"Note {i}. " + " ".join(sentences)
