"""The Koyeb-sized container: podman run with 512 MB and 0.1 vCPU, and what the kernel says.

Koyeb's free instance is one container with a memory limit and a CPU quota. Here the same
limits go to `podman run --memory 512m --cpus 0.1`, and the rehearsal reads back what the
cgroup (v1 or v2) enforces, from the host side so that measuring costs the container nothing.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MEMORY = "512m"
CPUS = "0.1"
MIB = 1024 * 1024


def podman_runtime_args() -> list[str]:
    """What ../shared/tools/container-smoke passes to podman on these machines: runc (crun
    refuses hybrid cgroup hosts), and ulimits podman can actually set (rootful podman asks
    for more than the hard limits allow here)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 1048576 if nofile == resource.RLIM_INFINITY else min(nofile, 1048576)
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    runtime = (
        "runc" if subprocess.run(["which", "runc"], capture_output=True).returncode == 0 else "crun"
    )
    return [
        "--runtime",
        runtime,
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
    ]


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])}: {result.stderr.strip()[-600:]}")
    return result.stdout


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass
class Container:
    name: str
    image: str
    port: int
    env: dict[str, str]
    limited: bool = True  # the Koyeb limits; False for a helper instance
    command: list[str] = field(default_factory=list)  # the image's CMD when empty
    pid: int = 0
    started_at: float = 0.0
    cgroup_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run_args(self) -> list[str]:
        """The arguments of `podman run` (after `podman`), secrets included."""
        args = ["run", "-d", "--name", self.name, *podman_runtime_args(), "--network", "host"]
        if self.limited:
            args += ["--memory", MEMORY, "--cpus", CPUS]
        # Koyeb probes /healthz itself; the image's HEALTHCHECK would need systemd timers
        # here and would spend the instance's 0.1 vCPU on a Python start every 30 s.
        args.append("--no-healthcheck")
        for key, value in {**self.env, "PORT": str(self.port)}.items():
            args += ["-e", f"{key}={value}"]
        return [*args, self.image, *self.command]

    def run(self) -> None:
        """`podman run -d`; the clock for the cold start starts here."""
        args = self.run_args()
        self.started_at = time.monotonic()
        podman(*args)
        self.pid = int(podman("inspect", "-f", "{{.State.Pid}}", self.name).strip())
        self._find_cgroups()

    def _find_cgroups(self) -> None:
        """The container's cgroup directories as the host sees them (v1: one per controller,
        v2: one)."""
        for line in Path(f"/proc/{self.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else ["unified"]:
                if controller == "unified":
                    candidate = Path("/sys/fs/cgroup/unified" + path)
                    if not candidate.exists():
                        candidate = Path("/sys/fs/cgroup" + path)
                else:
                    candidate = Path(f"/sys/fs/cgroup/{controller}{path}")
                if candidate.exists():
                    self.cgroup_dirs[controller] = candidate

    def wait_healthy(self, timeout: float = 120) -> float:
        """Seconds from `podman run` to the first 200 from /healthz."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get(self.base_url + "/healthz").status_code == 200:
                        return time.monotonic() - self.started_at
                except httpx.HTTPError:
                    pass
                if self.state().get("Status") not in ("running", "created", "configured"):
                    raise RuntimeError(f"container {self.name} is {self.state().get('Status')}")
                time.sleep(0.05)
        raise RuntimeError(f"/healthz did not answer within {timeout:.0f} s")

    def wait_log(self, marker: str, timeout: float = 90) -> float:
        """Seconds from `podman run` until `marker` shows in the log (a worker has no HTTP)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.logs():
                return time.monotonic() - self.started_at
            if self.state().get("Status") not in ("running", "created", "configured"):
                raise RuntimeError(f"container {self.name} is {self.state().get('Status')}")
            time.sleep(0.5)
        raise RuntimeError(f"{marker!r} did not appear in {self.name}'s log within {timeout:.0f} s")

    def inspect(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(podman("inspect", self.name))
        return data[0]

    def state(self) -> dict[str, Any]:
        try:
            return dict(self.inspect()["State"])
        except (RuntimeError, json.JSONDecodeError, IndexError, KeyError):
            return {"Status": "gone"}

    def logs(self) -> str:
        result = subprocess.run(
            ["podman", "logs", self.name], capture_output=True, text=True, timeout=60, check=False
        )
        return result.stdout + result.stderr

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command, timeout=60)

    def pause(self) -> None:
        podman("pause", self.name)

    def unpause(self) -> None:
        podman("unpause", self.name)

    def remove(self) -> None:
        podman("rm", "-f", "-t", "10", self.name, check=False, timeout=60)

    # ---------------------------------------------------------------- measurements

    def limits_declared(self) -> dict[str, Any]:
        host = self.inspect()["HostConfig"]
        return {
            "Memory": host.get("Memory"),
            "MemorySwap": host.get("MemorySwap"),
            "NanoCpus": host.get("NanoCpus"),
            "CpuQuota": host.get("CpuQuota"),
            "CpuPeriod": host.get("CpuPeriod"),
            "PidsLimit": host.get("PidsLimit"),
        }

    def limits_inside(self) -> dict[str, str]:
        """The cgroup files as the container itself sees them (v2 names first, then v1)."""
        script = (
            "for f in memory.max memory.swap.max cpu.max pids.max "
            "memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes "
            "cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us pids/pids.max; do "
            '[ -r "/sys/fs/cgroup/$f" ] && echo "$f $(cat /sys/fs/cgroup/$f)"; done; true'
        )
        out = self.exec("sh", "-c", script)
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def memory(self) -> dict[str, float]:
        """Megabytes: the process's VmRSS and VmHWM, the cgroup's usage, peak and anonymous
        memory (rss), read on the host."""
        out: dict[str, float] = {}
        status = _read(Path(f"/proc/{self.pid}/status")) or ""
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) / 1024
        mem = self.cgroup_dirs.get("memory")
        if mem is not None and (mem / "memory.usage_in_bytes").exists():  # cgroup v1
            for key, name in (
                ("usage", "memory.usage_in_bytes"),
                ("peak", "memory.max_usage_in_bytes"),
            ):
                raw = _read(mem / name)
                if raw:
                    out[f"cgroup_{key}"] = int(raw) / MIB
            stat = dict(line.split() for line in (_read(mem / "memory.stat") or "").splitlines())
            if "rss" in stat:
                out["cgroup_rss"] = int(stat["rss"]) / MIB
        else:
            unified = self.cgroup_dirs.get("unified")
            if unified is not None:
                raw = _read(unified / "memory.current")
                if raw:
                    out["cgroup_usage"] = int(raw) / MIB
                peak = _read(unified / "memory.peak")
                if peak:
                    out["cgroup_peak"] = int(peak) / MIB
                stat = dict(
                    line.split() for line in (_read(unified / "memory.stat") or "").splitlines()
                )
                if "anon" in stat:
                    out["cgroup_rss"] = int(stat["anon"]) / MIB
        return out

    def oom_events(self) -> dict[str, int]:
        """The cgroup's own OOM counters: kills, and (v1) how often usage hit the limit."""
        out: dict[str, int] = {}
        mem = self.cgroup_dirs.get("memory")
        if mem is not None and (mem / "memory.oom_control").exists():
            for line in (_read(mem / "memory.oom_control") or "").splitlines():
                key, _, value = line.partition(" ")
                if key in ("oom_kill", "under_oom"):
                    out[key] = int(value)
            failcnt = _read(mem / "memory.failcnt")
            if failcnt is not None:
                out["failcnt"] = int(failcnt)
        unified = self.cgroup_dirs.get("unified")
        if unified is not None and (unified / "memory.events").exists():
            for line in (_read(unified / "memory.events") or "").splitlines():
                key, _, value = line.partition(" ")
                if key in ("oom", "oom_kill", "max"):
                    out[f"events_{key}"] = int(value)
        return out

    def cpu_usage_seconds(self) -> float | None:
        """CPU time the container's cgroup has used so far."""
        acct = self.cgroup_dirs.get("cpuacct")
        if acct is not None:
            raw = _read(acct / "cpuacct.usage")
            if raw:
                return int(raw) / 1e9
        unified = self.cgroup_dirs.get("unified")
        if unified is not None:
            for line in (_read(unified / "cpu.stat") or "").splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        return None

    def cpu_throttling(self) -> dict[str, int]:
        cpu = self.cgroup_dirs.get("cpu") or self.cgroup_dirs.get("unified")
        if cpu is None:
            return {}
        out: dict[str, int] = {}
        for line in (_read(cpu / "cpu.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key in ("nr_periods", "nr_throttled", "throttled_time", "throttled_usec"):
                out[key] = int(value)
        return out

    def stats(self) -> dict[str, Any]:
        """`podman stats` once: its own view of memory and CPU."""
        try:
            out = podman("stats", "--no-stream", "--format", "json", self.name, timeout=30)
            data = json.loads(out)
            return dict(data[0]) if data else {}
        except (RuntimeError, json.JSONDecodeError, subprocess.TimeoutExpired):
            return {}


def memory_limit_probe(image: str, name: str) -> dict[str, Any]:
    """A throwaway container with the same limits that tries to touch 700 MiB: the memory
    limit held when the kernel kills it. Also tells whether podman noticed (State.OOMKilled)."""
    hog = (
        "b = bytearray(700 << 20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "print('touched 700 MiB')\n"
    )
    script = (
        f'python -c "{hog}"; echo "exit=$?"; '
        "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events "
        "2>/dev/null; exit 0"
    )
    args = [
        "run",
        "--name",
        name,
        *podman_runtime_args(),
        "--network",
        "host",
        "--memory",
        MEMORY,
        "--cpus",
        "1",
        "--no-healthcheck",
        image,
        "sh",
        "-c",
        script,
    ]
    try:
        result = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=120, check=False
        )
        out = result.stdout
        oom_flag = podman("inspect", "-f", "{{.State.OOMKilled}}", name, check=False).strip()
    finally:
        podman("rm", "-f", name, check=False)
    exit_line = next((line for line in out.splitlines() if line.startswith("exit=")), "exit=?")
    kills = 0
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            kills = max(kills, int(value))
    return {
        "survived": "touched 700 MiB" in out,
        "exit": exit_line.removeprefix("exit="),
        "oom_kill_counter": kills,
        "podman_oomkilled_flag": oom_flag,
    }
