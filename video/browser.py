"""The screen recording: one Playwright video (its own `record_video`) of the whole walkthrough.

`record(...)` starts `notes-api serve` (the project's .venv) on a free port with a throwaway
SQLite database, its worker embedded and `scripts/fake_model.py` as the summarizer, a webhook
receiver that verifies signatures, Chromium (/usr/bin/chromium) and, for the deployment
scene, the production image and a Neon-shaped database (live.py, with the rehearsal's own
modules; built and started before the recording, the container during it). Then it plays every
scene beat by beat: Swagger UI driven with a visible cursor, typed fields and Execute clicks;
live terminals; the video's own pages (video/pages.py). A `Director` holds each beat until
the previous beat's narration is over and records when each beat really started, so the
narration is laid on the recording where it belongs (render.py). Every step checks what the
service answered and raises if it is not what the narration says."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import live
import pages
from playwright.sync_api import Locator, Page, Route, sync_playwright
from script import Scene, Script, code_view

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the demo's stand-in model is the video's too
from fake_model import FakeModel, _Handler  # noqa: E402

WIDTH, HEIGHT, BAND = 1920, 1080, 160  # the picture above the caption band is 1920x920
FPS = 15
ZOOM = 1.5  # Swagger UI at 150 %: its 14 px text is 21 px, its 13 px JSON 19.5 px
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--font-render-hinting=none",
]
LEAD, BEAT_GAP, TAIL = 0.5, 0.45, 0.9  # seconds: before a scene's first beat, between, after
PASSWORD = "correct horse battery staple"
ADMIN, ANA, BEN = "admin@acme.example", "ana@acme.example", "ben@acme.example"
NOTE = {
    "title": "Acme renewal call",
    "raw_text": "Dana from Acme wants the CRM export by Friday and a quote for 40 seats. "
    "Follow up on Monday with the pricing sheet.",
}
BEN_NOTE = {
    "title": "Globex seats",
    "raw_text": "Globex is moving 12 seats to the annual plan. Send the new invoice.",
}
FAIL_NOTE = {
    "title": "Initech wire transfer",
    "raw_text": "[fail] Wire transfer details for Initech; the demo model refuses this note.",
}
LIVE_NOTE = {
    "title": "Umbrella pilot",
    "raw_text": "Umbrella starts a pilot with 5 agents next week. Book the kickoff call.",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_service(model: FakeModel) -> Iterator[str]:
    port, tmp = free_port(), Path(tempfile.mkdtemp(prefix="notes-video-"))
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        PORT=str(port),
        APP_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp}/video.db",
        DATABASE_URL_DIRECT="",
        WORKER_EMBEDDED="true",
        SIGNUP_OPEN="true",
        SUMMARIZER="openai",
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY="sk-video-not-a-secret",
        OPENAI_TIMEOUT="120",  # the gated model may hold a summary for a while
        WEBHOOK_ALLOW_PRIVATE="true",
        LOG_FORMAT="console",
    )
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/notes-api"), "serve"], env=env, cwd=tmp, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"notes-api serve exited early:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("notes-api serve did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The stand-in model of `make demo`, with a gate: while it is shut, a summary waits for it
# (up to 60 s), so the video, not the machine's load, decides how long `processing` lasts.
class GatedModel(FakeModel):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GatedHandler)
        self.gate = threading.Event()
        self.gate.set()
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"


class _GatedHandler(_Handler):
    server: GatedModel

    def do_POST(self) -> None:
        self.server.gate.wait(60)
        super().do_POST()


@contextlib.contextmanager
def running_model() -> Iterator[GatedModel]:
    model = GatedModel()
    model.delay = 1.5
    threading.Thread(target=model.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield model
    finally:
        model.gate.set()
        model.shutdown()
        model.server_close()


# FastAPI's /docs loads Swagger UI from a CDN this machine may not reach: the recorder serves
# the same files from the swagger-ui-py package.
def _serve_cdn(route: Route) -> None:
    import swagger_ui

    name = route.request.url.split("?")[0].rsplit("/", 1)[-1]
    path = Path(swagger_ui.__file__).parent / "static" / name
    if not path.is_file():
        route.fulfill(status=404, body="")
        return
    kind = {"css": "text/css", "png": "image/png"}.get(name.rsplit(".", 1)[-1], "text/javascript")
    route.fulfill(status=200, body=path.read_bytes(), content_type=kind)


# ------------------------------------------------------------------ the webhook receiver
class Receiver(ThreadingHTTPServer):
    """Verifies each delivery as docs/events.md tells a receiver to (Standard Webhooks:
    HMAC-SHA256 of `id.timestamp.body` under the secret), and reports what it did."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.secret = ""
        self.report: Callable[[list[tuple[str, str]]], None] = lambda lines: None
        self.verified: list[dict[str, Any]] = []


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        stamp = self.headers.get("webhook-timestamp", "0")
        signatures = self.headers.get("webhook-signature", "").split()
        key = base64.b64decode(self.server.secret.removeprefix("whsec_"))
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        good = any(hmac.compare_digest(s.partition(",")[2], expected) for s in signatures)
        fresh = abs(time.time() - int(stamp)) < 300
        event = json.loads(body) if good else {}
        lines = [
            (f"POST {self.path}", "cmd"),
            (f"webhook-id: {msg_id}", "dim"),
            (f"webhook-timestamp: {stamp} ({time.time() - int(stamp):.1f} s ago)", "dim"),
            (f"webhook-signature: {' '.join(signatures)[:48]}…", "dim"),
            ("HMAC-SHA256(secret, id.timestamp.body):", "dim"),
            (f"  {expected[:44]}…", "dim"),
            (
                "✔ signature matches, timestamp fresh" if good and fresh else "✘ REJECTED",
                "ok" if good and fresh else "bad",
            ),
        ]
        if good and fresh:
            data = event.get("data", {})
            lines += [
                (f"event {event.get('type')}  note {str(data.get('id', ''))[:8]}…", "ev"),
                (f"summary: {data.get('summary')}", "ev"),
                ("→ 204 No Content", "ok"),
            ]
            self.server.verified.append(event)
        self.server.report(lines)
        self.send_response(204 if good and fresh else 400)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ------------------------------------------------------------------ timing
