"""Collects checks and figures while the rehearsal runs and writes docs/rehearsal.md."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Check:
    phase: str
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    started: float = field(default_factory=time.time)
    checks: list[Check] = field(default_factory=list)
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # what, value, how
    environment: list[tuple[str, str]] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)  # title, markdown
    aborted: str | None = None
    secrets: list[str] = field(default_factory=list)  # masked wherever they would appear

    def check(self, phase: str, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(phase, name, bool(ok), detail))
        mark = "PASS" if ok else "FAIL"
        print(f"[{mark}] {phase}: {name}" + (f" — {detail}" if detail else ""), flush=True)
        return bool(ok)

    def figure(self, what: str, value: str, how: str = "") -> None:
        self.figures.append((what, value, how))
        print(f"  figure: {what}: {value}", flush=True)

    def env(self, what: str, value: str) -> None:
        self.environment.append((what, value))

    def section(self, title: str, markdown: str) -> None:
        self.sections.append((title, markdown))

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> bool:
        return self.aborted is None and not self.failed and bool(self.checks)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "•••")
        return text

    def markdown(self) -> str:
        took = time.time() - self.started
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.started))
        verdict = "PASS" if self.passed else "FAIL"
        total, bad = len(self.checks), len(self.failed)
        lines = [
            "# Production rehearsal: a Koyeb-sized container against a Neon-shaped database",
            "",
            f"Written by `rehearsal/run.py` ({when}, {took / 60:.1f} min). "
            f"**Result: {verdict}**"
            + (" (stopped early)" if self.aborted else "")
            + f" — {total - bad} of {total} checks passed"
            + (f", {bad} failed." if bad else "."),
            "",
            "Run it again with `.venv/bin/python rehearsal/run.py` (`make rehearsal`); "
            "[rehearsal/README.md](../rehearsal/README.md) says what it sets up and how.",
            "",
        ]
        if self.aborted:
            lines += [f"**Stopped early:** {self.aborted}", ""]
        lines += ["## Environment", "", "| | |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in self.environment]
        lines += ["", "## Figures", "", "| measure | value | how |", "|---|---|---|"]
        lines += [f"| {_cell(w)} | **{_cell(v)}** | {_cell(h)} |" for w, v, h in self.figures]
        for title, body in self.sections:
            lines += ["", f"## {title}", "", body.rstrip()]
        lines += ["", "## Checks", "", "| phase | check | result | detail |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(c.phase)} | {_cell(c.name)} | {'✅ pass' if c.ok else '❌ FAIL'} | "
            f"{_cell(c.detail)} |"
            for c in self.checks
        ]
        return self.mask("\n".join(lines) + "\n")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown())


def _cell(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).replace("|", "\\|")
