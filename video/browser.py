"""The live demo: the real service, driven in Swagger UI by Playwright, one screenshot per step.

`record(steps, out_dir)` starts `notes-api serve` (the project's .venv) on a free port with a
throwaway SQLite database, its worker embedded, and `scripts/fake_model.py` as the summarizer;
then it walks the steps in order and returns {step: screenshot path} plus, for the card steps,
{step: lines to show}. Every step checks what the service answered and raises if it is not
what the narration says."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, Route, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the demo's stand-in model is the video's too
from fake_model import FakeModel, running_fake_model  # noqa: E402

WIDTH, HEIGHT = 1280, 720
BAND = 56  # the title band the frame adds above each screenshot (images.py)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
ADMIN, ANA, BEN = "admin@acme.example", "ana@acme.example", "ben@acme.example"
NOTE = {
    "title": "Acme renewal call",
    "raw_text": "Dana from Acme wants the CRM export by Friday and a quote for 40 seats. "
    "Follow up on Monday with the pricing sheet.",
}
FAIL_NOTE = {
    "title": "Initech wire transfer",
    "raw_text": "[fail] Wire transfer details for Initech; the demo model refuses this note.",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_service(model: FakeModel, receiver_port: int) -> Iterator[str]:
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
        WEBHOOK_ALLOW_PRIVATE="true",
        LOG_FORMAT="console",
    )
    log = tmp / "server.log"
    serve = [str(ROOT / ".venv/bin/notes-api"), "serve"]
    with log.open("wb") as out:
        process = subprocess.Popen(serve, env=env, cwd=tmp, stdout=out, stderr=out)
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


# ------------------------------------------------------------------ Swagger UI's assets
# FastAPI's /docs page may load Swagger UI from a CDN this machine cannot reach; the recorder
# then serves the same files from the swagger-ui-py package. A page that serves its own
# assets never asks for the CDN, and the route is unused.
def _swagger_static() -> Path:
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


def _serve_cdn(route: Route) -> None:
    name = route.request.url.split("?")[0].rsplit("/", 1)[-1]
    path = _swagger_static() / name
    if not path.is_file():
        route.fulfill(status=404, body="")
        return
    kind = "text/css" if name.endswith(".css") else "application/javascript"
    if name.endswith(".png"):
        kind = "image/png"
    route.fulfill(status=200, body=path.read_bytes(), content_type=kind)


# ------------------------------------------------------------------ the webhook receiver
class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.received: list[tuple[dict[str, str], str]] = []


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.server.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ------------------------------------------------------------------ the demo itself
@dataclass
class Demo:
    base: str
    page: Page
    model: FakeModel
    out: Path
    openapi: dict[str, Any]
    shots: dict[str, Path] = field(default_factory=dict)
    cards: dict[str, list[str]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    # --- HTTP beside the browser, for what happens off screen
    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def login(self, email: str) -> str:
        pair = self.api("POST", "/auth/login", json={"email": email, "password": PASSWORD})
        return str(pair["access_token"])

    # --- Swagger UI
    def operation(self, method: str, path: str) -> str:
        op = self.openapi["paths"][path][method.lower()]
        return f"#operations-{op['tags'][0]}-{op['operationId']}"

    def open_operation(self, method: str, path: str) -> Any:
        block = self.page.locator(self.operation(method, path))
        if not block.locator(".opblock-body").count():
            block.locator(".opblock-summary").first.click()
        block.locator("button.try-out__btn").first.wait_for()  # the body has rendered
        try_out = block.locator("button.try-out__btn", has_text="Try it out")
        if try_out.count():
            try_out.first.click()
        block.locator("button.execute").wait_for()
        return block

    def execute(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        expect: int,
    ) -> Any:
        block = self.open_operation(method, path)
        for name, value in (params or {}).items():
            block.locator(f'tr[data-param-name="{name}"] input').first.fill(value)
        if body is not None:
            block.locator("textarea.body-param__text").fill(json.dumps(body, indent=2))
        clear = block.locator("button.btn-clear")
        if clear.count():  # a previous answer would otherwise be read as this one's
            clear.first.click()
            block.locator(".live-responses-table").wait_for(state="detached")
        block.locator("button.execute").click()
        status = block.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for(timeout=30_000)
        got = int(status.inner_text().strip().split()[0])
        if got != expect:
            raise RuntimeError(f"{method} {path}: expected {expect}, Swagger UI showed {got}")
        text = block.locator(".live-responses-table .microlight").first.inner_text()
        return block, (json.loads(text) if text.strip().startswith(("{", "[")) else None)

    def shoot(self, step: str, anchor: Any, offset: int = 90) -> None:
        """Scroll `anchor` to `offset` px below the top, hide the open operations the step
        is not about, and take the viewport."""
        anchor.evaluate(
            "(el, off) => window.scrollTo(0, el.getBoundingClientRect().top + scrollY - off)",
            offset,
        )
        self.page.wait_for_timeout(300)
        path = self.out / f"{step}.png"
        self.page.screenshot(path=str(path))
        self.shots[step] = path

    def collapse_all(self) -> None:
        for summary in self.page.locator(".opblock.is-open .opblock-summary").all():
            summary.click()

    def authorize(self, email: str) -> None:
        page = self.page
        page.evaluate("window.scrollTo(0, 0)")
        page.locator(".auth-wrapper button.authorize").click()
        modal = page.locator(".modal-ux")
        logout = modal.locator("button", has_text="Logout")
        if logout.count():
            logout.first.click()
        modal.locator("#oauth_username").fill(email)
        modal.locator("#oauth_password").fill(PASSWORD)
        modal.locator(".auth-btn-wrapper button.authorize").click()
        modal.locator("button", has_text="Logout").first.wait_for()

    def close_dialog(self) -> None:
        self.page.locator(".modal-ux button.btn-done, .modal-ux button.close-modal").first.click()


def step_open(demo: Demo) -> None:
    page = demo.page
    page.goto(demo.base + "/docs")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    demo.shots["open"] = demo.out / "open.png"
    page.screenshot(path=str(demo.shots["open"]))


def step_signup(demo: Demo) -> None:
    body = {"email": ADMIN, "password": PASSWORD, "organization_name": "Acme"}
    block, answer = demo.execute("POST", "/auth/signup", body=body, expect=201)
    if answer["user"]["role"] != "ADMIN":
        raise RuntimeError(f"sign-up made {answer['user']['role']}, not ADMIN")
    admin = answer["access_token"]
    demo.state["admin"] = admin
    demo.shoot("signup", block.locator(".live-responses-table"), offset=260)
    demo.collapse_all()
    for email in (ANA, BEN):  # off screen, as the narration says
        demo.api("POST", "/users", admin, json={"email": email, "password": PASSWORD})


def step_authorize(demo: Demo) -> None:
    demo.authorize(ANA)
    demo.page.wait_for_timeout(300)
    demo.shots["authorize"] = demo.out / "authorize.png"
    demo.page.screenshot(path=str(demo.shots["authorize"]))
    demo.close_dialog()


def step_create(demo: Demo) -> None:
    key = "call-2026-11-30-acme"
    demo.state["key"] = key
    block, note = demo.execute(
        "POST", "/notes", body=NOTE, params={"Idempotency-Key": key}, expect=202
    )
    if note["status"] != "queued":
        raise RuntimeError(f"POST /notes answered status {note['status']}, not queued")
    demo.state["note"] = note["id"]
    demo.shoot("create", block.locator(".live-responses-table"), offset=230)
    demo.collapse_all()


def _get_note(demo: Demo, step: str, want: str, wait: str | None = None) -> Any:
    params = {"note_id": demo.state["note"]}
    if wait is not None:
        params["wait"] = wait
    block, note = demo.execute("GET", "/notes/{note_id}", params=params, expect=200)
    if note["status"] != want:
        raise RuntimeError(f"GET /notes/{{note_id}} showed {note['status']}, not {want}")
    demo.shoot(step, block.locator(".live-responses-table"), offset=230)
    return note


def step_processing(demo: Demo) -> None:
    _get_note(demo, "processing", "processing")


def step_done(demo: Demo) -> None:
    note = _get_note(demo, "done", "done", wait="10")
    if note["attempts"] != 1 or not note["summary"]:
        raise RuntimeError(f"expected one attempt and a summary, got {note}")
    demo.collapse_all()


def step_replay(demo: Demo) -> None:
    block, note = demo.execute(
        "POST", "/notes", body=NOTE, params={"Idempotency-Key": demo.state["key"]}, expect=202
    )
    headers = block.locator(".live-responses-table").inner_text().lower()
    if note["id"] != demo.state["note"] or "idempotent-replayed: true" not in headers:
        raise RuntimeError("the replay did not return the same note marked as replayed")
    demo.shoot("replay", block.locator(".live-responses-table tr.response"), 40)
    demo.collapse_all()


def step_other_agent(demo: Demo) -> None:
    demo.authorize(BEN)
    demo.close_dialog()
    block, _ = demo.execute(
        "GET", "/notes/{note_id}", params={"note_id": demo.state["note"], "wait": "0"}, expect=404
    )
    demo.shoot("other_agent", block.locator(".live-responses-table"), offset=230)
    demo.collapse_all()
    ben = demo.login(BEN)  # Ben's own note, written off screen
    text = "Ben's call with Globex: they are moving 12 seats to the annual plan."
    note = demo.api("POST", "/notes", ben, json={"title": "Globex seats", "raw_text": text})
    demo.api("GET", f"/notes/{note['id']}?wait=15", ben)


def step_admin_list(demo: Demo) -> None:
    demo.authorize(ADMIN)
    demo.close_dialog()
    block, page = demo.execute("GET", "/notes", params={"limit": "5"}, expect=200)
    owners = {item["owner_id"] for item in page["items"]}
    if len(owners) != 2:
        raise RuntimeError(f"the admin saw notes of {len(owners)} owners, not 2")
    demo.shoot("admin_list", block.locator(".live-responses-table"), offset=150)
    demo.collapse_all()


def step_failed(demo: Demo) -> None:
    demo.model.failing = True
    _, note = demo.execute("POST", "/notes", body=FAIL_NOTE, expect=202)
    demo.state["note"] = note["id"]
    demo.collapse_all()
    note = _get_note(demo, "failed", "failed", wait="10")
    if not note["error"]:
        raise RuntimeError("the failed note carries no error")
    demo.collapse_all()


def step_retry(demo: Demo) -> None:
    demo.model.failing = False  # the narration says so: the model now accepts the note
    block, note = demo.execute(
        "POST", "/notes/{note_id}/retry", params={"note_id": demo.state["note"]}, expect=202
    )
    if note["status"] != "queued":
        raise RuntimeError(f"retry answered {note['status']}, not queued")
    demo.shoot("retry", block.locator(".live-responses-table"), offset=230)
    demo.collapse_all()


def step_retried(demo: Demo) -> None:
    _get_note(demo, "retried", "done", wait="15")
    demo.collapse_all()


def step_events(demo: Demo) -> None:
    token = demo.login(ANA)
    note = demo.api("POST", "/notes", token, json=NOTE | {"title": "Events demo"})
    lines: list[str] = []
    # Last-Event-ID 0: the stream starts with every event the note has had, then goes live.
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "text/event-stream",
        "Last-Event-ID": "0",
    }
    url = f"{demo.base}/notes/{note['id']}/events"
    deadline = time.monotonic() + 20
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        if response.status_code != 200:
            raise RuntimeError(f"GET /notes/{{note_id}}/events -> {response.status_code}")
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")) or (line == "" and lines):
                lines.append(line)
            finished = re.search(r'"type":\s*"note\.(done|failed)"', line)
            if finished or time.monotonic() > deadline:
                break
    if not any(line.startswith("event:") for line in lines):
        raise RuntimeError("the event stream sent no event")
    command = f"$ curl -N -H 'Last-Event-ID: 0' {url.replace(demo.base, '')}"
    demo.cards["events"] = [command, "", *lines]


def step_webhook(demo: Demo) -> None:
    receiver: Receiver = demo.state["receiver"]
    schema = demo.openapi["components"]["schemas"]
    create = next(
        (
            v
            for k, v in schema.items()
            if k.lower().startswith("webhook")
            and "url" in v.get("properties", {})
            and "events" in v.get("required", [])
        ),
        None,
    )
    if create is None:
        raise RuntimeError("no webhook-create schema with url and events in /openapi.json")
    items = create["properties"]["events"].get("items", {})
    types = items.get("enum") or schema.get(items.get("$ref", "/").rsplit("/", 1)[-1], {}).get(
        "enum"
    )
    if not types:
        raise RuntimeError("the webhook event types are not listed in /openapi.json")
    types = ["note.done"] if "note.done" in types else types
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/notes"
    demo.api("POST", "/webhooks", demo.state["admin_token"], json={"url": url, "events": types})
    token = demo.login(ANA)
    demo.api("POST", "/notes", token, json=NOTE | {"title": "Webhook demo"})
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.2)
    if not receiver.received:
        raise RuntimeError("no webhook delivery arrived within 30 s")
    headers, body = receiver.received[0]
    wanted = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")
    shown = [f"{k}: {v}" for k, v in headers.items() if k.lower() in wanted]
    pretty = json.dumps(json.loads(body), indent=2).splitlines()
    demo.cards["webhook"] = ["POST /hooks/notes  (received on 127.0.0.1)", *shown, "", *pretty]


STEPS = {
    "open": step_open,
    "signup": step_signup,
    "authorize": step_authorize,
    "create": step_create,
    "processing": step_processing,
    "done": step_done,
    "replay": step_replay,
    "other_agent": step_other_agent,
    "admin_list": step_admin_list,
    "failed": step_failed,
    "retry": step_retry,
    "retried": step_retried,
    "events": step_events,
    "webhook": step_webhook,
}


def routes_of(base: str) -> set[str]:
    return set(httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"])


def record(
    steps: list[str], requires: dict[str, list[str]], out: Path
) -> tuple[dict[str, Path], dict[str, list[str]], list[str]]:
    """Screenshots of `steps`; returns (shots, cards, skipped steps)."""
    out.mkdir(parents=True, exist_ok=True)
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, args=(0.1,), daemon=True).start()
    with (
        running_fake_model(delay=4.0) as model,
        running_service(model, receiver.server_address[1]) as base,
        sync_playwright() as pw,
    ):
        openapi = httpx.get(f"{base}/openapi.json", timeout=10).json()
        skipped = [s for s in steps if not set(requires.get(s, [])) <= set(openapi["paths"])]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT - BAND})
        page = context.new_page()
        page.route(re.compile(r"^https://(cdn\.jsdelivr\.net|unpkg\.com)/.*"), _serve_cdn)
        page.route(re.compile(r"^https://fastapi\.tiangolo\.com/.*"), _serve_cdn)
        demo = Demo(base, page, model, out, openapi)
        demo.state["receiver"] = receiver
        try:
            for step in steps:
                if step in skipped:
                    continue
                if step == "webhook":
                    demo.state["admin_token"] = demo.login(ADMIN)
                STEPS[step](demo)
        finally:
            browser.close()
            receiver.shutdown()
    return demo.shots, demo.cards, skipped