@dataclass
class Director:
    """Holds each beat until the previous beat's narration has been said, and records when
    each beat really started (time.monotonic())."""

    page: Page
    durations: dict[str, list[float]]  # scene id -> its beats' narration lengths, s
    times: dict[str, dict[str, Any]] = field(default_factory=dict)
    scene: Scene | None = None
    free_at: float = 0.0

    def wait_until(self, moment: float) -> None:
        while (left := moment - time.monotonic()) > 0:
            self.page.wait_for_timeout(min(left, 0.25) * 1000)

    def start(self, scene: Scene) -> None:
        self.scene = scene
        now = time.monotonic()
        self.times[scene.id] = {"start": now, "beats": []}
        self.free_at = now + LEAD

    def beat(self, k: int) -> None:
        assert self.scene is not None
        mine = self.times[self.scene.id]["beats"]
        if k != len(mine):
            raise RuntimeError(f"scene {self.scene.id}: beat {k} out of order")
        self.wait_until(self.free_at)
        now = time.monotonic()
        mine.append(now)
        self.free_at = now + self.durations[self.scene.id][k] + BEAT_GAP

    def hold(self) -> None:
        """Keep the picture until the current beat has been said."""
        self.wait_until(self.free_at - BEAT_GAP)

    def finish(self) -> None:
        assert self.scene is not None
        said = len(self.times[self.scene.id]["beats"])
        if said != len(self.scene.beats):
            raise RuntimeError(f"scene {self.scene.id}: {said} of {len(self.scene.beats)} beats")
        self.wait_until(self.free_at - BEAT_GAP + TAIL)
        self.times[self.scene.id]["end"] = time.monotonic()


# ------------------------------------------------------------------ Swagger UI, driven
CURSOR_JS = """
(() => {
  const make = () => {
    if (document.getElementById('__cursor')) return;
    const c = document.createElement('div');
    c.id = '__cursor';
    c.style.cssText = 'position:fixed;left:0;top:0;z-index:2147483647;pointer-events:none;' +
      'display:none;width:40px;height:40px;will-change:transform';
    c.innerHTML = '<svg width="40" height="40" viewBox="0 0 24 24"><path d="M4 2 L4 20 L9 15 ' +
      'L12.5 22 L15.5 20.6 L12 13.8 L19 13.8 Z" fill="#fff" stroke="#111" stroke-width="1.4" ' +
      'stroke-linejoin="round"/></svg>';
    const ring = document.createElement('div');
    ring.id = '__ring';
    ring.style.cssText = 'position:fixed;z-index:2147483646;pointer-events:none;width:56px;' +
      'height:56px;margin:-28px 0 0 -28px;border:5px solid #f59e0b;border-radius:50%;opacity:0;';
    document.documentElement.append(c, ring);
  };
  window.__cur = (x, y) => { make(); const c = document.getElementById('__cursor');
    c.style.display = 'block'; c.style.transform = `translate(${x - 6}px, ${y - 3}px)`; };
  window.__glide = (x0, y0, x1, y1, ms) => { const t0 = performance.now();
    const step = (now) => { const t = Math.min(1, (now - t0) / ms), e = t * t * (3 - 2 * t);
      window.__cur(x0 + (x1 - x0) * e, y0 + (y1 - y0) * e);
      if (t < 1) requestAnimationFrame(step); };
    requestAnimationFrame(step); };
  window.__click = (x, y) => { make(); const r = document.getElementById('__ring');
    r.style.left = x + 'px'; r.style.top = y + 'px';
    r.animate([{opacity: 1, transform: 'scale(.4)'}, {opacity: 0, transform: 'scale(1.3)'}],
      {duration: 600}); };
})();
"""

