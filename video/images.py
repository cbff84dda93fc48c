"""The video's still frames, 1280x720: a title band on top, the scene below.

Code is tokenized by Pygments and drawn with Pillow in a large monospace font, the narrated
lines on a lit background and the rest dimmed; diagrams are drawn by graphviz (`dot`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from pygments.lexers import get_lexer_for_filename
from pygments.styles import get_style_by_name
from pygments.token import Token
from script import MAX_CODE_LINES, ROOT, Scene, code_span

W, H, BAND = 1280, 720, 56
FONTS = Path("/usr/share/fonts/truetype/dejavu")
BG, PANEL, TEXT, MUTED, ACCENT = "#0f172a", "#1e293b", "#e2e8f0", "#94a3b8", "#38bdf8"
LIT = "#334155"


def font(size: int, *, mono: bool = False, bold: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSansMono" if mono else "DejaVuSans"
    name += "-Bold" if bold else ""
    return ImageFont.truetype(str(FONTS / f"{name}.ttf"), size)


def canvas(part: str, title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (W, H), BG)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, W, BAND), fill=PANEL)
    label = font(20, bold=True)
    draw.text((24, BAND // 2), part, font=label, fill=ACCENT, anchor="lm")
    x = 24 + draw.textlength(part, font=label) + 18
    text = title.replace("`", "")
    body = font(20)
    while draw.textlength(text, font=body) > W - x - 24:
        text = text[:-2] + "…"
    draw.text((x, BAND // 2), text, font=body, fill=TEXT, anchor="lm")
    return image, draw


def framed_screenshot(shot: Path, part: str, title: str, out: Path) -> Path:
    image, _ = canvas(part, title)
    picture = Image.open(shot).convert("RGB")
    picture.thumbnail((W, H - BAND))
    image.paste(picture, ((W - picture.width) // 2, BAND))
    image.save(out)
    return out


# ------------------------------------------------------------------------------ code
def _colour(style: object, token: object) -> str:
    while True:
        spec = style.style_for_token(token)  # type: ignore[attr-defined]
        if spec["color"] or token is Token or token.parent is None:  # type: ignore[attr-defined]
            return "#" + (spec["color"] or "e2e8f0")
        token = token.parent  # type: ignore[attr-defined]


def code_image(scene: Scene, part: str, out: Path) -> Path:
    path = scene.data["file"]
    source = (ROOT / path).read_text()
    lines = source.splitlines()
    first, last = code_span(scene)
    start = max(1, first - 2)
    if last - start + 1 > MAX_CODE_LINES:
        start = first
    end = min(len(lines), start + MAX_CODE_LINES - 1)
    lexer = get_lexer_for_filename(Path(path).name)
    style = get_style_by_name("one-dark")
    image, draw = canvas(part, scene.show)
    mono = font(19, mono=True)
    step, top, gutter = 27, BAND + 14, 70
    # Tokenize the whole file (so strings and docstrings that open earlier are right), then
    # keep the window's lines.
    rows: list[list[tuple[str, str]]] = [[]]
    for token, value in lexer.get_tokens(source):
        for i, chunk in enumerate(value.split("\n")):
            if i:
                rows.append([])
            if chunk:
                rows[-1].append((chunk, _colour(style, token)))
    char = draw.textlength("M", font=mono)
    limit = int((W - gutter - 24) // char)
    for number in range(start, end + 1):
        y = top + (number - start) * step
        lit = first <= number <= last
        if lit:
            draw.rectangle((0, y - 3, W, y + step - 3), fill=LIT)
            draw.rectangle((0, y - 3, 6, y + step - 3), fill=ACCENT)
        draw.text(
            (gutter - 14, y), str(number), font=mono, fill=ACCENT if lit else "#475569", anchor="ra"
        )
        x, used = float(gutter), 0
        for chunk, colour in rows[number - 1] if number - 1 < len(rows) else []:
            if used + len(chunk) > limit:
                chunk = chunk[: max(0, limit - used - 1)] + "…"
            draw.text((x, y), chunk, font=mono, fill=colour if lit else _dim(colour))
            x += draw.textlength(chunk, font=mono)
            used += len(chunk)
            if used >= limit:
                break
    image.save(out)
    return out


def _dim(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c * 0.45 + 15 * 0.55):02x}" for c in (r, g, b))


# ------------------------------------------------------------------------------ others
def tree_image(scene: Scene, part: str, out: Path) -> Path:
    folder = ROOT / scene.data["file"]
    image, draw = canvas(part, scene.show)
    mono, bold = font(19, mono=True), font(19, mono=True, bold=True)
    y = BAND + 24
    draw.text((40, y), scene.data["file"] + "/", font=bold, fill=ACCENT)
    y += 36
    top = sorted(p.name for p in folder.glob("*.py"))
    entries = [
        (d.name + "/", sorted(p.name for p in d.glob("*.py") if p.name != "__init__.py"))
        for d in sorted(folder.iterdir())
        if d.is_dir() and d.name != "__pycache__"
    ]
    entries.append(("", [n for n in top if n != "__init__.py"]))
    for name, files in entries:
        text, x0 = "  ".join(files), 250
        draw.text((60, y), name or "(top)", font=bold, fill=TEXT if name else MUTED)
        width = int((W - x0 - 30) // draw.textlength("M", font=mono))
        for row in _wrap(text, width):
            draw.text((x0, y), row, font=mono, fill=MUTED)
            y += 28
        y += 10
    image.save(out)
    return out


def _wrap(text: str, width: int) -> list[str]:
    rows, row = [], ""
    for word in text.split():
        if row and len(row) + 1 + len(word) > width:
            rows.append(row)
            row = word
        else:
            row = f"{row} {word}".strip()
    return [*rows, row] if row else rows


def figures_image(scene: Scene, part: str, out: Path) -> Path:
    lines = (ROOT / scene.data["file"]).read_text().splitlines()
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() == scene.data["anchor"])
    except StopIteration:
        raise SystemExit(f"{scene.data['file']}: no heading {scene.data['anchor']!r}") from None
    table = []
    for line in lines[at + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|- :"):
            table.append([cell.strip().replace("**", "") for cell in line.strip("|").split("|")])
    picked = []
    for wanted in scene.data["rows"]:
        row = next((r for r in table if wanted in r[0]), None)
        if row is None:
            raise SystemExit(f"{scene.data['file']}: no figure row containing {wanted!r}")
        picked.append(row)
    image, draw = canvas(part, scene.show)
    head, cell, small = font(21, bold=True), font(21), font(18)
    y = BAND + 30
    for measure, value, *_ in picked:
        draw.text((40, y), measure, font=head, fill=TEXT)
        y += 32
        for row in _wrap(value.replace("`", ""), 95):
            draw.text((64, y), row, font=cell, fill=ACCENT)
            y += 30
        y += 16
    note = (
        "A rehearsal on our machines, not a live deployment: podman --memory 512m "
        "--cpus 0.1, Postgres behind PgBouncer with TLS and SCRAM, as Neon gives them."
    )
    for row in _wrap(note, 110):
        draw.text((40, y + 6), row, font=small, fill=MUTED)
        y += 26
    image.save(out)
    return out


def slide_image(scene: Scene, part: str, out: Path) -> Path:
    image, draw = canvas(part, scene.show)
    draw.text((60, BAND + 60), scene.data["heading"], font=font(38, bold=True), fill=TEXT)
    y, body = BAND + 150, font(28)
    for bullet in scene.data["bullets"]:
        colour = MUTED if bullet.startswith(("instead of", "proof")) else TEXT
        for i, row in enumerate(_wrap(bullet, 68)):
            if i == 0:
                draw.ellipse((70, y + 12, 82, y + 24), fill=ACCENT)
            draw.text((100, y), row, font=body, fill=colour)
            y += 42
        y += 22
    image.save(out)
    return out


def diagram_image(scene: Scene, part: str, out: Path, work: Path) -> Path:
    dot = ROOT / "video" / "diagrams" / f"{scene.data['diagram']}.dot"
    drawn = work / f"{scene.data['diagram']}-dot.png"
    subprocess.run(["dot", "-Tpng", "-Gdpi=110", str(dot), "-o", str(drawn)], check=True)
    image, _ = canvas(part, scene.show)
    picture = Image.open(drawn).convert("RGB")
    picture.thumbnail((W - 40, H - BAND - 30), Image.Resampling.LANCZOS)
    x, y = (W - picture.width) // 2, BAND + (H - BAND - picture.height) // 2
    image.paste(picture, (x, y))
    image.save(out)
    return out


def card_image(lines: list[str], part: str, title: str, out: Path) -> Path:
    image, draw = canvas(part, title)
    mono = font(18, mono=True)
    width = int((W - 80) // draw.textlength("M", font=mono))
    y = BAND + 24
    for line in lines:
        for row in [line[i : i + width] for i in range(0, max(len(line), 1), width)]:
            if y > H - 40:
                break
            colour = ACCENT if re.match(r"^(\$|event:|POST|webhook-)", row) else TEXT
            draw.text((40, y), row, font=mono, fill=colour)
            y += 25
    image.save(out)
    return out
