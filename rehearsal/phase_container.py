"""Phase 2: the production image in a Koyeb-sized container: cold start, limits, where each
connection goes, the whole contract, load, a login burst, wake-up latency, OOM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import workload as wl
from container import CPUS, MEMORY, Container, memory_limit_probe
from context import Context, bouncer_server_ports, fmt_mb, fmt_ms, oom_check, wait_ready

POLL_FALLBACK_S = 5.0  # the image's JOB_POLL_INTERVAL default: what a lost wake-up costs
WAKE_LIMIT_MS = 200.0  # the bar for "woken by NOTIFY, not by the poll"


def limits_probe(ctx: Context) -> None:
    """Does the memory limit hold at all here? A throwaway container touches 700 MiB."""
    probe = memory_limit_probe(ctx.image, f"notes-rehearsal-{ctx.run_id}-memprobe")
    ctx.report.check(
        "cgroup limits",
        f"--memory {MEMORY} is enforced: a probe container touching 700 MiB is killed",
        not probe["survived"] and probe["exit"] in ("137", "9"),
        f"exit {probe['exit']}, cgroup oom_kill counter {probe['oom_kill_counter']}, podman "
        f"State.OOMKilled={probe['podman_oomkilled_flag']}",
    )
    ctx.probe = probe


def production_run(ctx: Context, *, users: int, notes: int, burst: int) -> None:
    r = ctx.report
    phase = "Koyeb-sized container"
    box = ctx.start("prod")
    cold = box.wait_healthy()
    r.figure(
        "cold start, empty database (migrations from scratch)",
        f"{cold:.1f} s",
        f"`podman run` to the first 200 from /healthz, --cpus {CPUS} --memory {MEMORY}",
    )
    ready = wait_ready(box)
    r.check(
        phase,
        "/readyz: Postgres reachable and migrated to head",
        ready.get("status") == "ok" and ready.get("database") == "postgresql",
        json.dumps(ready),
    )
    declared, inside = box.limits_declared(), box.limits_inside()
    ctx.limits = (declared, inside)
    mem_inside = inside.get("memory.max") or inside.get("memory/memory.limit_in_bytes")
    cpu_inside = inside.get("cpu.max") or "{} {}".format(
        inside.get("cpu/cpu.cfs_quota_us"), inside.get("cpu/cpu.cfs_period_us")
    )
    r.check(
        phase,
        "the limits reach the container's cgroup",
        mem_inside == str(512 * 1024 * 1024) and cpu_inside.split()[:2] == ["10000", "100000"],
        f"memory limit {mem_inside}, CPU quota/period {cpu_inside}",
    )

    time.sleep(10)
    idle = box.memory()
    r.figure(
        "memory at idle (10 s after ready)",
        f"VmRSS {fmt_mb(idle.get('VmRSS'))} (anonymous {fmt_mb(idle.get('RssAnon'))}), cgroup "
        f"{fmt_mb(idle.get('cgroup_usage'))}",
        "VmRSS and RssAnon of the service process (PID 1 in the container, read in /proc on "
        "the host); cgroup = the container's memory usage (v1 usage_in_bytes, v2 "
        "memory.current), page cache included, file pages charged to other cgroups not",
    )

    _connection_evidence(ctx, phase)
    _run_demo(ctx, box, phase)

    cpu0, wall0, thr0 = box.cpu_usage_seconds(), time.monotonic(), box.cpu_throttling()
    _load(ctx, box, phase, users=users, notes=notes)
    cpu1, wall1, thr1 = box.cpu_usage_seconds(), time.monotonic(), box.cpu_throttling()
    after = box.memory()
    r.figure(
        f"memory after {users} sign-ups + logins and {notes} notes",
        f"VmRSS {fmt_mb(after.get('VmRSS'))} (anonymous {fmt_mb(after.get('RssAnon'))}, peak "
        f"{fmt_mb(after.get('VmHWM'))}), cgroup {fmt_mb(after.get('cgroup_usage'))} (peak "
        f"{fmt_mb(after.get('cgroup_peak'))})",
    )
    if cpu0 is not None and cpu1 is not None:
        share = (cpu1 - cpu0) / (wall1 - wall0)
        throttled = thr1.get("nr_throttled", 0) - thr0.get("nr_throttled", 0)
        periods = thr1.get("nr_periods", 0) - thr0.get("nr_periods", 0)
        ctx.cpu_share = (share, throttled, periods)
        r.check(
            phase,
            f"--cpus {CPUS} is enforced: the container never used more",
            share <= 0.105 and throttled > 0,
            f"{cpu1 - cpu0:.1f} s of CPU in {wall1 - wall0:.0f} s of load = {share:.3f} CPUs; "
            f"throttled in {throttled} of {periods} periods",
        )
    _burst(ctx, box, phase, burst)
    _wake_ups(ctx, box, phase)
    oom_check(ctx, box, phase, "after the load and the burst")
    st = box.stats()
    if st:
        r.figure(
            "podman stats at the end of the load",
            f"{st.get('mem_usage', '?')}, CPU {st.get('cpu_percent', '?')}",
        )

    stop_started = time.monotonic()
    subprocess.run(["podman", "stop", "-t", "30", box.name], capture_output=True, check=False)
    state = box.state()
    log = box.logs()
    r.check(
        phase,
        "SIGTERM (as on a redeploy) stops it cleanly: worker drained, exit 0",
        state.get("ExitCode") == 0 and "worker.stopped" in log,
        f"exit {state.get('ExitCode')} after {time.monotonic() - stop_started:.1f} s",
    )
    ctx.retire(box)


def _connection_evidence(ctx: Context, phase: str) -> None:
    """Migrations and LISTEN on the direct URL; everything else through PgBouncer."""
    r, db = ctx.report, ctx.database
    bouncer_ports = bouncer_server_ports(ctx)
    log = db.pg_log.read_text() if db.pg_log.exists() else ""
    ddl_ports = [
        int(port)
        for port, _stmt in re.findall(
            r"127\.0\.0\.1\((\d+)\) neondb_owner@neondb .*?statement: (CREATE|ALTER)", log
        )
    ]
    via_bouncer = [p for p in ddl_ports if p in bouncer_ports]
    r.check(
        phase,
        "migrations ran over the direct URL, not through PgBouncer",
        bool(ddl_ports) and not via_bouncer,
        f"{len(ddl_ports)} DDL statements logged by Postgres, from client port(s) "
        f"{sorted(set(ddl_ports))}; PgBouncer's server ports: {len(bouncer_ports)}, "
        f"none of them among these",
    )
    backends = [b for b in ctx.mon.backends() if b["application_name"] != wl.Monitor.APP]
    direct = [b for b in backends if b["client_port"] not in bouncer_ports]
    listens = [b for b in direct if str(b["query"]).upper().startswith("LISTEN")]
    r.check(
        phase,
        "the worker's LISTEN session is on the direct URL (TLS)",
        len(listens) >= 1 and all(b["ssl"] for b in listens),
        "; ".join(
            f"pid {b['pid']} port {b['client_port']} {b['tls']} '{b['query']}'" for b in listens
        )
        or "no LISTEN session found",
    )
    others = [b for b in direct if b not in listens]
    r.check(
        phase,
        "every other session of the service comes through PgBouncer",
        not others and len(backends) > len(listens),
        f"{len(backends) - len(direct)} session(s) from PgBouncer, {len(listens)} direct "
        f"(LISTEN); unexpected direct: {others or 'none'}",
    )
    r.check(
        phase,
        "every session on the database is TLS",
        all(b["ssl"] for b in backends),
        f"{len(backends)} sessions, pg_stat_ssl.ssl all true",
    )


def _run_demo(ctx: Context, box: Container, phase: str) -> None:
    env = dict(os.environ, BASE_URL=box.base_url, NO_COLOR="1")
    env.pop("DEMO_FAIL_NOTE_TEXT", None)
    started = time.monotonic()
    demo = _run_script(ctx, sys.executable, "scripts/demo.py", env, 600)
    last = (demo.stdout.strip().splitlines() or ["(no output)"])[-1]
    r = ctx.report
    r.check(
        phase,
        "scripts/demo.py (the whole contract) passes against it",
        demo.returncode == 0,
        f"{last.strip()} ({time.monotonic() - started:.0f} s); the failed-summary step needs "
        "a model server that refuses a note, which the offline summarizer is not",
    )
    check = _run_script(ctx, "bash", "scripts/container-check.sh", env, 300)
    r.check(
        phase,
        "scripts/container-check.sh passes against it",
        check.returncode == 0,
        (check.stdout.strip().splitlines() or ["?"])[-1],
    )


def _run_script(
    ctx: Context, interpreter: str, script: str, env: dict[str, str], timeout: int
) -> subprocess.CompletedProcess[str]:
    """A script of the repository, run from its root; its output kept in logs/<name>.txt."""
    done = subprocess.run(
        [interpreter, str(ctx.root / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ctx.root,
        check=False,
    )
    log = ctx.logs / (Path(script).stem + ".txt")
    log.write_text(done.stdout + done.stderr)
    return done


def _load(ctx: Context, box: Container, phase: str, *, users: int, notes: int) -> None:
    r = ctx.report
    ctx.emails = [f"rehearsal-{ctx.run_id}-{i:03d}@example.com" for i in range(users)]

    async def accounts() -> tuple[wl.Outcome, wl.Outcome, dict[str, str]]:
        async with wl.client(box.base_url) as http:
            signed = await wl.signups(http, ctx.emails, ctx.password)
            logged, tokens = await wl.logins(http, ctx.emails, ctx.password)
            return signed, logged, tokens

    print(f"  {users} sign-ups, then {users} logins, one at a time ...", flush=True)
    signed, logged, tokens = asyncio.run(accounts())
    s, lg = wl.summary(signed.latencies_ms), wl.summary(logged.latencies_ms)
    r.check(
        phase,
        f"{users} sign-ups answered 201 and {users} logins 200",
        signed.statuses == {201: users} and logged.statuses == {200: users},
        f"sign-up {signed.statuses}, login {logged.statuses}; "
        + "; ".join((signed.errors + logged.errors)[:3]),
    )
    r.figure(
        "sign-up latency, one at a time",
        f"p50 {fmt_ms(s['p50'])}, p99 {fmt_ms(s['p99'])}",
        f"{users} requests, Argon2id m=19 MiB t=2 at {CPUS} vCPU",
    )
    r.figure(
        "login latency, one at a time",
        f"p50 {fmt_ms(lg['p50'])}, p99 {fmt_ms(lg['p99'])}",
        f"{users} requests (max {fmt_ms(lg['max'])})",
    )

    print(f"  {notes} notes, 4 clients at once ...", flush=True)
    token_list = list(tokens.values()) or ["missing"]
    posted_at = time.monotonic()

    async def write() -> tuple[wl.Outcome, list[str]]:
        async with wl.client(box.base_url) as http:
            return await wl.post_notes(http, token_list, notes, concurrency=4, seed=1)

    posted, ids = asyncio.run(write())
    post_took = time.monotonic() - posted_at
    backlog = ctx.mon.note_statuses(ids)
    waited = ctx.mon.wait_all_done(ids, timeout=900)
    total = time.monotonic() - posted_at
    counts = ctx.mon.note_statuses(ids)
    p = wl.summary(posted.latencies_ms)
    r.check(
        phase,
        f"{notes} notes accepted (202) and every one summarized (done)",
        posted.statuses == {202: notes} and counts == {"done": notes},
        f"POST {posted.statuses}; statuses {counts}; " + "; ".join(posted.errors[:3]),
    )
    r.figure(
        "POST /notes latency, 4 clients at once",
        f"p50 {fmt_ms(p['p50'])}, p99 {fmt_ms(p['p99'])}",
        f"{notes} notes accepted in {post_took:.0f} s "
        f"({notes / post_took * 60:.0f}/min) while the worker ran",
    )
    if waited is not None:
        r.figure(
            "notes summarized per minute (end to end)",
            f"{notes / total * 60:.0f} notes/min",
            f"{notes} notes from the first POST to the last `done` in {total:.0f} s, API "
            f"and embedded worker sharing {CPUS} vCPU",
        )
        left = backlog.get("queued", 0) + backlog.get("processing", 0)
        if left >= 20 and waited > 1:
            r.figure(
                "summaries per minute, worker alone",
                f"{left / waited * 60:.0f} notes/min",
                f"the {left} notes still queued when the last POST was answered, drained "
                f"in {waited:.1f} s",
            )
        else:
            r.figure(
                "summaries per minute, worker alone",
                "kept up",
                f"only {left} notes were left when the last POST was answered: the worker "
                "kept pace with the API",
            )


def _burst(ctx: Context, box: Container, phase: str, burst: int) -> None:
    r = ctx.report
    emails = (ctx.emails * (burst // max(1, len(ctx.emails)) + 1))[:burst]

    async def go() -> tuple[wl.Outcome, dict[str, str]]:
        async with wl.client(box.base_url) as http:
            return await wl.logins(http, emails, ctx.password, concurrency=burst)

    print(f"  a burst of {burst} concurrent logins ...", flush=True)
    started = time.monotonic()
    out, _ = asyncio.run(go())
    took = time.monotonic() - started
    b = wl.summary(out.latencies_ms)
    mem = box.memory()
    r.check(
        phase,
        f"a burst of {burst} concurrent logins all succeed",
        out.statuses == {200: burst},
        f"{out.statuses} in {took:.1f} s",
    )
    r.figure(
        f"login latency, {burst} at once",
        f"p50 {fmt_ms(b['p50'])}, p99 {fmt_ms(b['p99'])}",
        f"HASH_CONCURRENCY=2 queues the Argon2 work; all done in {took:.1f} s",
    )
    r.figure(
        "memory after the burst",
        f"VmRSS {fmt_mb(mem.get('VmRSS'))} (anonymous {fmt_mb(mem.get('RssAnon'))}), peak VmRSS "
        f"{fmt_mb(mem.get('VmHWM'))}, cgroup peak {fmt_mb(mem.get('cgroup_peak'))} of 512 MB",
    )


def _wake_ups(ctx: Context, box: Container, phase: str, samples: int = 10) -> None:
    """POST → done, through the embedded worker's in-process wake-up, and from another
    process (a second API without a worker), which only NOTIFY → LISTEN can deliver."""
    r = ctx.report
    helper = ctx.start("api2", limited=False, WORKER_EMBEDDED="false")
    helper.wait_healthy()
    wait_ready(helper)
    time.sleep(2)  # let the 0.1 vCPU quota of the worker container refill

    async def measure(base: str) -> tuple[list[float], list[float], list[str]]:
        client_ms, server_ms, bad = [], [], []
        async with wl.client(base) as http:
            login = await http.post(
                "/auth/login", json={"email": ctx.emails[0], "password": ctx.password}
            )
            token = login.json()["access_token"]
            for i in range(samples):
                note_id, ms, status = await wl.note_round_trip(
                    http,
                    token,
                    f"Wake-up probe {i}. Dana from Acme called back. She wants "
                    "the export on Friday. Send the pricing sheet on Monday.",
                )
                client_ms.append(ms)
                recorded = ctx.mon.latency_ms(note_id)
                if recorded is not None:
                    server_ms.append(recorded)
                if status != "done":
                    bad.append(f"{note_id} {status}")
                await asyncio.sleep(1.0)  # sporadic traffic, as a person writes notes
        return client_ms, server_ms, bad

    for label, base in (
        ("same process (in-process event)", box.base_url),
        ("from another process (NOTIFY → LISTEN on the direct URL)", helper.base_url),
    ):
        client_ms, server_ms, bad = asyncio.run(measure(base))
        c, s = wl.summary(client_ms), wl.summary(server_ms)
        r.figure(
            f"POST → done, {label}",
            f"p50 {fmt_ms(s['p50'])}, max {fmt_ms(s['max'])} (client: p50 {fmt_ms(c['p50'])})",
            f"{samples} notes 1 s apart; created_at → summarized_at as the service "
            f"recorded them; client = POST sent → `GET ?wait=10` answered done",
        )
        r.check(
            phase,
            f"wake-ups {label}: POST → done stays low (p50 < {WAKE_LIMIT_MS:.0f} ms, "
            f"every one < 1 s; the {POLL_FALLBACK_S:.0f} s poll would give 0 to 5 s)",
            not bad and s["p50"] < WAKE_LIMIT_MS and s["max"] < 1000,
            f"server p50 {s['p50']:.0f} ms, max {s['max']:.0f} ms over {len(server_ms)}; "
            f"client p50 {c['p50']:.0f} ms, max {c['max']:.0f} ms"
            + (f"; not done: {bad}" if bad else ""),
        )
    ctx.retire(helper)
