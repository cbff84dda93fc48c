"""The deployment scene's stage, live: the production image run as Koyeb runs it (512 MB,
0.1 vCPU, the worker embedded) against a Neon-shaped database (Postgres that accepts only TLS
and SCRAM, PgBouncer in transaction mode in front of it), started for the recording.

Nothing here is a copy of the rehearsal: rehearsal/stage.py checks the machine and builds the
image with ../shared/tools/container-smoke (podman's layer cache keeps an unchanged tree's
rebuild short) and starts the database (rehearsal/database.py); the container is the
rehearsal's own `Container` (rehearsal/container.py), so the `podman run` shown on screen is
the one run. This module adds only what the screen needs: the command with its secrets
masked, the container's JSON log as it arrives (`podman logs -f`), the demo's calls and the
job's row in the database. Logs of every run are kept in .tools/video/rehearsal-logs/.

It needs root and podman as `make rehearsal` does; without them the render stops at once
and says so (`check()`)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "rehearsal"))
import stage  # noqa: E402
from container import Container, podman  # noqa: E402
from database import NeonLikeDatabase, free_port  # noqa: E402

LOGS = ROOT / ".tools" / "video" / "rehearsal-logs"
MASK = "•••"


def _stop(reason: object) -> SystemExit:
    return SystemExit(
        "video: the deployment scene runs the production image live, as `make rehearsal` "
        f"does (root, podman, PostgreSQL, PgBouncer): {reason}"
    )


def check() -> None:
    """Before anything is synthesized or recorded: root, Debian's postgresql and pgbouncer
    (installed with apt-get when missing), container-smoke."""
    with contextlib.suppress(OSError):  # not root: preflight says so
        LOGS.mkdir(parents=True, exist_ok=True)
    try:
        stage.preflight(LOGS)
    except stage.Abort as exc:
        raise _stop(exc) from None


def log_line(raw: str) -> tuple[str, str, dict[str, Any]]:
    """One line of the container's log as the screen shows it: the time, the event and its
    fields from the JSON line (the level when it is not info), and the JSON itself."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return raw, "dim", {}
    if not isinstance(entry, dict):
        return raw, "dim", {}
    fields = dict(entry)
    at = str(fields.pop("timestamp", ""))[11:23]
    level = str(fields.pop("level", ""))
    event = str(fields.pop("event", ""))
    fields.pop("logger", None)
    if len(str(fields.get("request_id", ""))) > 12:  # 32 hex digits: 8 tell them apart
        fields["request_id"] = str(fields["request_id"])[:8] + "…"
    rest = " ".join(f"{k}={v}" for k, v in fields.items())
    text = f"{at} {'' if level == 'info' else level.upper() + ' '}{event} {rest}".rstrip()
    if level in ("warning", "error", "critical"):
        cls = "bad"
    elif event.startswith(("worker.", "app.", "migrate.")):
        cls = "ev"
    else:
        cls = "dim"
    return text, cls, entry


