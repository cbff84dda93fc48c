"""The committed walkthrough (docs/walkthrough.*) agrees with its script, video/script.toml,
and with the code it shows; `make video-check` catches a code scene the source left behind.
`make video` renders it again."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MP4 = DOCS / "walkthrough.mp4"


def _load_script_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("walkthrough_script", ROOT / "video/script.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


walkthrough = _load_script_module()


@pytest.fixture(scope="module")
def script() -> Any:
    return walkthrough.load()


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return json.loads((DOCS / "walkthrough.scenes.json").read_text())


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _cues() -> list[tuple[float, float, str]]:
    text = (DOCS / "walkthrough.vtt").read_text()
    assert text.startswith("WEBVTT\n")
    cues = []
    for block in text.split("\n\n")[1:]:
        lines = block.strip().splitlines()
        if not lines:
            continue
        _, timing, *words = lines
        start, end = timing.split(" --> ")
        cues.append((_seconds(start), _seconds(end), "\n".join(words)))
    return cues


# ------------------------------------------------------------------ make video-check
def test_video_check_passes_on_the_committed_render() -> None:
    assert walkthrough.check() == []


def _scratch_copy(tmp_path: Path, script: Any) -> Path:
    """The script, the manifest and every file a code scene shows, in a scratch tree."""
    for rel in ["video/script.toml", "docs/walkthrough.scenes.json"] + [
        s.data["file"] for s in script.scenes if s.kind == "code"
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_video_check_fails_when_a_shown_line_changes(tmp_path: Path, script: Any) -> None:
    root = _scratch_copy(tmp_path, script)
    assert walkthrough.check(root) == []
    path = root / "src/notes_api/jobs/fair.py"
    source = path.read_text()
    assert "attempts=jobs.c.attempts + 1" in source
    path.write_text(source.replace("attempts=jobs.c.attempts + 1", "attempts=jobs.c.attempts"))
    problems = walkthrough.check(root)
    assert len(problems) == 1 and "scene code-claim" in problems[0], problems
    assert "changed since the render" in problems[0]


def test_video_check_fails_when_a_scene_symbol_is_gone(tmp_path: Path, script: Any) -> None:
    root = _scratch_copy(tmp_path, script)
    path = root / "src/notes_api/notes/repository.py"
    path.write_text(path.read_text().replace("def visible_to(", "def visible_for("))
    problems = walkthrough.check(root)
    assert problems == [
        "scene code-tenancy: src/notes_api/notes/repository.py: no symbol 'visible_to'"
    ], problems


def test_video_check_fails_when_a_focus_line_is_gone(tmp_path: Path, script: Any) -> None:
    root = _scratch_copy(tmp_path, script)
    path = root / "src/notes_api/core/db.py"
    path.write_text(path.read_text().replace("await session.commit()", "await session.flush()"))
    problems = walkthrough.check(root)
    assert any("scene code-commit" in p and "await session.commit()" in p for p in problems)


def test_video_check_follows_a_symbol_that_only_moved(tmp_path: Path, script: Any) -> None:
    """Chosen by symbol, not line number: code added above a scene's function moves it
    without making the video wrong."""
    root = _scratch_copy(tmp_path, script)
    path = root / "src/notes_api/notes/service.py"
    path.write_text("# a comment that moves every line down\n\n" + path.read_text())
    assert walkthrough.check(root) == []


def test_video_check_runs_as_make_target_in_ci() -> None:
    assert "make video-check" in (ROOT / ".ci/run").read_text()
    done = subprocess.run(
        [sys.executable, str(ROOT / "video/script.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ script, markdown, captions
def test_walkthrough_md_is_the_one_the_script_generates(script: Any, manifest: Any) -> None:
    expected = walkthrough.markdown(script, manifest)
    assert (DOCS / "walkthrough.md").read_text() == expected, (
        "docs/walkthrough.md differs from what video/script.toml generates: run `make video`"
    )


def test_captions_fit_two_lines_of_42_and_17_characters_a_second() -> None:
    cues = _cues()
    assert cues
    for start, end, text in cues:
        lines = text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), text
        assert len(" ".join(lines)) / (end - start) <= 17.05, (start, text)
    for (_, end, _), (start, _, _) in itertools.pairwise(cues):
        assert end <= start + 0.001, "captions overlap"


def test_captions_are_the_narration(script: Any, manifest: dict[str, Any]) -> None:
    said = " ".join(walkthrough.caption(s.say) for s in script.scenes)
    shown = " ".join(text.replace("\n", " ") for *_, text in _cues())
    assert shown == said
    assert _cues()[-1][1] <= manifest["duration"] + 0.01


def test_a_long_sentence_is_cut_into_two_line_cues() -> None:
    sentence = (
        "So production was rehearsed here: the same image, held to Koyeb's free limits, "
        "512 MB and a tenth of a CPU, against Postgres behind PgBouncer in transaction mode."
    )
    cues = walkthrough.cue_texts(sentence)
    assert len(cues) >= 2
    assert " ".join(c.replace("\n", " ") for c in cues) == sentence
    assert all(len(line) <= 42 for c in cues for line in c.split("\n"))


def test_every_beat_is_spoken_inside_its_scene(script: Any, manifest: dict[str, Any]) -> None:
    rendered = {s["id"]: s for s in manifest["scenes"]}
    assert list(rendered) == [s.id for s in script.scenes]
    previous = 0.0
    for scene in script.scenes:
        times = rendered[scene.id]
        assert len(times["beats"]) == len(scene.beats)
        assert previous - 0.5 <= times["start"] <= times["beats"][0] < times["end"]
        assert times["beats"] == sorted(times["beats"])
        previous = times["end"]
    assert previous == pytest.approx(manifest["duration"], abs=0.5)


def test_pacing_parts_and_design_choices(script: Any, manifest: dict[str, Any]) -> None:
    assert manifest["wpm_speaking"] <= 152
    agenda = manifest["parts"]["intro"]
    assert agenda[1] - agenda[0] <= 20
    close = manifest["parts"]["close"]
    assert 40 <= close[1] - close[0] <= 90
    assert len([s for s in script.scenes if s.part == "design"]) in (3, 4)
    assert len(manifest["moments"]) >= 10


# ------------------------------------------------------------------ the file itself
def _probe() -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(MP4),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (Debian: ffmpeg) missing")
def test_video_is_1080p_h264_with_aac_and_a_subtitle_track(manifest: dict[str, Any]) -> None:
    probe = _probe()
    kinds = sorted(s["codec_type"] for s in probe["streams"])
    assert kinds == ["audio", "subtitle", "video"]
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    subtitle = next(s for s in probe["streams"] if s["codec_type"] == "subtitle")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1920, 1080)
    assert subtitle["codec_name"] == "mov_text"
    duration = float(probe["format"]["duration"])
    assert duration <= 600
    assert duration == pytest.approx(manifest["duration"], abs=0.5)
    assert MP4.stat().st_size <= 25 * 1024 * 1024
    assert (DOCS / "walkthrough.png").stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg missing")
def test_loudness_is_minus_16_lufs_with_true_peak_under_minus_1_5(manifest: Any) -> None:
    out = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            "-i",
            str(MP4),
            "-map",
            "0:a",
            "-filter_complex",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    summary = out[out.rfind("Summary:") :]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1))  # type: ignore[union-attr]
    assert integrated == pytest.approx(-16, abs=1.0)
    assert peak <= -1.5
    assert manifest["lufs"] == pytest.approx(integrated, abs=0.2)
