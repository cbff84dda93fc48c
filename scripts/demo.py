"""A narrated walkthrough of the notes service that doubles as the smoke test of a deployment.

    python scripts/demo.py                                  # starts its own service
    BASE_URL=https://notes.example.com python scripts/demo.py

Exits non-zero, saying what was expected and what came instead, as soon as anything is off.
Against a remote service the failure-and-retry step needs DEMO_FAIL_NOTE_TEXT, a note text
that deployment's summarizer is known to reject; without it that step is skipped."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
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

COLOUR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
TEXT = (
    "Call with Dana from Acme. They want the CRM export by Friday and a quote for 40 seats. "
    "Follow up on Monday with the pricing sheet."
)


def _paint(code: str) -> Any:
    return lambda text: f"\033[{code}m{text}\033[0m" if COLOUR else str(text)


bold, dim, red, green, yellow, cyan = (_paint(c) for c in ("1", "2", "31", "32", "33", "36"))


class DemoFailure(Exception):
    pass


def check(cond: bool, what: str, got: object = "") -> None:
    if not cond:
        raise DemoFailure(f"expected {what}" + (f", got {got!r}" if got != "" else ""))


def equal(what: str, got: object, want: object) -> None:
    check(got == want, f"{what} {want!r}", got)


def short(value: str, keep: int = 10) -> str:
    return value if len(value) <= keep + 2 else value[:keep] + "…"


def as_curl(method: str, path: str, headers: dict[str, str], body: Any) -> str:
    """The request as curl would be written, with secrets abbreviated."""
    curl = ["curl"] + (["-X", method] if method != "GET" else []) + [f"$BASE_URL{path}"]
    for name, value in headers.items():
        shown = "Bearer " + short(value[7:]) if name == "Authorization" else value
        curl += ["-H", f"'{name}: {shown}'"]
    if body is not None:
        secret = {"password": "…", "refresh_token": short(body.get("refresh_token", ""))}
        shown_body = {k: secret.get(k) or short(v, 40) for k, v in body.items()}
        curl += ["--json", f"'{json.dumps(shown_body, ensure_ascii=False)}'"]
    return " ".join(curl)


def problem_detail(response: httpx.Response) -> str:
    """The `detail` of a problem+json answer, else the start of whatever came."""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(response.json()["detail"])
    return " ".join(response.text.split())[:200]


def show(**fields: object) -> None:
    for name, value in fields.items():
        print(f"    {dim(name + ':')} {value}")


@dataclass
class Demo:
    http: httpx.Client
    fake: FakeModel | None  # the demo's own model server, when it runs the service itself
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    state: dict[str, Any] = field(default_factory=dict)

    def call(
        self,
        request: str,
        expect: int,
        token: str = "",
        body: Any = None,
        key: str = "",
        quiet: bool = False,
    ) -> httpx.Response:
        """`request` is "METHOD /path"; anything but the `expect`ed status is a failure."""
        method, path = request.split(" ", 1)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key:
            headers["Idempotency-Key"] = key
        if not quiet:
            print("  " + dim("$ " + as_curl(method, path, headers, body)))
        response = self.http.request(method, path, json=body, headers=headers)
        ok = response.status_code == expect
        detail = problem_detail(response) if response.status_code >= 400 else ""
        if not quiet or not ok:
            print(
                f"  {(green if ok else red)('→ ' + str(response.status_code))} "
                f"{response.reason_phrase}" + (dim(f"  ({detail})") if detail else "")
            )
        if not ok:
            raise DemoFailure(
                f"{method} {path}: expected HTTP {expect}, got "
                f"{response.status_code}" + (f" ({detail})" if detail else "")
            )
        return response

    def wait_note(self, token: str, note_id: str, rounds: int = 4) -> Any:
        """`GET /notes/{id}?wait=15` until the note is done or failed."""
        for i in range(rounds):
            note = self.call(f"GET /notes/{note_id}?wait=15", 200, token, quiet=i > 0).json()
            if note["status"] in ("done", "failed"):
                return note
        raise DemoFailure(
            f"expected note {note_id} done or failed within {15 * rounds}s, got {note['status']!r}"
        )


def step_health(demo: Demo) -> None:
    print("  The process answers, and its database is reachable and migrated.")
    check(demo.call("GET /healthz", 200).json().get("status") == "ok", "healthz status ok")
    ready = demo.call("GET /readyz", 200).json()
    show(database=ready["database"], migration=ready["migration"])


def step_accounts(demo: Demo) -> None:
    print("  An admin signs up and creates an organization; it provisions an agent there.")
    admin_email = f"demo-admin-{demo.run_id}@example.com"
    body = {
        "email": admin_email,
        "password": demo.password,
        "organization_name": f"Demo Org {demo.run_id}",
    }
    admin = demo.call("POST /auth/signup", 201, body=body).json()
    user = admin["user"]
    equal("the organization creator's role", user["role"], "ADMIN")
    show(admin=admin_email, role=user["role"], organization=user["organization_id"])
    demo.state.update(admin=admin["access_token"], org=user["organization_id"])
    email = f"demo-agent-{demo.run_id}@example.com"
    agent = provision_agent(demo, email)
    demo.state.update(agent=agent["access_token"], agent_refresh=agent["refresh_token"])
    demo.state.update(agent_email=email)


def provision_agent(demo: Demo, email: str) -> Any:
    body = {"email": email, "password": demo.password, "role": "AGENT"}
    user = demo.call("POST /users", 201, token=demo.state["admin"], body=body).json()
    equal("the agent's organization", user["organization_id"], demo.state["org"])
    show(agent=email, role=user["role"])
    print("  The agent logs in.")
    login = {"email": email, "password": demo.password}
    tokens = demo.call("POST /auth/login", 200, body=login).json()
    show(access_token=short(tokens["access_token"]), expires_in=tokens["expires_in"])
    return {**tokens, "id": user["id"]}


def step_me(demo: Demo) -> None:
    print("  The access token says who is calling.")
    me = demo.call("GET /users/me", 200, token=demo.state["agent"]).json()
    equal("email", me["email"], demo.state["agent_email"])
    equal("role", me["role"], "AGENT")
    show(id=me["id"], email=me["email"], role=me["role"])
    demo.state["agent_id"] = me["id"]


def step_create(demo: Demo) -> None:
    print("  The agent writes a note: accepted at once, the summary is queued.")
    demo.state["key"] = f"demo-{demo.run_id}"
    demo.state["body"] = {"title": "Acme call", "raw_text": TEXT}
    response = post_keyed_note(demo)
    note = response.json()
    equal("status", note["status"], "queued")
    equal("header Location", response.headers.get("Location"), f"/notes/{note['id']}")
    show(id=note["id"], status=yellow(note["status"]), location=response.headers["Location"])
    demo.state["note"] = note["id"]


def post_keyed_note(demo: Demo) -> httpx.Response:
    state = demo.state
    return demo.call("POST /notes", 202, state["agent"], state["body"], key=state["key"])


def step_watch(demo: Demo) -> None:
    print("  Watch the background job: a few quick polls, then a long poll until done.")
    token, path = demo.state["agent"], f"/notes/{demo.state['note']}"
    seen: list[str] = []
    print("  " + dim(f"$ curl $BASE_URL{path} -H 'Authorization: Bearer {short(token)}'  # x5"))
    for _ in range(5):
        status = demo.call(f"GET {path}", 200, token, quiet=True).json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("done", "failed"):
            break
        time.sleep(0.2)
    show(seen=" → ".join(seen))
    note = demo.wait_note(token, demo.state["note"])
    equal("status", (note["status"], note["error"]), ("done", None))
    check(bool(note["summary"]), "a summary", note["summary"])
    show(status=green(note["status"]), attempts=note["attempts"], summary=bold(note["summary"]))


def step_replay(demo: Demo) -> None:
    print("  The client retries the same POST with the same key: the same note, not a new one.")
    response = post_keyed_note(demo)
    replayed = response.headers.get("Idempotent-Replayed")
    equal("header Idempotent-Replayed", replayed, "true")
    equal("id", response.json()["id"], demo.state["note"])
    show(id=response.json()["id"], idempotent_replayed=replayed)


def step_tenancy(demo: Demo) -> None:
    print("  A second agent of the same organization cannot see the first agent's note.")
    other = provision_agent(demo, f"demo-agent2-{demo.run_id}@example.com")
    demo.state.update(agent2=other["access_token"], agent2_refresh=other["refresh_token"])
    demo.call(f"GET /notes/{demo.state['note']}", 404, token=other["access_token"])
    print("  It writes its own note; the admin sees both agents' notes.")
    body = {"title": "Globex renewal", "raw_text": "Globex renews in May. Send the contract."}
    demo.call("POST /notes", 202, token=other["access_token"], body=body)
    items = demo.call("GET /notes", 200, token=demo.state["admin"]).json()["items"]
    owners = {item["owner_id"] for item in items}
    check({demo.state["agent_id"], other["id"]} <= owners, "notes of both agents", owners)
    show(notes=len(items), owners=", ".join(sorted(owners)))


def step_failure(demo: Demo) -> str | None:
    text = os.environ.get("DEMO_FAIL_NOTE_TEXT")
    if demo.fake is None and not text:
        return "skipped (needs the demo's own server, or DEMO_FAIL_NOTE_TEXT)"
    print("  A note the model server refuses: the summary fails, and is retried.")
    body = {"raw_text": text or "Wire transfer details for Initech. [fail] Do not summarize."}
    token = demo.state["agent"]
    note = demo.call("POST /notes", 202, token=token, body=body).json()
    note = demo.wait_note(token, note["id"])
    equal("status", note["status"], "failed")
    show(status=red(note["status"]), attempts=note["attempts"], error=note["error"])
    if demo.fake is not None:
        print("  " + dim("(the demo's model server now accepts this note)"))
        demo.fake.failing = False
    retried = demo.call(f"POST /notes/{note['id']}/retry", 202, token=token).json()
    equal("status after the retry", retried["status"], "queued")
    show(status=yellow(retried["status"]))
    note = demo.wait_note(token, note["id"])
    if demo.fake is not None:
        equal("status once the model accepts the note", note["status"], "done")
    show(status=note["status"], attempts=note["attempts"], summary=note["summary"])
    return None


def step_tokens(demo: Demo) -> None:
    print("  Refresh tokens rotate: each works once, and reuse signs that session out.")
    old = demo.state["agent_refresh"]
    pair = demo.call("POST /auth/refresh", 200, body={"refresh_token": old}).json()
    check(pair["refresh_token"] != old, "a new refresh token", "the same one")
    show(refresh_token=short(pair["refresh_token"]))
    demo.call("POST /auth/refresh", 401, body={"refresh_token": old})
    print("  The second agent logs out; its refresh token stops working.")
    refresh = {"refresh_token": demo.state["agent2_refresh"]}
    demo.call("POST /auth/logout", 204, token=demo.state["agent2"], body=refresh)
    demo.call("POST /auth/refresh", 401, body=refresh)


STEPS = [
    ("Health and readiness", step_health),
    ("Sign up an admin, provision an agent", step_accounts),
    ("Who am I", step_me),
    ("Create a note", step_create),
    ("Watch the summary being made", step_watch),
    ("Replay with the same Idempotency-Key", step_replay),
    ("Tenancy: agents are isolated, the admin sees all", step_tenancy),
    ("A failed summary, retried", step_failure),
    ("Refresh token rotation and logout", step_tokens),
]


class FakeModel(ThreadingHTTPServer):
    """A tiny OpenAI-compatible chat-completions server: the summary is the note's first
    sentence, and a note containing "[fail]" is refused with 400 while `failing` is set."""

    daemon_threads = True
    failing = True


class _FakeHandler(BaseHTTPRequestHandler):
    server: FakeModel

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        text = re.sub(r"^Title: .*\n\n", "", request["messages"][-1]["content"])
        reply: dict[str, Any]
        if "[fail]" in text and self.server.failing:
            status, reply = 400, {"error": {"message": "the demo model refuses [fail] notes"}}
        else:
            time.sleep(1.0)  # slow enough for the walkthrough to see "processing"
            summary = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
            status, reply = 200, {"choices": [{"message": {"content": summary}}]}
        payload = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_service(fake: FakeModel) -> Iterator[str]:
    """Start `notes-api serve` on a free port with a throwaway SQLite database; stop it after."""
    port, tmp = free_port(), Path(tempfile.mkdtemp(prefix="notes-demo-"))
    settings = (
        f"HOST=127.0.0.1 PORT={port} APP_ENV=development WORKER_EMBEDDED=true SIGNUP_OPEN=true "
        f"SUMMARIZER=openai OPENAI_BASE_URL=http://127.0.0.1:{fake.server_address[1]}/v1 "
        "OPENAI_API_KEY=sk-demo-not-a-secret JOB_MAX_ATTEMPTS=2 JOB_BACKOFF_BASE=0.2 "
        "JOB_BACKOFF_MAX=1 JOB_SHUTDOWN_GRACE=2 LOG_FORMAT=console DATABASE_URL_DIRECT="
    )
    env = dict(os.environ, **dict(pair.split("=", 1) for pair in settings.split()))
    env["DATABASE_URL"] = f"sqlite:///{tmp}/demo.db"  # a temporary path may hold spaces
    log = tmp / "server.log"
    print(dim(f"Starting the service on port {port} (log: {log}) ..."))
    with log.open("wb") as out:
        command = [sys.executable, "-m", "notes_api.cli", "serve"]
        process = subprocess.Popen(command, env=env, cwd=tmp, stdout=out, stderr=out)
    base_url, ok = f"http://127.0.0.1:{port}", False
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                code = process.returncode
                raise DemoFailure(f"the service exited with code {code} before answering /healthz")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            check(time.monotonic() < deadline, "the service to answer /healthz within 60s")
            time.sleep(0.2)
        yield base_url
        ok = True
    except (DemoFailure, httpx.HTTPError):
        print(dim("--- last lines of the service's log ---\n" + log.read_text()[-1500:]))
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if ok:  # kept after a failure, for its log
            shutil.rmtree(tmp, ignore_errors=True)


def run(base_url: str, fake: FakeModel | None) -> int:
    started, skipped = time.monotonic(), 0
    print(bold(f"Notes API walkthrough against {base_url}"))
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(45, connect=15)) as http:
        demo = Demo(http, fake)
        for number, (title, step) in enumerate(STEPS, 1):
            print("\n" + bold(cyan(f"[{number}/{len(STEPS)}] {title}")))
            note = step(demo)
            if note:
                skipped += 1
                print("  " + yellow(note))
    total = len(STEPS)
    passed = f"{total - skipped} of {total} steps passed, {skipped} skipped" if skipped else ""
    passed = passed or f"all {total} steps passed"
    print("\n" + bold(green(f"✔ {passed} in {time.monotonic() - started:.1f}s")))
    return 0


def main() -> int:
    base_url = os.environ.get("BASE_URL", "").rstrip("/")
    for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind, so that our service is stopped too
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    try:
        if base_url:
            return run(base_url, None)
        fake = FakeModel(("127.0.0.1", 0), _FakeHandler)
        threading.Thread(target=fake.serve_forever, args=(0.05,), daemon=True).start()
        try:
            with local_service(fake) as local_url:
                return run(local_url, fake)
        finally:
            fake.shutdown()
            fake.server_close()
    except DemoFailure as exc:
        print("\n" + bold(red(f"✘ FAILED: {exc}")), file=sys.stderr)
    except httpx.TransportError as exc:
        where = f"{exc.request.method} {exc.request.url}"
        print(
            "\n" + bold(red(f"✘ FAILED: {where}: no answer from the service ({exc})")),
            file=sys.stderr,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