SWAGGER_CSS = f"""
body {{ zoom: {ZOOM}; padding-top: 64px; }}
.swagger-ui .microlight, .swagger-ui pre {{ font-size: 13px !important;
  white-space: pre-wrap !important; word-break: break-all !important; }}
.swagger-ui textarea {{ font-size: 13px !important; }}
.swagger-ui .info {{ margin: 20px 0 !important; }}
#__head {{ position: fixed; top: 0; left: 0; right: 0; height: 96px; z-index: 2147483000;
  display: flex; align-items: center; gap: 28px; padding: 0 56px; background: #1e293b;
  border-bottom: 3px solid #38bdf8; font-family: 'DejaVu Sans', sans-serif; color: #e2e8f0; }}
#__head .part {{ color: #38bdf8; font-weight: bold; font-size: 30px; white-space: nowrap; }}
#__head .title {{ font-size: 34px; white-space: nowrap; overflow: hidden; }}
"""


@dataclass
class Demo:
    base: str
    page: Page
    model: GatedModel
    receiver: Receiver
    openapi: dict[str, Any]
    d: Director
    state: dict[str, Any] = field(default_factory=dict)
    mouse: tuple[float, float] = (960.0, 500.0)

    # --- HTTP beside the browser, for the few things not shown
    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def login(self, email: str) -> str:
        pair = self.api("POST", "/auth/login", json={"email": email, "password": PASSWORD})
        return str(pair["access_token"])

    # --- the cursor
    def glide(self, target: Locator | tuple[float, float], ms: int = 450) -> tuple[float, float]:
        """Move the drawn cursor (and the mouse) to `target`, eased, in one round trip."""
        if isinstance(target, tuple):
            x, y = target
        else:
            target.scroll_into_view_if_needed()
            box = target.bounding_box()
            if box is None:
                raise RuntimeError(f"{target} has no box")
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        x0, y0 = self.mouse
        self.page.evaluate(f"__glide({x0:.0f}, {y0:.0f}, {x:.0f}, {y:.0f}, {ms})")
        self.page.wait_for_timeout(ms + 40)
        self.page.mouse.move(x, y)
        self.mouse = (x, y)
        return x, y

    def click(self, target: Locator) -> None:
        x, y = self.glide(target)
        self.page.evaluate(f"__click({x:.0f}, {y:.0f})")
        self.page.mouse.click(x, y)  # where the cursor is: no actionability waits

    def type_into(self, target: Locator, text: str, chunk: int = 6, pause: int = 0) -> None:
        """Typed on screen a few characters at a time (a round trip per key is too slow on
        a busy machine to look like typing)."""
        self.click(target)
        target.press("Control+a")
        target.press("Delete")
        for i in range(0, len(text), chunk):
            self.page.keyboard.insert_text(text[i : i + chunk])
            if pause:
                self.page.wait_for_timeout(pause)

    def scroll_to(self, target: Locator, offset: int = 120) -> None:
        """Scroll so `target`'s top is `offset` px below the header, smoothly."""
        target.evaluate(
            "(el, off) => window.scrollTo({top: el.getBoundingClientRect().top + scrollY - off,"
            " behavior: 'smooth'})",
            offset,
        )
        self.page.wait_for_timeout(700)
        self.page.evaluate(f"window.__cur && __cur({self.mouse[0]:.0f}, {self.mouse[1]:.0f})")

    def head(self, part: str, title: str) -> None:
        self.page.evaluate(
            "([p, t]) => { let h = document.getElementById('__head'); if (!h) { h ="
            " document.createElement('div'); h.id = '__head'; document.documentElement"
            ".append(h); } h.innerHTML = '<span class=part></span><span class=title></span>';"
            " h.children[0].textContent = p; h.children[1].textContent = t; }",
            [part, title.replace("`", "")],
        )

    # --- Swagger UI
    def block(self, method: str, path: str) -> Locator:
        op = self.openapi["paths"][path][method.lower()]
        return self.page.locator(f"#operations-{op['tags'][0]}-{op['operationId']}")

    def open_operation(self, method: str, path: str) -> Locator:
        block = self.block(method, path)
        if not block.locator(".opblock-body").count():
            self.click(block.locator(".opblock-summary").first)
        block.locator("button.try-out__btn").first.wait_for()
        self.scroll_to(block, 110)
        try_out = block.locator("button.try-out__btn", has_text="Try it out")
        if try_out.count():
            self.click(try_out.first)
        block.locator("button.execute").wait_for()
        return block

    def fill(
        self,
        block: Locator,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        typed: bool = True,
    ) -> None:
        for name, value in (params or {}).items():
            field_ = block.locator(f'tr[data-param-name="{name}"] input').first
            if typed:
                self.type_into(field_, value)
            else:
                field_.fill(value)
        if body is not None:
            area = block.locator("textarea.body-param__text")
            text = json.dumps(body, indent=2)
            if typed:
                self.scroll_to(area, 160)
                self.type_into(area, text, chunk=8)
            else:
                area.fill(text)

    def execute(self, block: Locator, expect: int, method: str, path: str) -> Any:
        clear = block.locator("button.btn-clear")
        if clear.count():
            clear.first.evaluate("b => b.click()")
            block.locator(".live-responses-table").wait_for(state="detached")
        self.click(block.locator("button.execute"))
        status = block.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for(timeout=30_000)
        got = int(status.inner_text().strip().split()[0])
        if got != expect:
            raise RuntimeError(f"{method} {path}: expected {expect}, Swagger UI showed {got}")
        self.scroll_to(block.locator(".live-responses-table"), 120)
        text = block.locator(".live-responses-table .microlight").first.inner_text()
        return json.loads(text) if text.strip().startswith(("{", "[")) else None

    def call(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        typed: bool = True,
        before: Callable[[], None] | None = None,
    ) -> Any:
        block = self.open_operation(method, path)
        self.fill(block, body=body, params=params, typed=typed)
        if before:
            before()
        return self.execute(block, expect, method, path)

    def collapse_all(self) -> None:
        for summary in self.page.locator(".opblock.is-open .opblock-summary").all():
            summary.click()

    def authorize(self, email: str, *, typed: bool = True) -> None:
        page = self.page
        page.evaluate("window.scrollTo({top: 0, behavior: 'smooth'})")
        page.wait_for_timeout(500)
        self.click(page.locator(".auth-wrapper button.authorize"))
        modal = page.locator(".modal-ux")
        logout = modal.locator("button", has_text="Logout")
        if logout.count():
            self.click(logout.first)
        for selector, value in (("#oauth_username", email), ("#oauth_password", PASSWORD)):
            if typed:
                self.type_into(modal.locator(selector), value)
            else:
                modal.locator(selector).fill(value)
        self.click(modal.locator(".auth-btn-wrapper button.authorize"))
        modal.locator("button", has_text="Logout").first.wait_for()
        page.wait_for_timeout(600)
        self.click(page.locator(".modal-ux button.btn-done, .modal-ux button.close-modal").first)