@dataclass
class Live:
    db: NeonLikeDatabase
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    box: Container | None = None
    follower: subprocess.Popen[str] | None = None
    arrived: queue.Queue[str] = field(default_factory=queue.Queue)
    entries: list[dict[str, Any]] = field(default_factory=list)
    job_rows: queue.Queue[tuple[float, str, str, str, str]] = field(default_factory=queue.Queue)

    @property
    def container(self) -> Container:
        if self.box is None:
            self.box = Container(
                name=f"notes-video-{os.getpid()}",
                image=stage.IMAGE,
                port=free_port(18280),
                env=stage.service_env(self.db, self.jwt_secret),
            )
        return self.box

    def mask(self, text: str) -> str:
        for secret in (self.jwt_secret, self.db.password):
            text = text.replace(secret, MASK)
        return text

    def command_lines(self) -> list[str]:
        """`podman run ...` exactly as Container.run runs it, one option a line, secrets
        masked."""
        args = self.container.run_args()
        lines: list[list[str]] = [["podman"]]
        for i, arg in enumerate(args):
            if arg in ("--runtime", "--network", "-e") or i == len(args) - 1:
                lines.append([])
            lines[-1].append(arg)
        shown = [self.mask(shlex.join(words)) for words in lines]
        return [
            ("  " if n else "") + line + (" \\" if n < len(shown) - 1 else "")
            for n, line in enumerate(shown)
        ]

    def run(self) -> str:
        """`podman run -d` with Koyeb's limits, then `podman logs -f` into a queue; returns
        the container's id."""
        box = self.container
        box.run()
        self.follower = subprocess.Popen(
            ["podman", "logs", "-f", box.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._follow, args=(self.follower,), daemon=True).start()
        return podman("inspect", "-f", "{{.Id}}", box.name).strip()[:12]

    def _follow(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.arrived.put(line.rstrip("\n"))

    def new_lines(self) -> list[tuple[str, str]]:
        """The log lines that arrived since the last call, as the screen shows them."""
        out = []
        while True:
            try:
                raw = self.arrived.get_nowait()
            except queue.Empty:
                return out
            text, cls, entry = log_line(self.mask(raw))
            if entry:
                self.entries.append(entry)
            out.append((text, cls))

    def logged(self, event: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e.get("event") == event), None)

    def healthy(self) -> bool:
        if self.container.state().get("Status") not in ("running", "created", "configured"):
            raise RuntimeError(f"the container stopped:\n{self.container.logs()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.container.base_url + "/healthz", timeout=1).status_code == 200
        return False

    def limits(self) -> str:
        """What the container's own cgroup enforces (v2 names, else v1)."""
        inside = self.container.limits_inside()
        memory = inside.get("memory.max") or inside.get("memory/memory.limit_in_bytes", "?")
        cpu = inside.get("cpu.max") or "{} {}".format(
            inside.get("cpu/cpu.cfs_quota_us"), inside.get("cpu/cpu.cfs_period_us")
        )
        quota, period = [*cpu.split(), "?", "?"][:2]
        mib = f"{int(memory) / 2**20:.0f} MiB" if memory.isdigit() else memory
        share = f"{int(quota) / int(period):g} CPU" if quota.isdigit() and period.isdigit() else cpu
        return (
            f"cgroup inside: memory limit {memory} ({mib}), CPU {quota} µs per {period} µs "
            f"({share})"
        )

    def pool_mode(self) -> str:
        config = {row["key"]: row["value"] for row in self.db.console("SHOW CONFIG")}
        return f"pool_mode = {config.get('pool_mode')}, auth_type = {config.get('auth_type')}"

    def newest_job(self) -> tuple[str, str, str, str] | None:
        """The newest summarize job as the database has it, read over the cluster's own
        socket: (note id, status, attempts, worker_id)."""
        out = self.db.psql_local(
            "SELECT dedupe_key, status, attempts, coalesce(worker_id, '') FROM jobs "
            "WHERE kind = 'summarize' ORDER BY created_at DESC LIMIT 1",
            db="neondb",
        ).strip()
        parts = out.split("|")
        return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None

    def watch_jobs(self, stop: threading.Event) -> None:
        """Reads the newest job's row every 50 ms until `stop`: each change, with the
        monotonic time it was seen, goes to `job_rows` (a summary at 0.1 vCPU takes well
        under a second, too quick for the screen's own polling)."""

        def loop() -> None:
            last = None
            while not stop.is_set():
                row = self.newest_job()
                if row is not None and row != last:
                    self.job_rows.put((time.monotonic(), *row))
                    last = row
                stop.wait(0.05)

        threading.Thread(target=loop, daemon=True).start()

    def api(self, method: str, path: str, token: str = "", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(
            method, self.container.base_url + path, headers=headers, timeout=60, **kw
        )

    def stop(self) -> subprocess.Popen[str]:
        """`podman stop -t 30` (SIGTERM, as on a redeploy), running; wait on what it returns."""
        return subprocess.Popen(
            ["podman", "stop", "-t", "30", self.container.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def exit_code(self) -> Any:
        return self.container.state().get("ExitCode")

    def remove(self) -> None:
        if self.box is not None:
            (LOGS / f"{self.box.name}.log").write_text(self.mask(self.box.logs()))
            self.box.remove()
            self.box = None
        if self.follower is not None:
            with contextlib.suppress(OSError):
                self.follower.kill()
            self.follower.wait()
            self.follower = None


@contextlib.contextmanager
def running() -> Iterator[Live]:
    """The image built (container-smoke), the Neon-shaped database started; on the way out,
    the container removed, PgBouncer and Postgres stopped and their files removed."""
    LOGS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        stage.build_image(LOGS)
    except stage.Abort as exc:
        raise _stop(exc) from None
    with stage.neon_like_database(LOGS) as db:
        print(
            f"video: Neon-shaped database on :{db.pg_port} (PgBouncer :{db.bouncer_port}), "
            f"image ready ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
        live = Live(db)
        try:
            yield live
        finally:
            live.remove()
