"""Soak test: steady mixed traffic for a while, then a report.

    python scripts/soak.py --duration 600                  # starts its own API + workers
    python scripts/soak.py --duration 600 --base-url URL   # drives a server already running

On its own it runs `notes-api serve` (WORKER_EMBEDDED=false) and `--workers` separate
`notes-api worker` processes against a Postgres database it resets (`--database-url`,
default the local server's `notes_soak`). Virtual users sign up, log in, write, read, list
and edit notes for `--duration` seconds; then the queue is left to drain and every accepted
note is checked. The report gives requests, errors by status code, p50/p99 latency, notes
accepted against finished, and the resident memory of the server and the workers at start
and end. It exits non-zero on any 5xx, on a note that was accepted and never finished, or
when the run itself went wrong.

Traffic only ever goes to a loopback address: this is a tool for a server you run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

PASSWORD = "soak test password 1"  # noqa: S105 - the throwaway accounts' password
# How often each action is picked: mostly notes, with a trickle of sign-ups and logins.
MIX = {
    "create": 30,
    "read": 30,
    "list": 20,
    "edit": 10,
    "wait": 4,
    "login": 4,
    "signup": 2,
}
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/notes_soak"


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process, in KiB (psutil if installed, else /proc)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process(pid).memory_info().rss // 1024)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Service:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    rss: list[int] = field(default_factory=list)

    def sample(self) -> None:
        if self.popen.poll() is None and (value := rss_kib(self.popen.pid)) is not None:
            self.rss.append(value)


def reset_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,))
        if not found.fetchone():
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Service:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "notes_api.cli", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Service(name, popen, log)


async def wait_healthy(base_url: str, service: Service | None, within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if service is not None and service.popen.poll() is not None:
                raise SystemExit(f"the server exited; see {service.log}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise SystemExit(f"{base_url} did not become ready in {within:g}s")


def stop(service: Service) -> int | None:
    if service.popen.poll() is None:
        service.popen.send_signal(signal.SIGTERM)
        try:
            return service.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.popen.kill()
            service.popen.wait(timeout=10)
    return service.popen.returncode


# ------------------------------------------------------------------ traffic


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    by_action: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    accepted: dict[str, str] = field(default_factory=dict)  # note id -> owner email
    relogins: int = 0

    def record(self, action: str, status: str, seconds: float) -> None:
        self.latencies[action].append(seconds)
        self.statuses[status] += 1
        self.by_action[action][status] += 1


@dataclass
class User:
    email: str
    token: str
    notes: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Traffic:
    def __init__(self, client: httpx.AsyncClient, stats: Stats, rng: random.Random) -> None:
        self.client = client
        self.stats = stats
        self.rng = rng
        self.users: list[User] = []

    async def call(self, action: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            self.stats.record(action, type(exc).__name__, time.perf_counter() - started)
            raise
        self.stats.record(action, str(response.status_code), time.perf_counter() - started)
        return response

    async def signup(self) -> User | None:
        email = f"soak-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD}
        response = await self.call("signup", "POST", "/auth/signup", json=body)
        if response.status_code != 201:
            return None
        user = User(email, response.json()["access_token"])
        self.users.append(user)
        return user

    async def login(self, user: User) -> None:
        body = {"email": user.email, "password": PASSWORD}
        response = await self.call("login", "POST", "/auth/login", json=body)
        if response.status_code == 200:
            user.token = response.json()["access_token"]

    async def act(self, user: User) -> None:
        action = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if action in ("read", "edit", "wait") and not user.notes:
            action = "create"
        note = self.rng.choice(user.notes) if user.notes else ""
        if action == "signup":
            await self.signup()
            return
        if action == "login":
            await self.login(user)
            return
        if action == "create":
            text = f"Soak note {uuid.uuid4().hex[:8]}. " + self.rng.choice(TEXTS)
            body: dict[str, Any] = {"raw_text": text, "title": f"soak {len(user.notes)}"}
            headers = {**user.headers, "Idempotency-Key": uuid.uuid4().hex}
            response = await self.call("create", "POST", "/notes", json=body, headers=headers)
            if response.status_code == 202:
                note_id = response.json()["id"]
                user.notes.append(note_id)
                self.stats.accepted[note_id] = user.email
        elif action == "read":
            response = await self.call("read", "GET", f"/notes/{note}", headers=user.headers)
        elif action == "wait":
            url = f"/notes/{note}?wait=2"
            response = await self.call("wait", "GET", url, headers=user.headers)
        elif action == "list":
            params = {"limit": self.rng.choice([5, 20, 50])}
            response = await self.call("list", "GET", "/notes", params=params, headers=user.headers)
        else:
            body = {"raw_text": f"Edited {uuid.uuid4().hex[:8]}. " + self.rng.choice(TEXTS)}
            response = await self.call(
                "edit", "PATCH", f"/notes/{note}", json=body, headers=user.headers
            )
        if response.status_code == 401:  # the access token ran out: sign in again
            self.stats.relogins += 1
            await self.login(user)

    async def virtual_user(self, until: float, think: float) -> None:
        user = None
        while user is None and time.monotonic() < until:
            with contextlib.suppress(httpx.TransportError):
                user = await self.signup()
            if user is None:
                await asyncio.sleep(1)
        while user is not None and time.monotonic() < until:
            with contextlib.suppress(httpx.TransportError):
                await self.act(user)
            await asyncio.sleep(self.rng.uniform(0, 2 * think))


TEXTS = [
    "Call with Dana from Acme. They want the CRM export by Friday and a discount on seats.",
    "Renewal meeting went well; legal needs the DPA before signing. Follow up next week.",
    "Support escalation: the import failed twice. Engineering will look at the CSV today.",
    "Lunch with the Globex team. They are evaluating two vendors and decide in March.",
]


async def drain(
    client: httpx.AsyncClient, traffic: Traffic, stats: Stats, within: float
) -> Counter[str]:
    """Wait for the queue to empty; the final status of every accepted note."""
    deadline = time.monotonic() + within
    final: dict[str, str] = {}
    while True:
        final.clear()
        for user in traffic.users:
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 100}
                if cursor:
                    params["cursor"] = cursor
                response = await client.get("/notes", params=params, headers=user.headers)
                if response.status_code == 401:
                    await traffic.login(user)
                    continue
                response.raise_for_status()
                page = response.json()
                final.update({item["id"]: item["status"] for item in page["items"]})
                cursor = page["next_cursor"]
                if not cursor:
                    break
        pending = [i for i in stats.accepted if final.get(i) in ("queued", "processing")]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    return Counter(final.get(note_id, "missing") for note_id in stats.accepted)


# ------------------------------------------------------------------ report


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def report(
    args: argparse.Namespace,
    stats: Stats,
    elapsed: float,
    outcome: Counter[str],
    services: list[Service],
    accounts: int,
) -> list[str]:
    lines = []
    total = sum(stats.statuses.values())
    everything = [v for values in stats.latencies.values() for v in values]
    lines.append(f"soak: {elapsed:.0f} s of traffic against {args.base_url or 'its own server'}")
    lines.append(
        f"requests: {total} ({total / elapsed:.1f}/s), virtual users {args.users}, "
        f"accounts {accounts}, re-logins after 401 {stats.relogins}"
    )
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(stats.statuses.items()))
    lines.append(f"by status: {codes}")
    errors = {c: n for c, n in stats.statuses.items() if not c.startswith("2")}
    lines.append(f"errors: {sum(errors.values())} {dict(sorted(errors.items())) or ''}".rstrip())
    lines.append(
        f"latency: p50 {quantile(everything, 0.5) * 1000:.1f} ms, "
        f"p99 {quantile(everything, 0.99) * 1000:.1f} ms, max {max(everything) * 1000:.0f} ms"
    )
    for action in MIX:
        values = stats.latencies.get(action, [])
        if values:
            codes = ", ".join(f"{c}: {n}" for c, n in sorted(stats.by_action[action].items()))
            lines.append(
                f"  {action:<7} {len(values):>7}  p50 {quantile(values, 0.5) * 1000:7.1f} ms"
                f"  p99 {quantile(values, 0.99) * 1000:7.1f} ms  ({codes})"
            )
    finished = outcome.get("done", 0)
    other = {k: v for k, v in outcome.items() if k != "done"} or "none"
    lines.append(f"notes: accepted {len(stats.accepted)}, finished {finished}, other {other}")
    for service in services:
        if service.rss:
            step = max(1, len(service.rss) // 8)
            trend = " ".join(f"{v / 1024:.0f}" for v in service.rss[::step])
            lines.append(
                f"rss {service.name}: start {service.rss[0] / 1024:.1f} MiB, "
                f"end {service.rss[-1] / 1024:.1f} MiB, max {max(service.rss) / 1024:.1f} MiB"
                f" (samples, MiB: {trend})"
            )
    if not services:
        lines.append("rss: not measured (external server)")
    return lines


# ------------------------------------------------------------------ main


def loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"--base-url must be a loopback address (127.0.0.0/8, ::1), not {host}")


async def run(args: argparse.Namespace) -> int:
    services: list[Service] = []
    logs = Path(tempfile.mkdtemp(prefix="soak-"))
    base_url = args.base_url
    if base_url:
        loopback_only(base_url)
    else:
        reset_database(args.database_url)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = {
            "DATABASE_URL": args.database_url,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKER_EMBEDDED": "false",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "APP_ENV": "development",
            # The soak drives the engine, not the quotas: the write limits are off, and so is
            # the sign-up limit (every simulated user signs up from one address).
            "RATE_LIMIT_USER_WRITES_PER_MINUTE": "0",
            "RATE_LIMIT_ORG_WRITES_PER_MINUTE": "0",
            "SIGNUP_PER_CLIENT_PER_HOUR": "0",
        }
        services.append(start("server", ["serve"], env, logs))
        await wait_healthy(base_url, services[0])
        services += [start(f"worker-{i}", ["worker"], env, logs) for i in range(args.workers)]
    await asyncio.sleep(1)
    for service in services:
        service.sample()

    stats = Stats()
    rng = random.Random(args.seed)  # noqa: S311 - picks the traffic mix, nothing secret
    limits = httpx.Limits(max_connections=args.users * 2)
    exit_code = 0
    lines: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
            traffic = Traffic(client, stats, rng)
            started = time.monotonic()
            until = started + args.duration

            async def sampler() -> None:
                while time.monotonic() < until:
                    await asyncio.sleep(min(10, args.duration / 4))
                    for service in services:
                        service.sample()

            await asyncio.gather(
                sampler(), *(traffic.virtual_user(until, args.think) for _ in range(args.users))
            )
            elapsed = time.monotonic() - started
            print(f"traffic done; waiting up to {args.drain_timeout:g}s for the queue to drain")
            outcome = await drain(client, traffic, stats, args.drain_timeout)
        for service in services:
            service.sample()
        lines += report(args, stats, elapsed, outcome, services, len(traffic.users))
    finally:
        exits = {service.name: stop(service) for service in services}
    crashed = {n: c for n, c in exits.items() if c not in (0, -signal.SIGTERM)}
    if crashed:
        lines.append(f"processes that did not stop cleanly: {crashed}; logs in {logs}")
        exit_code = 1
    server_errors = sum(n for code, n in stats.statuses.items() if code.startswith("5"))
    lost = len(stats.accepted) - outcome.get("done", 0)
    verdict = "PASS"
    if server_errors or lost or not stats.accepted:
        verdict, exit_code = "FAIL", 1
    lines.append(f"verdict: {verdict} (5xx: {server_errors}, accepted but not finished: {lost})")
    if services:
        lines.append(f"logs: {logs}")
    print("\n".join(lines))
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of traffic")
    parser.add_argument("--base-url", help="a running server (loopback only); default: start one")
    parser.add_argument("--database-url", default=DEFAULT_DB, help="reset and used when starting")
    parser.add_argument("--workers", type=int, default=2, help="worker processes to start")
    parser.add_argument("--users", type=int, default=16, help="concurrent virtual users")
    parser.add_argument("--think", type=float, default=0.05, help="mean pause between calls")
    parser.add_argument("--drain-timeout", type=float, default=120, help="seconds to drain")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 24 * 3600:
        parser.error("--duration must be between 0 and 86400 seconds")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