# ------------------------------------------------------------------ the scenes
def demo_open(x: Demo) -> None:
    x.d.beat(0)
    for point in ((700, 300), (1300, 520), (900, 700)):
        x.glide(point, ms=800)
        x.page.wait_for_timeout(600)
    x.page.mouse.wheel(0, 500)
    x.page.wait_for_timeout(1500)
    x.page.mouse.wheel(0, -500)


def demo_signup(x: Demo) -> None:
    x.d.beat(0)
    body = {"email": ADMIN, "password": PASSWORD, "organization_name": "Acme"}
    block = x.open_operation("POST", "/auth/signup")
    x.fill(block, body=body)
    answer = x.execute(block, 201, "POST", "/auth/signup")
    x.d.beat(1)
    if answer["user"]["role"] != "ADMIN":
        raise RuntimeError(f"sign-up made {answer['user']['role']}, not ADMIN")
    x.page.wait_for_timeout(1500)
    x.scroll_to(block.locator(".live-responses-table .microlight").first, 140)


def demo_users(x: Demo) -> None:
    x.collapse_all()
    x.d.beat(0)
    x.authorize(ADMIN)
    x.d.beat(1)
    answer = x.call("POST", "/users", 201, body={"email": ANA, "password": PASSWORD})
    if answer["role"] != "AGENT":
        raise RuntimeError(f"POST /users made {answer['role']}")
    block = x.block("POST", "/users")
    x.fill(block, body={"email": BEN, "password": PASSWORD}, typed=False)
    x.execute(block, 201, "POST", "/users")


