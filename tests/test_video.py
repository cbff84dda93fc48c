"""The committed walkthrough (docs/walkthrough.*) agrees with its script, video/script.toml,
and with the code it shows. `make video` renders it again."""

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


def _cues() -> list[tuple[str, float, float, str]]:
    text = (DOCS / "walkthrough.vtt").read_text()
    assert text.startswith("WEBVTT\n")
    cues = []
    for block in text.split("\n\n")[1:]:
        lines = block.strip().splitlines()
        if not lines:
            continue
        cue_id, timing, *words = lines
        start, end = timing.split(" --> ")
        cues.append((cue_id, _seconds(start), _seconds(end), " ".join(words)))
    return cues


def test_walkthrough_md_is_the_one_the_script_generates(script: Any, manifest: Any) -> None:
    expected = walkthrough.markdown(script, manifest)
    assert (DOCS / "walkthrough.md").read_text() == expected, (
        "docs/walkthrough.md differs from what video/script.toml generates: run `make video`"
    )


def test_video_was_rendered_from_the_current_narration(script: Any, manifest: Any) -> None:
    rendered = [s["id"] for s in manifest["scenes"]]
    assert manifest["script"] == walkthrough.fingerprint(script, rendered), (
        "the narration in video/script.toml changed since the last render: run `make video`"
    )


def test_every_code_anchor_is_still_in_its_file(script: Any) -> None:
    for scene in script.scenes:
        if scene.kind == "code":
            first, last = walkthrough.code_span(scene)  # raises AnchorMissing, naming it
            assert 1 <= first <= last, scene.id


def test_every_path_the_narration_names_exists(script: Any) -> None:
    named = walkthrough.paths_named(script)
    assert "src/notes_api/notes/repository.py" in named
    missing = sorted(p for p in named if walkthrough.resolve_path(p) is None)
    assert not missing, f"named in video/script.toml but not in the repository: {missing}"


def test_captions_are_the_narration_and_cover_the_whole_video(
    script: Any, manifest: dict[str, Any]
) -> None:
    cues = _cues()
    assert cues[0][1] < 1.0
    assert manifest["duration"] - 2.0 < cues[-1][2] <= manifest["duration"]
    for (_, _, end, _), (_, start, _, _) in itertools.pairwise(cues):
        assert end <= start, "captions overlap"
    shown = {s["id"] for s in manifest["scenes"]}
    said = " ".join(walkthrough.caption(s.say) for s in script.scenes if s.id in shown)
    assert " ".join(text for *_, text in cues) == said


def test_every_scene_narration_fits_inside_its_scene(manifest: dict[str, Any]) -> None:
    scenes = {s["id"]: s for s in manifest["scenes"]}
    previous_end = 0.0
    for scene in manifest["scenes"]:
        assert scene["start"] == pytest.approx(previous_end, abs=0.001), "gap between scenes"
        assert scene["end"] > scene["start"]
        previous_end = scene["end"]
    assert previous_end == pytest.approx(manifest["duration"], abs=0.25)
    for cue_id, start, end, _ in _cues():
        scene = scenes[re.sub(r"-\d+$", "", cue_id)]
        assert scene["start"] <= start < end <= scene["end"], cue_id


def test_every_scene_of_the_script_is_rendered_or_left_out_for_a_missing_route(
    script: Any, manifest: dict[str, Any]
) -> None:
    rendered = [s["id"] for s in manifest["scenes"]]
    assert rendered == [s.id for s in script.scenes if s.id in rendered]
    for scene in script.scenes:
        if scene.id not in rendered:
            assert scene.id in manifest["left_out"] and scene.requires, scene.id


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
def test_video_is_h264_and_aac_at_720p_within_ten_minutes(manifest: dict[str, Any]) -> None:
    probe = _probe()
    kinds = [s["codec_type"] for s in probe["streams"]]
    assert sorted(kinds) == ["audio", "video"]
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
    assert video["codec_name"] == "h264" and audio["codec_name"] == "aac"
    assert video["width"] >= 1280 and video["height"] >= 720
    duration = float(probe["format"]["duration"])
    assert duration <= 600
    assert duration == pytest.approx(manifest["duration"], abs=0.5)
    assert MP4.stat().st_size < 25 * 1024 * 1024
    assert (DOCS / "walkthrough.png").stat().st_size > 10_000
