"""Re-time an asciinema v2 recording of scripts/demo.py so that a person can read it.

    python scripts/pace_cast.py IN.cast OUT.cast

The demo runs in about three seconds, far too fast to follow in an animation. So only the
timing changes: each line appears a moment after the one before, the answer to a request a
little later than the request, and each step begins after a pause. Real waits (the service
starting, a summary being made) stay, cut to the recording's idle time limit (asciinema's
`--idle-time-limit`, else `--idle` seconds), and the last screen is held for `--hold` seconds
before the animation starts again.

The text is the recorded text, with one change: a line wider than the terminal is broken at
a space and continued with a hanging indent, because svg-term draws the terminal's own
wrapping one column off.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEP = re.compile(r"^\[\d+/\d+\] ")


def output_lines(events: list[list[object]]) -> list[tuple[float, str]]:
    """Whole lines of output (without their line ending), each at the time it was complete."""
    lines: list[tuple[float, str]] = []
    pending, at = "", 0.0
    for time, kind, data in events:
        if kind != "o" or not isinstance(data, str) or not isinstance(time, float | int):
            continue
        pending, at = pending + data, float(time)
        *complete, pending = pending.split("\n")
        lines += [(at, line.removesuffix("\r")) for line in complete]
    if pending:
        lines.append((at, pending))
    return lines


def wrap(line: str, width: int) -> list[str]:
    """Break `line` into rows of at most `width` visible characters, at a space when there is
    one in the second half of the row; continuation rows are indented under the text."""
    text = ANSI.sub("", line)
    indent = len(text) - len(text.lstrip(" ")) + 4
    atoms = [a for part in re.split(f"({ANSI.pattern})", line) if part for a in _atoms(part)]
    rows: list[str] = []
    row: list[str] = []
    col, space, space_col = 0, -1, 0
    for atom in atoms:
        if ANSI.fullmatch(atom):
            row.append(atom)
            continue
        if col == width:
            rest: list[str] = []
            if space >= 0 and space_col >= (width + indent) // 2:
                row, rest = row[:space], row[space + 1 :]
            rows.append("".join(row))
            row = [" " * indent, *rest]
            col = indent + sum(1 for a in rest if not ANSI.fullmatch(a))
            space = -1
        if atom == " " and col > indent:
            space, space_col = len(row), col
        row.append(atom)
        col += 1
    rows.append("".join(row))
    return rows


def _atoms(part: str) -> list[str]:
    return [part] if ANSI.fullmatch(part) else list(part)


def pace(
    lines: list[tuple[float, str]],
    *,
    width: int,
    idle: float,
    line: float,
    answer: float,
    step: float,
    hold: float,
) -> list[list[object]]:
    events: list[list[object]] = []
    now = last_real = 0.0
    previous = ""
    for real, content in lines:
        text = ANSI.sub("", content).strip()
        delay = min(real - last_real, idle)
        last_real = real
        if text:
            delay = max(delay, line)
        if previous.startswith("$ ") and not text.startswith("$ "):
            delay = max(delay, answer)  # the request is read before its answer comes
        if STEP.match(text):
            delay += step
        now += delay
        events.append([round(now, 6), "o", "\r\n".join(wrap(content, width)) + "\r\n"])
        if text:
            previous = text
    events.append([round(now + hold, 6), "o", ""])
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--idle", type=float, help="longest real pause kept (s)")
    parser.add_argument("--line", type=float, default=0.08, help="between two lines (s)")
    parser.add_argument("--answer", type=float, default=0.45, help="request to answer (s)")
    parser.add_argument("--step", type=float, default=1.4, help="extra pause before a step (s)")
    parser.add_argument("--hold", type=float, default=5.0, help="last screen held for (s)")
    args = parser.parse_args()

    header, *rows = args.source.read_text(encoding="utf-8").splitlines()
    meta = json.loads(header)
    if meta.get("version") != 2:
        parser.error(f"{args.source}: not an asciicast v2 file")
    recorded_idle = meta.pop("idle_time_limit", None)  # applied here, not again by a player
    idle = args.idle or recorded_idle or 1.5
    events = pace(
        output_lines([json.loads(row) for row in rows if row.strip()]),
        width=int(meta["width"]),
        idle=float(idle),
        line=args.line,
        answer=args.answer,
        step=args.step,
        hold=args.hold,
    )
    with args.target.open("w", encoding="utf-8") as out:
        out.write(json.dumps(meta) + "\n")
        for event in events:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
