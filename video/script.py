"""The walkthrough's script (video/script.toml): scenes, their beats, code scenes by symbol,
captions, the render's manifest, docs/walkthrough.md, and `make video-check`. Standard
library only, so the project's tests and CI can import it without the video's tools.

    python3 video/script.py --check      # make video-check: the code scenes still match
    python3 video/script.py --markdown   # print the markdown generated from the script"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "video" / "script.toml"
MANIFEST = ROOT / "docs" / "walkthrough.scenes.json"
LINE = 42  # caption characters a line
CPS = 17.0  # caption characters a second, at most


@dataclass
class Scene:
    id: str
    part: str
    kind: str
    show: str
    beats: list[str]  # what is said, one entry a beat: the picture may change at each
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def say(self) -> str:
        return " ".join(self.beats)


@dataclass
class Script:
    title: str
    intro: str
    parts: dict[str, str]
    scenes: list[Scene]


def load(path: Path = SCRIPT) -> Script:
    raw = tomllib.loads(path.read_text())
    parts = {p["id"]: p["title"] for p in raw["part"]}
    scenes = []
    for entry in raw["scene"]:
        data = dict(entry)
        say = data.pop("say")
        beats = [" ".join(b.split()) for b in ([say] if isinstance(say, str) else say)]
        scene = Scene(data.pop("id"), data.pop("part"), data.pop("kind"), data.pop("show"), beats)
        scene.data = data
        if scene.part not in parts:
            raise ValueError(f"scene {scene.id}: unknown part {scene.part!r}")
        if scene.kind == "code" and len(data.get("focus", [])) != len(beats):
            raise ValueError(f"scene {scene.id}: one `focus` per beat of `say`")
        scenes.append(scene)
    if len({s.id for s in scenes}) != len(scenes):
        raise ValueError("scene ids must be unique")
    return Script(raw["title"], raw["intro"].strip(), parts, scenes)


def fingerprint(script: Script) -> str:
    """What the sound and the captions depend on: every scene's narration."""
    said = [[s.id, s.beats] for s in script.scenes]
    return hashlib.sha256(json.dumps(said).encode()).hexdigest()[:16]


# ------------------------------------------------------------------- code scenes by symbol
class CodeMoved(Exception):
    """A code scene's symbol or focus is not in the source any more."""


def symbol_span(path: Path, symbol: str, label: str = "") -> tuple[int, int]:
    """1-based first and last line of `symbol` (`name`, or `Class.method`) in a Python file,
    decorators included; a module-level assignment counts as a symbol too."""
    tree = ast.parse(path.read_text())
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for name in symbol.split("."):
        node = next((n for n in body if _named(n) == name), None)
        if node is None:
            raise CodeMoved(f"{label or path.name}: no symbol {symbol!r}")
        body = getattr(node, "body", [])
    assert node is not None
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first, node.end_lineno or node.lineno


