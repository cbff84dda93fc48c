"""What the phases share: the run's state (database, containers, monitor, secrets) and
small helpers for readings and formatting."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stage
import workload as wl
from container import Container
from database import NeonLikeDatabase
from report import Report


@dataclass
class Context:
    report: Report
    image: str
    run_id: str
    logs: Path
    root: Path
    db: NeonLikeDatabase | None = None
    containers: list[Container] = field(default_factory=list)
    monitor: wl.Monitor | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    password: str = field(default_factory=lambda: "rehearsal-" + secrets.token_hex(8))
    emails: list[str] = field(default_factory=list)
    service_logs: dict[str, str] = field(default_factory=dict)
    # what later sections need from earlier phases
    probe: dict[str, Any] = field(default_factory=dict)
    limits: tuple[dict[str, Any], dict[str, str]] = ({}, {})
    cpu_share: tuple[float, int, int] | None = None

    def __post_init__(self) -> None:
        self.report.secrets.append(self.jwt_secret)

    @property
    def database(self) -> NeonLikeDatabase:
        assert self.db is not None
        return self.db

    @property
    def mon(self) -> wl.Monitor:
        if self.monitor is None:
            self.monitor = wl.Monitor(self.database.direct_url)
        return self.monitor

    def service_env(self, **extra: str) -> dict[str, str]:
        """What the Koyeb guide sets (deploy/koyeb.md, step 3), with this machine's URLs."""
        return stage.service_env(self.database, self.jwt_secret, **extra)

    def start(
        self, role: str, *, limited: bool = True, command: tuple[str, ...] = (), **extra: str
    ) -> Container:
        box = Container(
            name=f"notes-rehearsal-{self.run_id}-{role}",
            image=self.image,
            port=free_port_for_service(),
            env=self.service_env(**extra),
            limited=limited,
            command=list(command),
        )
        self.containers.append(box)
        box.run()
        return box

    def retire(self, box: Container) -> None:
        """Keep a container's log, then remove it."""
        self.service_logs[box.name] = box.logs()
        (self.logs / f"{box.name}.log").write_text(self.service_logs[box.name])
        box.remove()
        self.containers.remove(box)

    def cleanup(self) -> list[str]:
        problems = []
        for box in list(self.containers):
            try:
                self.retire(box)
            except Exception as exc:
                problems.append(f"removing {box.name}: {exc}")
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        from container import podman

        left = podman(
            "ps",
            "-a",
            "--filter",
            f"name=notes-rehearsal-{self.run_id}-",
            "--format",
            "{{.Names}}",
            check=False,
        ).split()
        for name in left:
            podman("rm", "-f", name, check=False)
            problems.append(f"{name} was still there")
        return problems


def free_port_for_service() -> int:
    from database import free_port

    return free_port(18180)


def fmt_ms(value: float) -> str:
    return f"{value:.0f} ms"


def fmt_counts(counts: dict[str, int]) -> str:
    order = ("queued", "processing", "done", "failed")
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k)) or "none"


def fmt_mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MB"


def wait_ready(box: Container, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(box.base_url + "/readyz", timeout=10)
            body = response.json()
            if response.status_code == 200:
                return body
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    return body


def bouncer_server_ports(ctx: Context) -> set[int]:
    """Every local port PgBouncer ever used to reach Postgres: from its log and SHOW SERVERS."""
    db = ctx.database
    text = db.bouncer_log.read_text() if db.bouncer_log.exists() else ""
    ports = {int(p) for p in re.findall(r"new connection to server \(from [\d.]+:(\d+)\)", text)}
    ports |= {int(s["local_port"]) for s in db.console("SHOW SERVERS") if s.get("local_port")}
    return ports


def oom_check(ctx: Context, box: Container, phase: str, when: str) -> None:
    state = box.state()
    events = box.oom_events()
    kills = events.get("oom_kill", 0) + events.get("events_oom_kill", 0)
    ctx.report.check(
        phase,
        f"never OOM-killed, never restarted ({when})",
        state.get("Status") == "running"
        and not state.get("OOMKilled")
        and kills == 0
        and int(state.get("RestartCount", 0) or 0) == 0,
        f"State {state.get('Status')}, OOMKilled={state.get('OOMKilled')}, restarts "
        f"{state.get('RestartCount', 0)}, cgroup {events}",
    )
