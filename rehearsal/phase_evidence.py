"""Last: what the logs and PgBouncer's counters say about the whole run, and which cgroup
limits held."""

from __future__ import annotations

import json
import re

from container import CPUS, MEMORY
from context import Context, bouncer_server_ports
from database import DB_USER


def shared_evidence(ctx: Context) -> None:
    r, db = ctx.report, ctx.database
    phase = "pooling"
    stats = {row["database"]: row for row in db.console("SHOW STATS")}
    mine = stats.get("neondb", {})
    r.figure(
        "transactions PgBouncer pooled for the service",
        f"{int(mine.get('total_xact_count', 0)):,}",
        f"{int(mine.get('total_query_count', 0)):,} queries (SHOW STATS); PgBouncer opened "
        f"{len(bouncer_server_ports(ctx))} server connections in all for the whole run",
    )
    logs = dict(ctx.service_logs)
    for path in (db.bouncer_log, db.pg_log):
        if path.exists():
            logs[path.name] = path.read_text()
    hits = {
        name: len(re.findall(r"prepared statement", text, re.IGNORECASE))
        for name, text in logs.items()
    }
    r.check(
        phase,
        'no "prepared statement" errors anywhere (service, PgBouncer, Postgres logs)',
        not any(hits.values()) and bool(ctx.service_logs),
        ", ".join(f"{k}: {v}" for k, v in hits.items()),
    )
    errors: dict[str, int] = {}
    for text in ctx.service_logs.values():
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                key = str(entry.get("event"))
                errors[key] = errors.get(key, 0) + 1
    r.check(
        phase,
        "no error-level lines in the service's logs",
        not errors,
        f"{errors or 'none'} across {len(ctx.service_logs)} container log(s)",
    )
    pg_errors = [
        line
        for line in logs.get(db.pg_log.name, "").splitlines()
        if re.search(r"\b(ERROR|FATAL):", line)
        and DB_USER in line
        and "password authentication failed" not in line
        and "no encryption" not in line
    ]
    r.check(
        phase,
        "no errors in Postgres's log for the service's role (besides the refused "
        "connections the checks made on purpose)",
        not pg_errors,
        "; ".join(pg_errors[:3]) or "none",
    )
    _limits_section(ctx)


def _limits_section(ctx: Context) -> None:
    declared, inside = ctx.limits
    probe, share = ctx.probe, ctx.cpu_share
    cpu_line = (
        f"{share[0]:.3f} CPUs on average under load, throttled in {share[1]} of {share[2]} "
        "CFS periods"
        if share
        else "not measured"
    )
    rows = "\n".join(f"| `{k}` | {v} |" for k, v in inside.items())
    ctx.report.section(
        "cgroup limits: which held",
        f"""`podman run --memory {MEMORY} --cpus {CPUS}` (runc, cgroupfs manager). `podman
inspect` HostConfig: Memory={declared.get("Memory")}, MemorySwap={declared.get("MemorySwap")},
NanoCpus={declared.get("NanoCpus")}, CpuQuota={declared.get("CpuQuota")},
CpuPeriod={declared.get("CpuPeriod")}, PidsLimit={declared.get("PidsLimit")}. Inside the
container:

| cgroup file | value |
|---|---|
{rows}

- **CPU held**: {cpu_line} (read on the host from the container's cgroup: `cpuacct.usage`
  and `cpu.stat`).
- **Memory held**: a probe container with the same `--memory` that touched 700 MiB was
  killed (exit {probe.get("exit")}, cgroup `oom_kill` {probe.get("oom_kill_counter")}).
  podman's `State.OOMKilled` said `{probe.get("podman_oomkilled_flag")}` for it, so on this
  host the rehearsal judges OOM by the cgroup's own counters (`memory.oom_control`
  `oom_kill`, `memory.failcnt`) as well as by that flag and the restart count.
- Swap: the host has none, so `memory.memsw` adds nothing; Koyeb's instance has none
  either.
""",
    )