def _named(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def block_span(path: Path, start: str, end: str, label: str = "") -> tuple[int, int]:
    """For files that are not Python (the Dockerfile): from the line holding `start` through
    the line holding `end`."""
    lines = path.read_text().splitlines()
    first = next((i for i, line in enumerate(lines) if start in line), None)
    if first is None:
        raise CodeMoved(f"{label or path.name}: no line holds {start!r}")
    last = next((i for i in range(first, len(lines)) if end in lines[i]), None)
    if last is None:
        raise CodeMoved(f"{label or path.name}: no line holds {end!r} after {start!r}")
    return first + 1, last + 1


@dataclass
class CodeView:
    file: str
    symbol: str
    first: int  # the symbol's lines in the file, 1-based, inclusive
    last: int
    lines: list[str]  # the symbol's source
    focus: list[tuple[int, int]]  # per beat: lit lines, 1-based within `lines`

    def digest(self) -> str:
        lit = [self.lines[a - 1 : b] for a, b in self.focus]
        text = json.dumps([self.file, self.symbol, self.lines, lit])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_view(scene: Scene, root: Path = ROOT) -> CodeView:
    path = root / scene.data["file"]
    if not path.exists():
        raise CodeMoved(f"{scene.data['file']}: no such file")
    symbol = scene.data["symbol"]
    if path.suffix == ".py":
        first, last = symbol_span(path, symbol, scene.data["file"])
    else:
        first, last = block_span(path, *symbol.split(" .. "), label=scene.data["file"])
    lines = path.read_text().splitlines()[first - 1 : last]
    focus = [_focus(lines, f, scene.id, symbol) for f in scene.data["focus"]]
    return CodeView(scene.data["file"], symbol, first, last, lines, focus)


def _focus(lines: list[str], spec: str, scene: str, symbol: str) -> tuple[int, int]:
    """`""`: the whole symbol; `"text"`: the first line holding text; `"a .. b"`: from the
    first line holding a through the next holding b."""
    if not spec:
        return 1, len(lines)
    start, _, end = spec.partition(" .. ")
    first = next((i for i, line in enumerate(lines) if start in line), None)
    if first is None:
        raise CodeMoved(f"scene {scene}: {symbol} has no line holding {start!r}")
    if not end:
        return first + 1, first + 1
    last = next((i for i in range(first, len(lines)) if end in lines[i]), None)
    if last is None:
        raise CodeMoved(f"scene {scene}: {symbol} has no line holding {end!r} after {start!r}")
    return first + 1, last + 1


def check(root: Path = ROOT, manifest_path: Path | None = None) -> list[str]:
    """`make video-check`: every code scene's symbol is still there and its source is still
    what the last render showed. Returns the problems, empty when all is well."""
    manifest_path = manifest_path or root / "docs" / "walkthrough.scenes.json"
    script = load(root / "video" / "script.toml")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return [f"{manifest_path}: missing: run `make video`"]
    shown = {c["id"]: c for c in manifest.get("code", [])}
    problems = []
    if manifest.get("script") != fingerprint(script):
        problems.append("video/script.toml's narration changed since the last render")
    for scene in script.scenes:
        if scene.kind != "code":
            continue
        try:
            view = code_view(scene, root)
        except CodeMoved as exc:
            where = "" if str(exc).startswith("scene ") else f"scene {scene.id}: "
            problems.append(f"{where}{exc}")
            continue
        was = shown.get(scene.id)
        if was is None:
            problems.append(f"scene {scene.id}: not in the last render")
        elif was["digest"] != view.digest():
            problems.append(
                f"scene {scene.id}: {view.file} {view.symbol} changed since the render "
                f"(it showed lines {was['first']}-{was['last']}, now {view.first}-{view.last})"
            )
    return problems


# ------------------------------------------------------------------ speech and captions
# How the voice says what the captions write: text inside backticks first, then words.
_CODE_SPOKEN = [
    (re.compile(r"\{note_id\}"), " note id "),
    (re.compile(r"\.py\b"), " dot pie "),
    (re.compile(r"\.md\b"), " dot M D "),
    (re.compile(r"^/"), "slash "),
    (re.compile(r"/"), " slash "),
    (re.compile(r"_"), " "),
    (re.compile(r"\."), " dot "),
]
_WORDS_SPOKEN = [
    (r"\bSQLite\b", "sequel light"),
    (r"\bSQL\b", "sequel"),
    (r"\bPostgres\b", "post gress"),
    (r"\bPgBouncer\b", "P G bouncer"),
    (r"\bOAuth2\b", "O auth 2"),
    (r"\bOWASP\b", "oh wasp"),
    (r"\bArgon2id\b", "argon 2 I D"),
    (r"\bKoyeb's\b", "koy ebb's"),
    (r"\bKoyeb\b", "koy ebb"),
    (r"\bNeon's\b", "neon's"),
    (r"\bAPI\b", "A P I"),
    (r"\bURL\b", "U R L"),
    (r"\bURLs\b", "U R Ls"),
    (r"\bCRM\b", "C R M"),
    (r"\bHMAC\b", "H mac"),
    (r"\bvCPU\b", "V C P U"),
    (r"\bCPU\b", "C P U"),
    (r"\bJSON\b", "jason"),
    (r"\bJWT\b", "J W T"),
    (r"\bhealthz\b", "health Z"),
    (r"\bPOST\b", "post"),
    (r"\bGET\b", "get"),
    (r"\bUPDATE\b", "update"),
    (r"\bSELECT\b", "select"),
    (r"\bid\b", "I D"),
    (r"\b404\b", "four oh four"),
    (r"\b403\b", "four oh three"),
    (r"\b429\b", "four twenty nine"),
    (r"\b408\b", "four oh eight"),
    (r"\b425\b", "four twenty five"),
    (r"\b400\b", "four hundred"),
    (r"\b202\b", "two oh two"),
    (r"\b201\b", "two oh one"),
    (r"\b200\b", "two hundred"),
    (r"\b512 MB\b", "512 megabytes"),
    (r"\bMB\b", "megabytes"),
    (r"(\d)\.(\d) s\b", r"\1 point \2 seconds"),
    (r"\b(\d+) s\b", r"\1 seconds"),
    (r"\b0\.1\b", "zero point one"),
    (r"\be\.g\.", "for example"),
]


def spoken(text: str) -> str:
    def code(match: re.Match[str]) -> str:
        inner = match.group(1)
        for pattern, replacement in _CODE_SPOKEN:
            inner = pattern.sub(replacement, inner)
        return inner

    text = re.sub(r"`([^`]*)`", code, text)
    for pattern, replacement in _WORDS_SPOKEN:
        text = re.sub(pattern, replacement, text)
    return " ".join(text.split())


def caption(text: str) -> str:
    return text.replace("`", "")


def sentences(beat: str) -> list[str]:
    """A beat cut into sentences, each synthesized on its own."""
    return [p for p in re.split(r"(?<=[.!?])\s+(?=[A-Z`\"“])", beat.strip()) if p]


def wrap(text: str, width: int = LINE) -> list[str]:
    rows: list[str] = []
    row = ""
    for word in text.split():
        if row and len(row) + 1 + len(word) > width:
            rows.append(row)
            row = word
        else:
            row = f"{row} {word}".strip()
    return [*rows, row] if row else rows


def cue_texts(sentence: str) -> list[str]:
    """A sentence's captions: each at most two lines of LINE characters, cut at a clause
    (comma, colon, semicolon, dash) where one falls, else between words; lines joined by
    a newline."""
    text = caption(sentence)
    words = text.split()
    cues: list[str] = []
    while words:
        if len(wrap(" ".join(words))) <= 2:
            cues.append(" ".join(words))
            break
        # the longest head that fits two lines, preferring to end at a clause
        fit = 1
        for n in range(1, len(words) + 1):
            if len(wrap(" ".join(words[:n]))) <= 2:
                fit = n
        clause = [n for n in range(max(1, fit // 2), fit + 1) if words[n - 1][-1] in ",:;—"]
        take = clause[-1] if clause else fit
        # never leave a tail of one or two words on its own
        if len(words) - take in (1, 2) and take > 4:
            take -= 2
        cues.append(" ".join(words[:take]))
        words = words[take:]
    return ["\n".join(wrap(c)) for c in cues]


def cue_times(texts: list[str], start: float, end: float, limit: float) -> list[list[float]]:
    """Times for a sentence's cues spoken between start and end: split by characters; a cue
    that would pass 17 characters a second is held longer and the next starts later, the
    last one taking time from the silence before `limit` (the next sentence)."""
    total = sum(len(t) for t in texts) or 1
    times, at, spoken_at = [], start, start
    for text in texts:
        spoken_at += (end - start) * len(text) / total
        need = len(text.replace("\n", " ")) / CPS
        times.append([at, max(spoken_at, at + need)])
        at = times[-1][1]
    times[-1][1] = min(times[-1][1], max(limit, end))
    return times


# ------------------------------------------------------------------ docs/walkthrough.md
def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def markdown(script: Script, manifest: dict[str, Any] | None) -> str:
    times = {s["id"]: s for s in (manifest or {}).get("scenes", [])}
    out = [
        "<!-- Generated by `make video` from video/script.toml: edit the script, not this. -->",
        f"# {script.title}",
        "",
        script.intro,
        "",
    ]
    if manifest:
        m = manifest
        out += [
            f"Rendered from commit `{m['commit']}`: {clock(m['duration'])} "
            f"({m['duration']:.0f} s), "
            f"{m['size_mb']:.1f} MB, {m['width']}x{m['height']}, voice {m['voice']}.",
            f"Narration: {m['words']} words, {m['wpm_speaking']:.0f} words a minute while "
            f"speaking ({m['wpm_overall']:.0f} over the whole video). Loudness (ffmpeg "
            f"ebur128): {m['lufs']:.1f} LUFS integrated, true peak {m['true_peak']:.1f} dBTP. "
            f"Captions: {m['cues']} cues, at most two lines of {LINE} characters and "
            f"{CPS:g} characters a second, burned in and muxed as a subtitle track.",
            "",
            "| part | starts at | length |",
            "|---|---|---|",
        ]
        for number, (part, title) in enumerate(script.parts.items()):
            span = m["parts"].get(part)
            label = f"{number}. {title}" if number else title
            if span:
                out.append(f"| {label} | {clock(span[0])} | {span[1] - span[0]:.0f} s |")
        out += [
            "",
            "The picture is one screen recording: where nothing is said (a page loading, an "
            "answer slow on a busy machine) it plays up to 8 times faster; whatever is narrated "
            "plays at its real speed.",
            "",
            "Frames worth looking at:",
            "",
        ]
        out += [f"- {clock(t)} {what}" for t, what in m.get("moments", [])]
        out += [""]
    for number, (part, title) in enumerate(script.parts.items()):
        out += ["", f"## {number}. {title}" if number else f"## {title}", ""]
        for scene in script.scenes:
            if scene.part != part:
                continue
            stamp = times.get(scene.id)
            when = f"{clock(stamp['start'])} to {clock(stamp['end'])}" if stamp else "not rendered"
            out += [f"### {scene.show[0].upper() + scene.show[1:]} ({when})", ""]
            if scene.kind == "code":
                out += [f"**Code:** `{scene.data['file']}`, `{scene.data['symbol']}`.", ""]
            out += [f"**Say:** “{scene.say}”", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    if "--check" in sys.argv:
        problems = check()
        for problem in problems:
            print(f"video-check: {problem}", file=sys.stderr)
        if problems:
            print(
                "video-check: FAILED: fix video/script.toml if the code moved, then run "
                "`make video`",
                file=sys.stderr,
            )
            return 1
        code = sum(1 for s in load().scenes if s.kind == "code")
        print(f"video-check: {code} code scenes match the source the video shows")
        return 0
    if "--markdown" in sys.argv:
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else None
        sys.stdout.write(markdown(load(), manifest))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