def demo_login(x: Demo) -> None:
    x.collapse_all()
    x.d.beat(0)
    block = x.open_operation("POST", "/auth/login")
    x.fill(block, body={"email": ANA, "password": PASSWORD})
    pair = x.execute(block, 200, "POST", "/auth/login")
    x.d.beat(1)
    if not pair.get("access_token") or not pair.get("refresh_token"):
        raise RuntimeError(f"the login answered {pair}")
    x.glide(block.locator(".live-responses-table .microlight").first)
    x.d.hold()  # the tokens stay on screen while they are described
    x.collapse_all()
    x.authorize(ANA, typed=False)  # the Authorize dialog takes the same login, for Swagger


def demo_create(x: Demo) -> None:
    x.collapse_all()
    x.model.gate.clear()  # `processing` until the next scene lets the model answer
    x.d.beat(0)
    key = "call-2026-12-07-acme"
    block = x.open_operation("POST", "/notes")
    x.fill(block, params={"Idempotency-Key": key}, body=NOTE)
    note = x.execute(block, 202, "POST", "/notes")
    x.d.beat(1)
    if note["status"] != "queued":
        raise RuntimeError(f"POST /notes answered status {note['status']}, not queued")
    x.state["note"] = note["id"]


def _get(x: Demo, want: str, wait: str | None, *, note: str | None = None) -> Any:
    params = {"note_id": note or x.state["note"]}
    if wait is not None:
        params["wait"] = wait
    got = x.call("GET", "/notes/{note_id}", 200, params=params)
    if got["status"] != want:
        raise RuntimeError(f"GET /notes/{{note_id}} showed {got['status']}, not {want}")
    return got


def demo_progress(x: Demo) -> None:
    x.collapse_all()
    _get(x, "processing", None)
    x.d.beat(0)
    x.page.wait_for_timeout(1500)
    x.d.beat(1)
    block = x.block("GET", "/notes/{note_id}")
    x.fill(block, params={"wait": "10"})
    threading.Timer(2.5, x.model.gate.set).start()
    got = x.execute(block, 200, "GET", "/notes/{note_id}")
    if got["status"] != "done" or got["attempts"] != 1 or not got["summary"]:
        raise RuntimeError(f"expected done after one attempt, got {got}")


def demo_ben(x: Demo) -> None:
    x.collapse_all()
    x.d.beat(0)
    x.authorize(BEN)
    block = x.open_operation("GET", "/notes/{note_id}")
    x.fill(block, params={"note_id": x.state["note"], "wait": "0"})
    x.execute(block, 404, "GET", "/notes/{note_id}")
    x.d.beat(1)
    x.d.beat(2)
    x.collapse_all()
    x.call(
        "POST",
        "/notes",
        202,
        body=BEN_NOTE,
        params={"Idempotency-Key": "ben-globex-1"},
        typed=False,
    )


def demo_admin(x: Demo) -> None:
    x.collapse_all()
    x.authorize(ADMIN, typed=False)
    listing = x.call("GET", "/notes", 200, params={"limit": "5"})
    owners = {item["owner_id"] for item in listing["items"]}
    if len(owners) != 2:
        raise RuntimeError(f"the admin saw notes of {len(owners)} owners, not 2")
    x.d.beat(0)
    x.page.wait_for_timeout(1200)
    x.page.mouse.wheel(0, 350)


def demo_fail(x: Demo) -> None:
    x.collapse_all()
    x.d.beat(0)
    x.model.failing = True
    note = x.call(
        "POST", "/notes", 202, body=FAIL_NOTE, params={"Idempotency-Key": "initech-1"}, typed=False
    )
    x.state["note"] = note["id"]
    x.collapse_all()
    got = _get(x, "failed", "10")
    if not got["error"]:
        raise RuntimeError("the failed note carries no error")
    x.d.beat(1)


def demo_retry(x: Demo) -> None:
    x.collapse_all()
    x.model.failing = False
    x.d.beat(0)
    note = x.call("POST", "/notes/{note_id}/retry", 202, params={"note_id": x.state["note"]})
    if note["status"] != "queued":
        raise RuntimeError(f"retry answered {note['status']}, not queued")
    x.collapse_all()
    _get(x, "done", "15")
    x.d.beat(1)


