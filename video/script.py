"""The walkthrough's script (video/script.toml): scenes, code anchors, spoken text, captions,
and docs/walkthrough.md. Standard library only, so the project's tests can import it.

    python video/script.py --markdown    # print the markdown generated from the script"""

from __future__ import annotations

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
MAX_CODE_LINES = 22


@dataclass
class Scene:
    id: str
    part: str
    kind: str
    say: str
    show: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def requires(self) -> list[str]:
        return list(self.data.get("requires", []))


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
        scene = Scene(
            id=data.pop("id"),
            part=data.pop("part"),
            kind=data.pop("kind"),
            say=" ".join(data.pop("say").split()),
            show=data.pop("show"),
            data=data,
        )
        if scene.part not in parts:
            raise ValueError(f"scene {scene.id}: unknown part {scene.part!r}")
        scenes.append(scene)
    if len({s.id for s in scenes}) != len(scenes):
        raise ValueError("scene ids must be unique")
    return Script(raw["title"], raw["intro"].strip(), parts, scenes)


def fingerprint(script: Script, rendered: list[str]) -> str:
    """What the video's sound and captions depend on: the rendered scenes and their narration
    (a scene left out for a route the service lacks is not in the video)."""
    said = [[s.id, s.say] for s in script.scenes if s.id in rendered]
    return hashlib.sha256(json.dumps(said).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------- code anchors
class AnchorMissing(Exception):
    pass


def _find(lines: list[str], needle: str, start: int, path: str) -> int:
    for number in range(start, len(lines)):
        if needle in lines[number]:
            return number
    raise AnchorMissing(f"{path}: no line contains {needle!r} (the code moved: fix the script)")


def code_span(scene: Scene, root: Path = ROOT) -> tuple[int, int]:
    """The narrated lines of a code scene, 1-based and inclusive: from the line holding
    `anchor` through the one holding `until`, or else through the end of the anchor's block
    (its indented body, stopping at the first line indented no deeper than the anchor)."""
    path = scene.data["file"]
    lines = (root / path).read_text().splitlines()
    first = _find(lines, scene.data["anchor"], 0, path)
    if "until" in scene.data:
        last = _find(lines, scene.data["until"], first, path)
        return first + 1, last + 1
    indent = len(lines[first]) - len(lines[first].lstrip())
    last = first
    for number in range(first + 1, len(lines)):
        line = lines[number]
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) <= indent and not line.lstrip().startswith(")"):
            break
        last = number
    return first + 1, last + 1


