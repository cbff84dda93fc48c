"""A bare `make` lists the targets, one line each, instead of "`.tools/bin/uv` is up to date"."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def test_bare_make_is_make_help_and_lists_every_target_with_a_line() -> None:
    listing = make()
    assert listing == make("help")
    lines = listing.strip().splitlines()
    targets = [re.match(r"\s*make (\S+)\s+\S", line) for line in lines]
    assert all(targets), listing
    named = {t.group(1) for t in targets if t}
    for target in ("run", "worker", "test", "lint", "demo", "migrate", "bench", "help"):
        assert target in named, listing
    # Every target of the Makefile's .PHONY lists is described.
    phony = re.findall(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert {t for line in phony for t in line.split()} <= named