def demo_webhook(x: Demo) -> None:
    x.collapse_all()
    x.d.beat(0)
    url = f"http://127.0.0.1:{x.receiver.server_address[1]}/hooks/notes"
    created = x.call("POST", "/webhooks", 201, body={"url": url, "events": ["note.done"]})
    x.d.beat(1)
    if not str(created.get("secret", "")).startswith("whsec_"):
        raise RuntimeError(f"POST /webhooks answered {created}")
    x.receiver.secret = created["secret"]
    secret = x.page.get_by_text("whsec_").first
    x.glide(secret)


def demo_live(x: Demo) -> None:
    token = x.login(ANA)
    delivered = threading.Event()

    def report(lines: list[tuple[str, str]]) -> None:
        x.state.setdefault("hook_lines", []).append(lines)
        delivered.set()

    x.receiver.report = report
    x.model.delay = 3.0  # processing long enough to be read before done
    x.d.beat(0)
    handle = x.page.evaluate_handle("([t, b]) => window.runClient(t, b)", [token, LIVE_NOTE])
    deadline = time.monotonic() + 30
    while not x.page.evaluate("window.clientDone === true"):
        if time.monotonic() > deadline:
            raise RuntimeError("the event stream did not reach note.done within 30 s")
        if len(x.d.times[x.d.scene.id]["beats"]) == 1 and x.page.evaluate(  # type: ignore[union-attr]
            "document.querySelectorAll('#stream .ev').length >= 1"
        ):
            x.d.beat(1)
        x.page.wait_for_timeout(100)
    handle.dispose()
    if len(x.d.times[x.d.scene.id]["beats"]) == 1:  # type: ignore[union-attr]
        x.d.beat(1)
    if not delivered.wait(20):
        raise RuntimeError("no webhook delivery arrived within 20 s")
    x.d.beat(2)
    for lines in x.state.pop("hook_lines"):
        for text, cls in lines:
            x.page.evaluate("([t, c]) => append('hook', t, c)", [text, cls])
            x.page.wait_for_timeout(450)
    if not x.receiver.verified:
        raise RuntimeError("the receiver could not verify the delivery's signature")


