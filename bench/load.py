"""Load one endpoint with wrk from a separate process and read back its figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

import jobs

WRK_DIR = Path(__file__).resolve().parent / "wrk"
BASELINE_APP = Path(__file__).resolve().parent / "baseline_app.py"
FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"
CONNECTIONS = 64


@dataclass
class LoadResult:
    name: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int  # HTTP status >= 400, as wrk counts it (no 1xx/3xx is expected here)
    socket_errors: int  # connect, read and write errors and timeouts
    timeouts: int
    requests: int
    response_bytes: int  # the body of one answer
    rss_mb: float  # the server's VmRSS after the run
    cpu_pct: float  # the server's CPU time during the run over its length (100 = one core)

    @property
    def tail(self) -> float:
        """p99 / p50; infinite when nothing completed."""
        return self.p99_ms / self.p50_ms if self.p50_ms else float("inf")

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "errors": self.errors}


def ensure_wrk() -> str:
    """wrk's path; installs the Debian package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing it with `apt-get install -y wrk`", flush=True)
        install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
        if subprocess.run(install, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False)
            subprocess.run(install, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "bench: wrk (the HTTP load generator) is not installed.\n"
        "  Debian/Ubuntu: sudo apt-get install wrk    macOS: brew install wrk\n"
        "  or build it from https://github.com/wg/wrk, then run the benchmark again."
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User and system time of every thread of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_baseline(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_reference(BASELINE_APP, log_dir)


def start_reference(
    script: Path, log_dir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A reference app (`baseline_app.py`, `floor_app.py`) on a free port, once it answers."""
    port = jobs.free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{script.stem}.log"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port)],
        cwd=script.parent,
        env={**os.environ, **(env or {})},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    jobs.LOGS[proc.pid] = log_path
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise jobs.failure(proc, f"{script.name} exited")
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    jobs.stop(proc)
    raise jobs.failure(proc, f"{script.name} did not start")


def run_wrk(
    wrk: str, script: str, base: str, *, duration: int, timeout: int, env: dict[str, str]
) -> dict[str, float]:
    command = [
        wrk,
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        f"--timeout={timeout}s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        base + "/",
    ]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            figures: dict[str, float] = json.loads(line.removeprefix("BENCH_RESULT "))
            return figures
    raise RuntimeError(f"wrk {script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def load(
    name: str,
    wrk: str,
    script: str,
    base: str,
    pid: int,
    *,
    duration: int,
    warmup: int,
    timeout: int,
    env: dict[str, str],
    probe: Callable[[], int],
) -> LoadResult:
    """`probe` sends the script's request once and returns the body's size. Sent after a
    run, it queues behind whatever wrk left in flight (hashes waiting for their turn, say),
    so when it answers the server is idle again."""
    if warmup:
        run_wrk(wrk, script, base, duration=warmup, timeout=timeout, env=env)
        probe()
    cpu = cpu_seconds(pid)
    w = run_wrk(wrk, script, base, duration=duration, timeout=timeout, env=env)
    cpu = cpu_seconds(pid) - cpu
    response_bytes = probe()
    socket_errors = int(w["connect"] + w["read"] + w["write"] + w["timeout"])
    result = LoadResult(
        name=name,
        rps=w["requests"] / (w["duration_us"] / 1e6),
        p50_ms=w["p50_us"] / 1000,
        p90_ms=w["p90_us"] / 1000,
        p99_ms=w["p99_us"] / 1000,
        max_ms=w["max_us"] / 1000,
        non_2xx=int(w["status"]),
        socket_errors=socket_errors,
        timeouts=int(w["timeout"]),
        requests=int(w["requests"]),
        response_bytes=response_bytes,
        rss_mb=rss_mb(pid),
        cpu_pct=100 * cpu / (w["duration_us"] / 1e6),
    )
    print(
        f"  {name:<22} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:8.2f} ms  errors {result.errors}  RSS {result.rss_mb:.0f} MB  "
        f"CPU {result.cpu_pct:.0f}%",
        flush=True,
    )
    return result
