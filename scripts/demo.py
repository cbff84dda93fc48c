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
import secrets
import shlex
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

from fake_model import FakeModel, running_fake_model

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


@dataclass
class Actor:
    """Someone the walkthrough acts as: named, so that each call says whose it is."""

    name: str
    role: str
    email: str
    token: str = ""
    refresh: str = ""

    @property
    def var(self) -> str:
        return f"{self.name.upper()}_TOKEN"

    @property
    def tag(self) -> str:
        """A short tag that tells one person's token from another's."""
        return f"<{self.name}'s token …{self.token[-6:]}>"

    def __str__(self) -> str:
        return f"{self.name} ({self.role.lower()})"


def as_curl(base_url: str, method: str, path: str, actor: Actor | None, body: Any) -> str:
    """The request as a curl command that can be pasted into a shell as it is, once the
    actor's token variable has been set (the demo prints that line when the token arrives)."""
    curl = ["curl", "-s"] + (["-X", method] if method != "GET" else [])
    curl.append(shlex.quote(base_url + path))
    if actor is not None:
        curl += ["-H", f'"Authorization: Bearer ${actor.var}"']
    if body is not None:
        payload = json.dumps(body, ensure_ascii=False)
        curl += ["-H", "'Content-Type: application/json'", "-d", shlex.quote(payload)]
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
    people: dict[str, Actor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def person(self, name: str, role: str) -> Actor:
        actor = Actor(name, role, f"{name}-{self.run_id}@example.com")
        self.people[name] = actor
        return actor

    def call(
        self,
        request: str,
        expect: int,
        actor: Actor | None = None,
        body: Any = None,
        key: str = "",
        quiet: bool = False,
    ) -> httpx.Response:
        """`request` is "METHOD /path", sent with `actor`'s access token when one is given;
        anything but the `expect`ed status is a failure."""
        method, path = request.split(" ", 1)
        headers = {"Authorization": f"Bearer {actor.token}"} if actor else {}
        if key:
            headers["Idempotency-Key"] = key
        if not quiet:
            who = f"as {actor}" if actor else "anonymous"
            command = as_curl(str(self.http.base_url).rstrip("/"), method, path, actor, body)
            if key:
                command += f" -H 'Idempotency-Key: {key}'"
            print(f"  {cyan(who)} {dim('$ ' + command)}")
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

    def signed_in(self, actor: Actor, tokens: Any) -> None:
        """Keep `actor`'s tokens, and print the line that sets them in a shell."""
        actor.token, actor.refresh = tokens["access_token"], tokens["refresh_token"]
        if self.fake is None:  # a service that outlives the demo: its tokens can be used
            print("  " + dim(f"$ {actor.var}={actor.token}"))
        show(access_token=actor.tag, expires_in=tokens["expires_in"])

    def wait_note(self, actor: Actor, note_id: str, rounds: int = 4) -> Any:
        """`GET /notes/{id}?wait=15` until the note is done or failed."""
        for i in range(rounds):
            note = self.call(f"GET /notes/{note_id}?wait=15", 200, actor, quiet=i > 0).json()
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
    grace = demo.person("grace", "ADMIN")
    print(f"  {grace.name} signs up and creates an organization, which makes her its admin.")
    body = {
        "email": grace.email,
        "password": demo.password,
        "organization_name": f"Demo Org {demo.run_id}",
    }
    signup = demo.call("POST /auth/signup", 201, body=body).json()
    user = signup["user"]
    equal("the organization creator's role", user["role"], "ADMIN")
    show(email=grace.email, role=user["role"], organization=user["organization_id"])
    demo.signed_in(grace, signup)
    demo.state["org"] = user["organization_id"]
    ada = demo.person("ada", "AGENT")
    provision_agent(demo, ada)


def provision_agent(demo: Demo, agent: Actor) -> None:
    grace = demo.people["grace"]
    print(f"  {grace.name} provisions an agent, {agent.name}, in her organization.")
    body = {"email": agent.email, "password": demo.password, "role": "AGENT"}
    user = demo.call("POST /users", 201, grace, body).json()
    equal("the agent's organization", user["organization_id"], demo.state["org"])
    show(email=agent.email, role=user["role"])
    demo.state[f"{agent.name}_id"] = user["id"]
    print(f"  {agent.name} logs in.")
    login = {"email": agent.email, "password": demo.password}
    demo.signed_in(agent, demo.call("POST /auth/login", 200, body=login).json())


def step_me(demo: Demo) -> None:
    ada = demo.people["ada"]
    print("  The access token says who is calling.")
    me = demo.call("GET /users/me", 200, ada).json()
    equal("email", me["email"], ada.email)
    equal("role", me["role"], "AGENT")
    show(id=me["id"], email=me["email"], role=me["role"])


def step_create(demo: Demo) -> None:
    print("  ada writes a note: accepted at once, its summary queued.")
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
    return demo.call("POST /notes", 202, demo.people["ada"], state["body"], key=state["key"])


def step_watch(demo: Demo) -> None:
    ada = demo.people["ada"]
    print("  Watch the background job: a few quick polls, then a long poll until done.")
    path = f"/notes/{demo.state['note']}"
    command = as_curl(str(demo.http.base_url).rstrip("/"), "GET", path, ada, None)
    print(f"  {cyan(f'as {ada}')} {dim('$ ' + command)}  {dim('# five times')}")
    seen: list[str] = []
    for _ in range(5):
        status = demo.call(f"GET {path}", 200, ada, quiet=True).json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("done", "failed"):
            break
        time.sleep(0.2)
    show(seen=" → ".join(seen))
    note = demo.wait_note(ada, demo.state["note"])
    equal("status", (note["status"], note["error"]), ("done", None))
    check(bool(note["summary"]), "a summary", note["summary"])
    show(status=green(note["status"]), attempts=note["attempts"], summary=bold(note["summary"]))


def step_replay(demo: Demo) -> None:
    print("  ada's client retries the same POST with the same key: the same note, no new one.")
    response = post_keyed_note(demo)
    replayed = response.headers.get("Idempotent-Replayed")
    equal("header Idempotent-Replayed", replayed, "true")
    equal("id", response.json()["id"], demo.state["note"])
    show(id=response.json()["id"], idempotent_replayed=replayed)


def step_tenancy(demo: Demo) -> None:
    alan = demo.person("alan", "AGENT")
    provision_agent(demo, alan)
    print("  alan, an agent of the same organization, cannot see ada's note.")
    demo.call(f"GET /notes/{demo.state['note']}", 404, alan)
    print("  alan writes a note of his own; grace, the admin, sees both agents' notes.")
    body = {"title": "Globex renewal", "raw_text": "Globex renews in May. Send the contract."}
    demo.call("POST /notes", 202, alan, body)
    items = demo.call("GET /notes", 200, demo.people["grace"]).json()["items"]
    owners = {item["owner_id"] for item in items}
    check({demo.state["ada_id"], demo.state["alan_id"]} <= owners, "both agents' notes", owners)
    names = {demo.state["ada_id"]: "ada", demo.state["alan_id"]: "alan"}
    show(notes=len(items), owners=", ".join(sorted(names.get(o, o) for o in owners)))


def step_failure(demo: Demo) -> str | None:
    text = os.environ.get("DEMO_FAIL_NOTE_TEXT")
    if demo.fake is None and not text:
        return "skipped (needs the demo's own server, or DEMO_FAIL_NOTE_TEXT)"
    ada = demo.people["ada"]
    print("  ada writes a note the model server refuses: its summary fails.")
    body = {"raw_text": text or "Wire transfer details for Initech. [fail] Do not summarize."}
    note = demo.call("POST /notes", 202, ada, body).json()
    note = demo.wait_note(ada, note["id"])
    equal("status", note["status"], "failed")
    failed_attempts = note["attempts"]
    show(status=red(note["status"]), attempts=failed_attempts, error=note["error"])
    if demo.fake is not None:
        print("  " + dim("(the demo's model server now accepts this note)"))
        demo.fake.failing = False
    print("  ada retries it: a fresh job, whose attempts are counted from zero again.")
    retried = demo.call(f"POST /notes/{note['id']}/retry", 202, ada).json()
    equal("status after the retry", retried["status"], "queued")
    show(status=yellow(retried["status"]), attempts=retried["attempts"])
    note = demo.wait_note(ada, note["id"])
    if demo.fake is not None:
        equal("status once the model accepts the note", note["status"], "done")
    show(
        status=note["status"],
        attempts=f"{note['attempts']} since the retry "
        f"({failed_attempts + note['attempts']} in all, {failed_attempts} before it failed)",
        summary=note["summary"],
    )
    return None


def step_tokens(demo: Demo) -> None:
    ada, alan = demo.people["ada"], demo.people["alan"]
    print("  Refresh tokens rotate: each works once, and reuse signs that session out.")
    print("  ada's client trades her refresh token for a new pair, then tries the old one again.")
    old = ada.refresh
    pair = demo.call("POST /auth/refresh", 200, body={"refresh_token": old}).json()
    check(pair["refresh_token"] != old, "a new refresh token", "the same one")
    show(refresh_token=f"a new one for ada, …{pair['refresh_token'][-6:]}")
    demo.call("POST /auth/refresh", 401, body={"refresh_token": old})
    print("  alan logs out; his refresh token stops working.")
    refresh = {"refresh_token": alan.refresh}
    demo.call("POST /auth/logout", 204, alan, refresh)
    demo.call("POST /auth/refresh", 401, body=refresh)


class _Receiver(BaseHTTPRequestHandler):
    """A CRM's webhook endpoint: keeps each delivery whose signature verifies."""

    secret = ""
    verified: list[dict[str, Any]] = []  # noqa: RUF012 - one receiver per demo

    def do_POST(self) -> None:
        from standardwebhooks import Webhook

        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            payload = Webhook(type(self).secret).verify(body, dict(self.headers.items()))
        except Exception:
            self.send_response(400)
        else:
            type(self).verified.append({"payload": payload, "id": self.headers["webhook-id"]})
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def step_events(demo: Demo) -> str | None:
    if demo.fake is None:
        return "skipped (a local webhook receiver needs the demo's own server)"
    grace, ada = demo.people["grace"], demo.people["ada"]
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/notes"
    print("  grace registers her CRM's endpoint for note.done (local, so the service runs")
    print("  with WEBHOOK_ALLOW_PRIVATE=true; in production it must be https and public).")
    body = {"url": hook_url, "events": ["note.done"], "description": "demo CRM"}
    created = demo.call("POST /webhooks", 201, grace, body).json()
    _Receiver.secret = created["secret"]
    show(secret=created["secret"][:12] + "… (shown once)")
    print("  ada opens her event stream, then writes a note; the stream shows its life.")
    seen: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        headers = {"Authorization": f"Bearer {ada.token}"}
        with demo.http.stream("GET", "/notes/events", headers=headers, timeout=30) as stream:
            opened.set()
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    seen.append(line.split(":", 1)[1].strip())
                    if seen[-1] == "note.done":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    check(opened.wait(10), "the event stream to open")
    base = str(demo.http.base_url).rstrip("/")
    command = f'curl -s -N {base}/notes/events -H "Authorization: Bearer ${ada.var}"'
    print(f"  {cyan(f'as {ada}')} {dim('$ ' + command)}")
    text = "Stream demo. Initech wants the onboarding call moved to Tuesday."
    demo.call("POST /notes", 202, ada, {"raw_text": text})
    listener.join(20)
    check("note.done" in seen, "note.done on the stream", seen)
    show(stream=" → ".join(seen))
    deadline = time.monotonic() + 15
    while not _Receiver.verified and time.monotonic() < deadline:
        time.sleep(0.1)
    receiver.shutdown()
    check(bool(_Receiver.verified), "a webhook delivery with a valid signature")
    got = _Receiver.verified[0]["payload"]
    show(webhook=f"{got['type']} for note {got['data']['id'][:8]}…, signature verified")
    return None


STEPS = [
    ("Health and readiness", step_health),
    ("Sign up an admin, provision an agent", step_accounts),
    ("Who am I", step_me),
    ("Create a note", step_create),
    ("Watch the summary being made", step_watch),
    ("Replay with the same Idempotency-Key", step_replay),
    ("Tenancy: agents are isolated, the admin sees all", step_tenancy),
    ("A failed summary, retried", step_failure),
    ("A live event stream and a signed webhook", step_events),
    ("Refresh token rotation and logout", step_tokens),
]


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
        "JOB_BACKOFF_MAX=1 JOB_SHUTDOWN_GRACE=2 LOG_FORMAT=console DATABASE_URL_DIRECT= "
        "WEBHOOK_ALLOW_PRIVATE=true"
    )
    env = dict(os.environ, **dict(pair.split("=", 1) for pair in settings.split()))
    env["DATABASE_URL"] = f"sqlite:///{tmp}/demo.db"  # a temporary path may hold spaces
    log = tmp / "server.log"
    print(dim(f"Starting notes-api serve on port {port} with a throwaway SQLite database ..."))
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
        print(dim(f"(the whole log is kept at {log})"))
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
    if fake is not None:
        model = f"http://127.0.0.1:{fake.server_address[1]}/v1"
        print(
            "Summaries in this run come from SUMMARIZER=openai, pointed at a small fake\n"
            f"OpenAI-compatible model server that the demo starts itself ({model}): it\n"
            "refuses one note on purpose, so that step 8 can show a failed summary and its\n"
            "retry. Its summary is the note's first sentence. `make run` uses the offline\n"
            "extractive summarizer unless SUMMARIZER says otherwise."
        )
    print("People: grace (admin of a new organization), ada and alan (agents there).")
    if fake is None:
        print("Each command says whose token it sends; paste a NAME_TOKEN=... line to use it.")
    else:
        # The service stops with the demo: its tokens would be pasted for nothing.
        print(
            "Each command says whose token it sends. To try them in a shell, run the demo\n"
            "against a service that stays up: `make run`, then in another terminal\n"
            "BASE_URL=http://127.0.0.1:8000 make demo (it prints NAME_TOKEN=... lines)."
        )
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
        # Slow enough for the walkthrough to see "processing"; refuses "[fail]" notes.
        with running_fake_model(1.0, failing=True) as fake, local_service(fake) as local_url:
            return run(local_url, fake)
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