def deploy_rehearsal(x: Demo, rig: live.Live) -> None:
    """The production image started now with Koyeb's limits against the Neon-shaped database:
    the real `podman run`, the container's log as it arrives, the demo's calls it answers and
    the job its worker takes, then `podman stop` as on a redeploy."""
    page, db = x.page, rig.db
    shown_log = 0

    def say(text: str, cls: str = "dim", pane: str = "term") -> None:
        page.evaluate("([p, t, c]) => append(p, t, c)", [pane, text, cls])

    def pump(until: Callable[[], bool], timeout: float, what: str, tick: float = 0.15) -> None:
        """Show the log's new lines until `until()`; raise after `timeout` seconds."""
        nonlocal shown_log
        deadline = time.monotonic() + timeout
        while True:
            for text, cls in rig.new_lines():
                say(text, cls, "log")
                shown_log += 1
            if until():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"deploy-rehearsal: {what} within {timeout:.0f} s")
            page.wait_for_timeout(tick * 1000)

    def beat(k: int) -> None:  # the log keeps arriving while the last beat is said
        pump(lambda: time.monotonic() >= x.d.free_at, 120, f"beat {k}")
        x.d.beat(k)

    def call(method: str, path: str, shown: str, token: str = "", **kw: Any) -> Any:
        say(f"{method} {path} {shown}", "cmd")
        response = rig.api(method, path, token, **kw)
        took = response.elapsed.total_seconds()
        say(
            f"→ HTTP {response.status_code} in {took:.2f} s", "ok" if response.is_success else "bad"
        )
        if not response.is_success:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    say(
        f"# started now: PostgreSQL {db.facts.get('postgres_version', '').split()[0]} "
        f"on :{db.pg_port}, TLS and SCRAM only",
    )
    say(f"# PgBouncer on :{db.bouncer_port}: {rig.pool_mode()}")
    say(f"# {live.stage.IMAGE}: built by container-smoke from this tree")
    x.d.beat(0)
    command = rig.command_lines()
    page.evaluate("([t, c, ms]) => typeLine('term', t, c, ms)", ["$ " + command[0], "cmd", 20])
    page.wait_for_timeout(len(command[0]) * 20 + 300)
    for line in command[1:]:
        say(line, "cmd")
        page.wait_for_timeout(220)

    beat(1)
    cid = rig.run()
    started = rig.container.started_at  # set just before `podman run`, as the rehearsal's
    say(f"{cid}  (podman run -d: the container's id)", "ok")
    say(rig.limits(), "ok")
    waited = [0.0]

    def healthy() -> bool:
        waited[0] = time.monotonic() - started
        if rig.healthy():
            return True
        page.evaluate(
            "([p, i, t, c]) => setLine(p, i, t, c)",
            ["term", "health", f"GET /healthz … no answer yet, {waited[0]:.0f} s", "dim"],
        )
        return False

    pump(healthy, 120, "/healthz did not answer", tick=0.5)
    page.evaluate(
        "([p, i, t, c]) => setLine(p, i, t, c)",
        ["term", "health", f"GET /healthz → 200, {waited[0]:.1f} s after podman run", "ok"],
    )
    for event in ("migrate.done", "app.started", "worker.started"):
        pump(lambda e=event: rig.logged(e) is not None, 30, f"no {event} in the log")
    worker = rig.logged("worker.started") or {}

    beat(2)

    beat(3)
    signup = {"email": ANA, "password": PASSWORD, "organization_name": "Acme"}
    shown = json.dumps({**signup, "password": live.MASK}, ensure_ascii=False)
    answer = call("POST", "/auth/signup", shown, json=signup)
    say(f"  user {answer['user']['email']}, role {answer['user']['role']}, tokens issued", "dim")
    token = answer["access_token"]
    body = json.dumps(
        {"title": NOTE["title"], "raw_text": NOTE["raw_text"][:24] + "…"}, ensure_ascii=False
    )
    watching = threading.Event()
    rig.watch_jobs(watching)  # from before the POST: the worker may take the job at once
    posted = time.monotonic()
    try:
        note = call("POST", "/notes", body, token, json=NOTE)
        if note["status"] != "queued":
            raise RuntimeError(f"POST /notes answered status {note['status']}, not queued")
        say(f"  id {note['id'][:8]}…  status {note['status']}", "dim")
        seen: tuple[str, str, str] | None = None

        def show_jobs() -> None:
            nonlocal seen
            while not rig.job_rows.empty():
                at, key, status, attempts, by = rig.job_rows.get()
                if key != note["id"]:
                    raise RuntimeError(f"the newest job is for {key}, not {note['id']}")
                seen = (status, attempts, by)
                taken = f", worker {by}" if by else ""
                say(
                    f"  jobs row in Postgres, {at - posted:+.2f} s after the POST: {status}, "
                    f"attempts {attempts}{taken}",
                    "ev",
                )

        show_jobs()
        got: dict[str, Any] = {}
        path = f"/notes/{note['id']}?wait=10"
        say(f"GET /notes/{note['id'][:8]}…?wait=10  (answers once the summary is done)", "cmd")

        def read() -> None:
            got["response"] = rig.api("GET", f"/notes/{note['id']}", token, params={"wait": 10})

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        def settled() -> bool:
            show_jobs()
            return not reader.is_alive() and seen is not None and seen[0] in ("done", "failed")

        pump(settled, 30, f"{path} did not answer", tick=0.1)
    finally:
        watching.set()
    response = got["response"]
    final = response.json()
    say(
        f"→ HTTP {response.status_code} in {response.elapsed.total_seconds():.2f} s  status "
        f"{final['status']}, attempts {final['attempts']}",
        "ok" if final["status"] == "done" else "bad",
    )
    if final["status"] != "done" or not final["summary"]:
        raise RuntimeError(f"the note ended {final}")
    say(f"  summary: {final['summary']}", "ev")

    beat(4)
    assert seen is not None
    if seen[2] != worker.get("worker_id"):
        raise RuntimeError(f"the job was taken by {seen[2]}, the log's worker is {worker}")
    say(f"✔ the job's worker, {seen[2]}, is the one its log announced (worker.started)", "ok")
    say(f"$ podman stop -t 30 {rig.container.name}   # SIGTERM, as on a redeploy", "cmd")
    stopping = rig.stop()
    pump(lambda: stopping.poll() is not None, 60, "podman stop did not return")
    page.wait_for_timeout(600)
    pump(lambda: True, 1, "the last lines")
    code = rig.exit_code()
    say(f"→ exit {code}", "ok" if code == 0 else "bad")
    if code != 0 or rig.logged("worker.stopped") is None:
        raise RuntimeError(f"the container stopped with {code}")
    say(f"$ podman rm {rig.container.name}", "cmd")
    rig.remove()
    if not shown_log:
        raise RuntimeError("the container's log showed nothing")


def page_beats(x: Demo, scene: Scene) -> None:
    for k in range(len(scene.beats)):
        x.d.beat(k)
        x.page.evaluate(f"beat({k})")


