"""The video's own pages (agenda, folder tree, code, terminals, steps, design choices, the
close), as HTML the recorder serves beside Swagger UI. Every page has `beat(k)`: elements
marked `data-beat="k"` appear at beat k; a code page lights its beat's lines and scrolls them
into the middle. Sizes are CSS pixels of the 1920x920 picture above the caption band: body
text 30 px or more, code 27 px, terminal text 22 px (at least 18 px everywhere)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_for_filename
from script import ROOT, CodeView

STYLE = """
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; background: #0f172a; color: #e2e8f0;
  font-family: 'DejaVu Sans', sans-serif; font-size: 30px; overflow: hidden; }
.head { height: 96px; display: flex; align-items: center; gap: 28px; padding: 0 56px;
  background: #1e293b; border-bottom: 3px solid #38bdf8; }
.head .part { color: #38bdf8; font-weight: bold; font-size: 30px; white-space: nowrap; }
.head .title { font-size: 34px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.head code, li code, p code { font-family: 'DejaVu Sans Mono', monospace; color: #7dd3fc; }
main { padding: 40px 72px; }
[data-beat] { opacity: 0; transform: translateY(18px);
  transition: opacity .6s ease, transform .6s ease; }
[data-beat].on { opacity: 1; transform: none; }
.lit { color: #fde68a; }
h1 { font-size: 64px; margin: 0 0 24px; }
h2 { font-size: 44px; margin: 0 0 28px; color: #f8fafc; }
ul { margin: 0; padding-left: 40px; } li { margin: 0 0 22px; line-height: 1.35; }
.muted { color: #94a3b8; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 48px; }
.card { background: #1e293b; border-radius: 14px; padding: 28px 34px; }
.card h3 { margin: 0 0 16px; font-size: 32px; }
.why h3 { color: #86efac; } .cost h3 { color: #fca5a5; }
.box { display: inline-block; padding: 16px 26px; border: 3px solid #38bdf8; border-radius: 12px;
  background: #172554; margin: 6px; font-size: 28px; }
.arrow { color: #38bdf8; font-size: 40px; margin: 0 10px; vertical-align: middle; }
"""

BEAT_JS = """
window.beat = (k) => {
  document.querySelectorAll('[data-beat]').forEach(el => {
    if (Number(el.dataset.beat) <= k) el.classList.add('on');
  });
  document.querySelectorAll('[data-lit]').forEach(el => {
    el.classList.toggle('lit', el.dataset.lit.split(',').map(Number).includes(k));
  });
  if (window.onBeat) window.onBeat(k);
};
"""


def _page(part: str, title: str, body: str, *, extra_css: str = "", script: str = "") -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><style>"
        + STYLE
        + extra_css
        + "</style></head><body>"
        + f"<div class='head'><span class='part'>{html.escape(part)}</span>"
        + f"<span class='title'>{_inline(title)}</span></div>"
        + body
        + "<script>"
        + BEAT_JS
        + script
        + "</script></body></html>"
    )


def _inline(text: str) -> str:
    """Backticks to <code>, the rest escaped."""
    parts = text.split("`")
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


# ------------------------------------------------------------------------------ code
CODE_CSS = """
.code { position: absolute; top: 96px; bottom: 0; left: 0; right: 0; overflow: hidden;
  padding: 24px 0; }
.code pre { margin: 0 0 80px; font-family: 'DejaVu Sans Mono', monospace; font-size: 27px;
  line-height: 40px; }
.ln { display: block; padding: 0 48px 0 64px; border-left: 10px solid transparent;
  transition: background .5s, opacity .5s, border-color .5s; opacity: .45; white-space: pre; }
.ln.on { opacity: 1; background: #334155; border-left-color: #38bdf8; }
.where { position: absolute; right: 40px; bottom: 18px; font-size: 22px; color: #94a3b8;
  font-family: 'DejaVu Sans Mono', monospace; background: #0f172aee; padding: 6px 14px;
  border-radius: 8px; }
"""


def code_page(part: str, title: str, view: CodeView) -> str:
    """The symbol's source, highlighted by Pygments; `beat(k)` lights focus k and scrolls it
    to the middle of the panel."""
    source = "\n".join(view.lines) + "\n"
    formatter = HtmlFormatter(style="one-dark", nowrap=True)
    rendered = highlight(source, get_lexer_for_filename(Path(view.file).name), formatter)
    rows = _fix_spans(rendered.rstrip("\n").split("\n"))
    lines = "".join(
        f"<span class='ln' id='l{i}'>{row or ' '}</span>" for i, row in enumerate(rows, 1)
    )
    css = CODE_CSS + formatter.get_style_defs(".code pre")
    body = (
        f"<div class='code' id='panel'><pre>{lines}</pre></div>"
        f"<div class='where'>{html.escape(view.file)} · {html.escape(view.symbol)}"
        f" · lines {view.first}–{view.last}</div>"
    )
    script = f"""
const focus = {json.dumps(view.focus)};
const panel = document.getElementById('panel');
window.onBeat = (k) => {{
  const [a, b] = focus[k];
  document.querySelectorAll('.ln').forEach((el, i) => el.classList.toggle('on', i + 1 >= a && i + 1 <= b));
  const first = document.getElementById('l' + a), last = document.getElementById('l' + b);
  const middle = (first.offsetTop + last.offsetTop + last.offsetHeight) / 2;
  panel.scrollTo({{top: Math.max(0, middle - panel.clientHeight / 2), behavior: 'smooth'}});
}};
"""
    return _page(part, title, body, extra_css=css, script=script)


def _fix_spans(rows: list[str]) -> list[str]:
    """A token spanning lines (a docstring) is one <span> across them: close it at each line's
    end and open it again on the next, so every line is well-formed on its own."""
    out, carried = [], []
    for row in rows:
        row = "".join(carried) + row
        stack: list[str] = []
        for tag in re.findall(r"<span[^>]*>|</span>", row):
            if tag == "</span>":
                if stack:
                    stack.pop()
            else:
                stack.append(tag)
        out.append(row + "</span>" * len(stack))
        carried = stack
    return out


# ------------------------------------------------------------------------------ pages
def agenda_page(part: str, title: str, parts: dict[str, str]) -> str:
    items = "".join(
        f"<li data-beat='1' style='transition-delay:{i * 0.5:.1f}s'>{html.escape(t)}</li>"
        for i, t in enumerate(list(parts.values())[1:])
    )
    body = (
        "<main style='padding-top:90px'><h1 data-beat='0'>Notes API</h1>"
        "<p data-beat='0' style='font-size:36px;max-width:1500px'>Write a call note; the "
        "service accepts it at once (202) and a background job summarizes it.</p>"
        f"<ol style='font-size:40px;margin-top:60px'>{items}</ol></main>"
    )
    return _page(part, title, body)


def tree_page(part: str, title: str) -> str:
    package = ROOT / "src" / "notes_api"
    cards = []
    for folder in sorted(p for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"):
        files = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
        if not files:
            continue
        names = " ".join(
            f"<span class='{'lit' if f in ('router.py', 'service.py') else ''}'>{f}</span>"
            for f in files
        )
        cards.append(
            f"<div class='card' style='padding:18px 24px'><h3 style='font-size:30px;margin:0 0 8px'>"
            f"{folder.name}/</h3><div style='font-family:DejaVu Sans Mono;font-size:22px;"
            f"color:#cbd5e1;line-height:1.5'>{names}</div></div>"
        )
    top = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
    body = (
        "<main style='padding:28px 56px'><div style='display:grid;grid-template-columns:repeat(4,1fr);"
        f"gap:20px' data-beat='0'>{''.join(cards)}</div>"
        f"<p class='muted' data-beat='0' style='font-size:24px;margin:18px 0 0'>top level: "
        f"{' '.join(top)}</p>"
        "<p data-beat='1' style='margin-top:22px;font-size:34px'>"
        "<span class='box'>router.py</span><span class='arrow'>→</span>"
        "<span class='box'>service.py</span><span class='arrow'>→</span>"
        "<span class='box'>repository.py</span>"
        "<span class='muted' style='font-size:26px;margin-left:20px'>parse · decide · SQL</span>"
        "</p></main>"
    )
    return _page(part, title, body)


def _koyeb_blocks() -> tuple[str, str]:
    """deploy/koyeb.md's secrets and `koyeb services create` blocks, as written there, with
    its OWNER/REPO placeholder named for what goes there."""
    text = (ROOT / "deploy" / "koyeb.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    secrets = next(b for b in blocks if "koyeb secrets create notes-database-url " in b)
    create = next(b for b in blocks if "koyeb services create api --app notes" in b)
    create = create.replace("OWNER/REPO", "<YOUR_GITHUB_USER>/<YOUR_FORK>")
    keep = [line for line in secrets.splitlines() if line.startswith("printf")][:3]
    return html.escape("\n".join(keep)), html.escape(create.strip())


def steps_page(part: str, title: str) -> str:
    mono = "font-family:DejaVu Sans Mono;font-size:19px;line-height:1.4;white-space:pre-wrap"
    neon = (
        "1. neon.tech → New project → database <b>notes</b>\n"
        "2. Connection string, <b>Pooled</b> on  → $POOLED\n"
        "3. Connection string, Pooled off → $DIRECT\n"
        "   postgresql://neondb_owner:&lt;PASSWORD&gt;@&lt;ENDPOINT&gt;.neon.tech/notes?sslmode=require\n"
        "4. JWT_SECRET=$(openssl rand -hex 32)"
    )
    secrets, create = _koyeb_blocks()
    body = (
        "<main style='padding:24px 40px;display:grid;grid-template-columns:1fr 1fr;gap:28px'>"
        f"<div><div class='card' data-beat='1' style='padding:20px 26px'><h3>Neon (Postgres)</h3>"
        f"<div style='{mono}'>{neon}</div></div>"
        f"<div class='card' data-beat='2' style='margin-top:20px;padding:20px 26px'><h3>Koyeb "
        f"secrets</h3><div style='{mono}'>{secrets}</div></div>"
        "<p data-beat='2' class='muted' style='font-size:24px;margin:16px 0 0'>&lt;…&gt; = a "
        "placeholder: put your own value there. All steps: deploy/koyeb.md</p>"
        "<p data-beat='3' style='font-size:26px;margin:12px 0 0'>Live at "
        "https://&lt;YOUR_APP&gt;.koyeb.app once /healthz passes. No live URL exists for "
        "this project.</p></div>"
        f"<div class='card' data-beat='2' style='padding:20px 26px'><h3>Koyeb service "
        f"(free: 512 MB, 0.1 vCPU)</h3><div style='{mono}'>{create}</div></div></main>"
    )
    return _page(part, title, body)


DESIGN: dict[str, dict[str, Any]] = {
    "design-queue": {
        "picture": "<span class='box'>POST /notes</span><span class='arrow'>→</span>"
        "<span class='box'>one transaction: note + job + event</span>"
        "<span class='arrow'>→</span><span class='box'>worker: claim, lease, done</span>",
        "why": ["note and job commit together: no lost summary", "no Redis on the free host"],
        "cost": ["workers poll (and wake on NOTIFY)", "throughput bounded by Postgres"],
    },
    "design-lease": {
        "picture": "<span class='box'>claim: token A, expires t+30 s</span>"
        "<span class='arrow'>→</span><span class='box'>write … WHERE token = A</span>"
        "<span class='arrow'>→</span><span class='box'>stale worker: 0 rows, dropped</span>",
        "why": ["a frozen worker cannot overwrite newer work", "each summary lands once"],
        "cost": ["the model may run twice for one note", "that call is paid twice"],
    },
    "design-tenancy": {
        "picture": "<span class='box'>visible_to(caller)</span><span class='arrow'>→</span>"
        "<span class='box'>every notes query</span><span class='arrow'>→</span>"
        "<span class='box'>not yours: 404</span>",
        "why": ["one rule, never forgotten in a handler", "404 does not confirm the note exists"],
        "cost": ["a typo and a forbidden id look alike", "support reads the logs"],
    },
}


def design_page(part: str, title: str, key: str) -> str:
    spec = DESIGN[key]
    first = 1 if key == "design-queue" else 0  # the first page opens with the part's intro
    why = "".join(f"<li>{html.escape(w)}</li>" for w in spec["why"])
    cost = "".join(f"<li>{html.escape(c)}</li>" for c in spec["cost"])
    body = (
        f"<main><p data-beat='{first}' style='font-size:32px'>{spec['picture']}</p>"
        "<div class='cols' style='margin-top:50px'>"
        f"<div class='card why' data-beat='1'><h3>Why</h3><ul>{why}</ul></div>"
        f"<div class='card cost' data-beat='2'><h3>Cost</h3><ul>{cost}</ul></div></div></main>"
    )
    return _page(part, title, body)


def close_page(part: str, title: str) -> str:
    rows = [
        (1, "Argon2id, two hashes at a time: fits 512 MB; 20 logins at once queue for seconds"),
        (2, "API and worker in one process on a free instance; split them when busy"),
        (3, "SQLite by default, Postgres in production: every database test runs twice"),
        (4, "Next: deploy from deploy/koyeb.md · a second model provider · the TypeScript client"),
    ]
    items = "".join(f"<li data-beat='{b}'>{html.escape(t)}</li>" for b, t in rows)
    body = (
        "<main style='padding-top:70px'><h2 data-beat='0'>Trade-offs we chose, and what is next</h2>"
        f"<ul style='font-size:34px'>{items}</ul>"
        "<p data-beat='5' style='margin-top:60px;font-size:40px;color:#38bdf8'>Thanks for "
        "watching.</p></main>"
    )
    return _page(part, title, body)


# ------------------------------------------------------------------------------ terminals
TERM_CSS = """
.panes { position: absolute; top: 96px; bottom: 0; left: 0; right: 0; display: grid;
  gap: 16px; padding: 16px; }
.pane { background: #020617; border: 2px solid #334155; border-radius: 12px; overflow: hidden;
  display: flex; flex-direction: column; }
.pane .bar { background: #1e293b; padding: 10px 18px; font-size: 22px; color: #94a3b8; }
.pane pre { margin: 0; padding: 14px 18px; font-family: 'DejaVu Sans Mono', monospace;
  font-size: 22px; line-height: 1.45; white-space: pre-wrap; word-break: break-all;
  overflow: hidden; flex: 1; }
.cmd { color: #7dd3fc; } .ok { color: #86efac; } .ev { color: #fde68a; } .dim { color: #94a3b8; }
.bad { color: #fca5a5; }
.fresh { animation: flash 1.2s ease-out; }
@keyframes flash { from { background: #1e3a8a; } to { background: transparent; } }
"""

TERM_JS = """
window.append = (pane, text, cls) => {
  const pre = document.querySelector('#' + pane + ' pre');
  const line = document.createElement('div');
  line.textContent = text;
  if (cls) line.className = cls;
  line.classList.add('fresh');
  pre.appendChild(line);
  while (pre.scrollHeight > pre.clientHeight && pre.children.length > 1) pre.removeChild(pre.firstChild);
};
window.setLine = (pane, id, text, cls) => {
  const line = document.getElementById(id);
  if (!line) { window.append(pane, text, cls); document.querySelector('#' + pane + ' pre').lastChild.id = id; return; }
  line.textContent = text;
  line.className = cls || '';
};
window.typeLine = async (pane, text, cls, ms) => {
  const pre = document.querySelector('#' + pane + ' pre');
  const line = document.createElement('div');
  line.className = cls || 'cmd';
  pre.appendChild(line);
  for (const ch of text) { line.textContent += ch; await new Promise(r => setTimeout(r, ms || 22)); }
};
"""


def terminal_page(part: str, title: str, panes: list[tuple[str, str]]) -> str:
    columns = " ".join("1fr" for _ in panes)
    inner = "".join(
        f"<div class='pane' id='{pid}'><div class='bar'>{html.escape(label)}</div><pre></pre></div>"
        for pid, label in panes
    )
    body = f"<div class='panes' style='grid-template-columns:{columns}'>{inner}</div>"
    return _page(part, title, body, extra_css=TERM_CSS, script=TERM_JS)


# The live pane's client: post a note, then follow its events (fetch streaming, since an
# EventSource cannot send the Authorization header).
LIVE_CLIENT_JS = """
window.runClient = async (token, body) => {
  const say = (t, c) => window.append('stream', t, c);
  await window.typeLine('stream', "$ curl -X POST /notes -d '{\\"title\\": \\"" + body.title + "\\", …}'", 'cmd', 14);
  const created = await fetch('/notes', {method: 'POST', headers: {'Authorization': 'Bearer ' + token,
    'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const note = await created.json();
  say('HTTP ' + created.status + '  id ' + note.id.slice(0, 8) + '…  status ' + note.status, 'ok');
  await window.typeLine('stream', '$ curl -N -H "Last-Event-ID: 0" /notes/' + note.id.slice(0, 8) + '…/events', 'cmd', 14);
  const response = await fetch('/notes/' + note.id + '/events', {headers: {'Authorization': 'Bearer ' + token,
    'Accept': 'text/event-stream', 'Last-Event-ID': '0'}});
  const reader = response.body.getReader(); const decoder = new TextDecoder(); let buffer = '';
  const started = performance.now();
  while (true) {
    const {value, done} = await reader.read(); if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf('\\n')) >= 0) {
      const line = buffer.slice(0, cut).replace(/\\r$/, ''); buffer = buffer.slice(cut + 1);
      const at = ((performance.now() - started) / 1000).toFixed(1).padStart(5) + ' s  ';
      if (line.startsWith('event:')) say(at + line, 'ev');
      else if (line.startsWith('data:')) {
        const data = JSON.parse(line.slice(5));
        const extra = data.data && data.data.summary ? '  summary: ' + data.data.summary : '';
        say('         data: ' + data.type + ' ' + (data.data ? data.data.status || '' : '') + extra, 'dim');
        if (/note\\.(done|failed)/.test(data.type)) { window.clientDone = true; reader.cancel(); return note.id; }
      }
    }
  }
  return note.id;
};
"""


def live_page(part: str, title: str) -> str:
    page = terminal_page(
        part,
        title,
        [
            ("stream", "client: GET /notes/{id}/events (server-sent events)"),
            ("hook", "webhook receiver on 127.0.0.1: verifies, then trusts"),
        ],
    )
    return page.replace("</script>", LIVE_CLIENT_JS + "</script>")