# ------------------------------------------------------------------ speech and captions
# How the voice says what the captions write. Applied to the text inside backticks first,
# then to the whole sentence.
_CODE_SPOKEN = [
    (re.compile(r"\{note_id\}"), " note id "),
    (re.compile(r"\.py\b"), " dot pie "),
    (re.compile(r"\.md\b"), " dot M D "),
    (re.compile(r"^/"), "slash "),
    (re.compile(r"/"), " slash "),
    (re.compile(r"_"), " "),
]
_WORDS_SPOKEN = [
    (r"\bSQLite\b", "sequel light"),
    (r"\bPostgres\b", "post gress"),
    (r"\bPgBouncer\b", "P G bouncer"),
    (r"\bOAuth2\b", "O auth 2"),
    (r"\bOWASP\b", "oh wasp"),
    (r"\bbcrypt\b", "B crypt"),
    (r"\bArgon2id\b", "argon 2 I D"),
    (r"\bRQ\b", "R Q"),
    (r"\buv\b", "U V"),
    (r"\bCRMs\b", "C R Ms"),
    (r"\bKoyeb's\b", "koy ebb's"),
    (r"\bKoyeb\b", "koy ebb"),
    (r"\bAPI\b", "A P I"),
    (r"\bhealthz\b", "health Z"),
    (r"\bPOST\b", "post"),
    (r"\bGET\b", "get"),
    (r"\bid\b", "I D"),
    (r"\b404\b", "four oh four"),
    (r"\b403\b", "four oh three"),
    (r"\b429\b", "four twenty nine"),
    (r"\b202\b", "two oh two"),
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


def sentences(text: str) -> list[str]:
    """The narration cut into caption-sized pieces: sentences, long ones at a colon."""
    pieces = re.split(r"(?<=[.!?])\s+(?=[A-Z`])", text.strip())
    out: list[str] = []
    for piece in pieces:
        if len(piece) > 150 and ": " in piece:
            head, tail = piece.split(": ", 1)
            out += [head + ":", tail]
        else:
            out.append(piece)
    return out


# ------------------------------------------------------------------ paths the script names
_PATH = re.compile(r"`([\w.\-/]+\.(?:py|md|toml|yml|yaml|json|sh|txt))`|`(src/[\w./\-]*)`")


def paths_named(script: Script) -> set[str]:
    """Every repository path a scene shows or its narration names. Short forms such as
    `notes/service.py` are relative to src/notes_api/."""
    found: set[str] = set()
    for scene in script.scenes:
        if "file" in scene.data:
            found.add(scene.data["file"])
        for text in (scene.say, scene.show, *scene.data.get("bullets", [])):
            for match in _PATH.finditer(text):
                found.add(match.group(1) or match.group(2))
    return found


def resolve_path(path: str, root: Path = ROOT) -> Path | None:
    for candidate in (root / path, root / "src" / "notes_api" / path):
        if candidate.exists():
            return candidate
    return None


# ------------------------------------------------------------------ docs/walkthrough.md
def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _where(scene: Scene, root: Path) -> str:
    kind = scene.kind
    if kind == "code":
        code_span(scene, root)  # a missing anchor stops here too
        return f"`{scene.data['file']}`, from the line with `{scene.data['anchor']}`"
    if kind in ("tree", "figures"):
        return f"`{scene.data['file']}`"
    if kind == "diagram":
        return f"`video/diagrams/{scene.data['diagram']}.dot`"
    if kind == "slide":
        return "slide: " + scene.data["heading"]
    if kind == "card":
        return (
            "the live service (shown only where "
            + ", ".join(f"`{r}`" for r in scene.requires)
            + " exists)"
        )
    return "the live service in Swagger UI"


def markdown(script: Script, manifest: dict[str, Any] | None, root: Path = ROOT) -> str:
    times = {s["id"]: s for s in (manifest or {}).get("scenes", [])}
    out = [
        "<!-- Generated by `make video` from video/script.toml: edit the script, not this. -->",
        f"# {script.title}",
        "",
        script.intro,
        "",
    ]
    if manifest:
        out += [
            f"Length: {_clock(manifest['duration'])} ({manifest['duration']:.0f} s), "
            f"{len(times)} scenes, voice: {manifest['voice']}.",
            "",
        ]
    out += ["| part | starts at | scenes |", "|---|---|---|"]
    for number, (part, title) in enumerate(script.parts.items(), 1):
        mine = [s for s in script.scenes if s.part == part and s.id in times] or [
            s for s in script.scenes if s.part == part
        ]
        start = _clock(times[mine[0].id]["start"]) if mine[0].id in times else "-"
        out.append(f"| {number}. {title} | {start} | {len(mine)} |")
    for number, (part, title) in enumerate(script.parts.items(), 1):
        out += ["", f"## Part {number}: {title}", ""]
        for scene in script.scenes:
            if scene.part != part:
                continue
            stamp = times.get(scene.id)
            when = (
                f"{_clock(stamp['start'])} to {_clock(stamp['end'])}"
                if stamp
                else "not in the last render"
            )
            out += [
                f"### {scene.show[0].upper() + scene.show[1:]} ({when})",
                "",
                f"**Show:** {_where(scene, root)}.",
                "",
                f"**Say:** “{scene.say}”",
                "",
            ]
            if scene.kind == "slide":
                out += [f"- {b}" for b in scene.data["bullets"]] + [""]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    if "--markdown" in sys.argv:
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else None
        sys.stdout.write(markdown(load(), manifest))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