SWAGGER_SCENES: dict[str, Callable[[Demo], None]] = {
    "demo-open": demo_open,
    "demo-signup": demo_signup,
    "demo-users": demo_users,
    "demo-login": demo_login,
    "demo-create": demo_create,
    "demo-progress": demo_progress,
    "demo-ben": demo_ben,
    "demo-admin": demo_admin,
    "demo-fail": demo_fail,
    "demo-retry": demo_retry,
    "demo-webhook": demo_webhook,
}


def part_label(script: Script, part: str) -> str:
    number = list(script.parts).index(part)
    return script.parts[part] if number == 0 else f"{number} · {script.parts[part]}"


def page_html(script: Script, scene: Scene) -> str:
    part, title = part_label(script, scene.part), scene.show
    if scene.kind == "code":
        return pages.code_page(part, title, code_view(scene))
    if scene.id == "demo-live":
        return pages.live_page(part, title)
    if scene.id == "deploy-rehearsal":
        return pages.terminal_page(
            part,
            title,
            [
                ("term", "host: podman, the demo's calls, the jobs table"),
                ("log", "podman logs -f: the container's JSON log (time, event, fields)"),
            ],
        )
    name = scene.data["page"]
    if name == "agenda":
        return pages.agenda_page(part, title, script.parts)
    if name == "tree":
        return pages.tree_page(part, title)
    if name == "steps":
        return pages.steps_page(part, title)
    if name.startswith("design-"):
        return pages.design_page(part, title, name)
    if name == "close":
        return pages.close_page(part, title)
    raise SystemExit(f"scene {scene.id}: no page {name!r}")


def record(
    script: Script, durations: dict[str, list[float]], out: Path
) -> tuple[Path, float, dict[str, dict[str, Any]]]:
    """Records every scene; returns (the webm, the monotonic time its picture first showed
    the first scene, each scene's start, beats and end in monotonic time)."""
    out.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, args=(0.1,), daemon=True).start()
    htmls = {s.id: page_html(script, s) for s in script.scenes if s.kind != "swagger"}
    live_scene = any(s.id == "deploy-rehearsal" for s in script.scenes)
    with (
        live.running() if live_scene else contextlib.nullcontext() as rig,
        running_model() as model,
        running_service(model) as base,
        sync_playwright() as pw,
    ):
        openapi = httpx.get(f"{base}/openapi.json", timeout=10).json()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT - BAND},
            record_video_dir=str(out),
            record_video_size={"width": WIDTH, "height": HEIGHT},
            record_video_fps=FPS,
            bypass_csp=True,  # /docs forbids inline styles; the video adds its own
        )
        context.add_init_script(CURSOR_JS)
        page = context.new_page()
        page.set_content("<body style='background:#000'></body>")
        page.route(re.compile(r"^https://(cdn\.jsdelivr\.net|unpkg\.com)/.*"), _serve_cdn)
        page.route(re.compile(r"^https://fastapi\.tiangolo\.com/.*"), _serve_cdn)
        page.route(
            re.compile(r".*/__video/.*"),
            lambda route: route.fulfill(
                status=200,
                body=htmls[route.request.url.rsplit("/", 1)[-1]],
                content_type="text/html; charset=utf-8",
            ),
        )
        director = Director(page, durations)
        demo = Demo(base, page, model, receiver, openapi, director)
        page.wait_for_timeout(1500)  # black: the render finds where the picture starts
        first_shown = 0.0
        swagger_open = False
        try:
            for scene in script.scenes:
                part = part_label(script, scene.part)
                if scene.kind == "swagger":
                    if not swagger_open:
                        page.goto(base + "/docs")
                        page.locator(".opblock").first.wait_for(timeout=30_000)
                        page.add_style_tag(content=SWAGGER_CSS)
                        swagger_open = True
                    demo.head(part, scene.show)
                else:
                    page.goto(f"{base}/__video/{scene.id}")
                    swagger_open = False
                if not first_shown:
                    first_shown = time.monotonic()
                page.wait_for_timeout(150)
                director.start(scene)
                if scene.kind == "swagger":
                    SWAGGER_SCENES[scene.id](demo)
                elif scene.id == "demo-live":
                    demo_live(demo)
                elif scene.id == "deploy-rehearsal":
                    deploy_rehearsal(demo, rig)
                else:
                    page_beats(demo, scene)
                director.finish()
                took = director.times[scene.id]["end"] - director.times[scene.id]["start"]
                print(f"video: recorded {scene.id} ({took:.1f} s)", flush=True)
        finally:
            video = page.video
            context.close()
            browser.close()
            receiver.shutdown()
        webm = Path(video.path()) if video else None
    if webm is None or not webm.exists():
        raise RuntimeError("Playwright wrote no video")
    return webm, first_shown, director.times
