"""The API benchmark (`make bench`): each endpoint under wrk on SQLite and on Postgres, a
FastAPI baseline served the same way, the job figures of bench/jobs.py and (Postgres) the
idle event streams of bench/streams.py; writes
bench/results/REPORT.md, results.json and bench.png.

    python bench/run.py [--duration 10] [--quick] [--only sqlite|postgres] [--out DIR]

Postgres: `BENCH_DATABASE_URL` (default postgresql://postgres@127.0.0.1:5432/notes_bench)
names the server; the run drops and creates its own databases (notes_bench_api,
notes_bench_jobs, notes_bench_streams) there."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import streams
from corpus import note_text
from load import FLOOR_APP, LoadResult, ensure_wrk, load, start_baseline, start_reference
from report import COUNTED, FLOOR, GET, LIST, LOGIN, POST, Run, write_json, write_report

import jobs

BENCH = Path(__file__).resolve().parent
# Run order: reads first, on the seeded data; login last, as its queue of password hashes
# outlives the run.
ENDPOINTS = (
    (GET, "get_note.lua"),
    (LIST, "list_notes.lua"),
    (POST, "create_note.lua"),
    (LOGIN, "login.lua"),
)


# The write limits on, each far above what the run's one user sends, so that none refuses:
# what counting every write costs (its counters written in its own transaction).
LIMITS_ON = {
    "RATE_LIMIT_USER_WRITES_PER_MINUTE": "100000000",
    "RATE_LIMIT_ORG_WRITES_PER_MINUTE": "100000000",
    "SUMMARIES_PER_ORG_PER_DAY": "1000000000",
}


# 64 connections queued on password hashes served at ~35/s each wait 64/35 = 1.8 s for an
# answer (Little's law): with wrk's 2 s timeout the queue itself would count as failures.
LOGIN_TIMEOUT = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, help="seconds per endpoint (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 s per endpoint, fewer notes")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="one database")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="report directory")
    parser.add_argument("--timeout", type=int, default=2, help="wrk's request timeout, s")
    parser.add_argument("--no-jobs", action="store_true", help="skip the job figures")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2 if args.quick else 10)
    args.warmup = 0 if args.quick else 1
    args.notes = 20 if args.quick else 200
    args.job_notes = 200 if args.quick else 2000
    args.samples = 20 if args.quick else 200
    args.streams = 20 if args.quick else 500
    return args


def machine(wrk: str, postgres: bool) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    git = ["git", "-C", str(BENCH.parent)]
    commit = (
        subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "unknown"
    )
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "src"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": subprocess.run([wrk, "-v"], capture_output=True, text=True)
        .stdout.split(" Copyright")[0]
        .strip(),
        "commit": f"`{commit}`" + (f" with {len(dirty)} changed files under src/" if dirty else ""),
        "load_before": Path("/proc/loadavg").read_text().split()[0],
    }
    if postgres:
        with psycopg.connect(jobs.pg_url("postgres")) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgres"] = str(row[0]).split()[0] if row else "?"
    return info


def check(client: httpx.Client, method: str, url: str, expect: int, **kw: Any) -> int:
    """The request a wrk script sends, once: it must succeed, or the load measures errors."""
    r = client.request(method, url, **kw)
    if r.status_code != expect:
        raise RuntimeError(f"{method} {url}: expected {expect}, got {r.status_code}: {r.text}")
    return len(r.content)


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "postgres":
        url = jobs.pg_url("notes_bench_api")
        jobs.reset_pg(url)
        yield url
    else:
        yield f"sqlite:///{tmp / 'bench.db'}"


def seed(base: str, env: dict[str, str], notes: int, tmp: Path, logs: Path) -> dict[str, str]:
    """One user and `notes` summarized notes; returns the wrk scripts' environment."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/auth/signup", json={"email": email, "password": jobs.PASSWORD})
        r.raise_for_status()
        token = r.json()["access_token"]
        client.headers["Authorization"] = "Bearer " + token
        ids = []
        for i in range(notes):
            body = {"title": f"Customer call {i}", "raw_text": note_text(i)}
            r = client.post("/notes", json=body)
            r.raise_for_status()
            ids.append(r.json()["id"])
        # A worker summarizes them, then leaves: the API is measured alone.
        worker = jobs.spawn("worker", env, logs)
        try:
            deadline = time.monotonic() + 120
            while any(
                client.get("/notes", params={"status": s, "limit": 1}).json()["items"]
                for s in ("queued", "processing")
            ):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise jobs.failure(worker, "the seed notes were not summarized")
                time.sleep(0.2)
        finally:
            jobs.stop(worker)
    (tmp / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp / "note.json").write_text(json.dumps({"title": "Load", "raw_text": note_text(10**6)}))
    return {
        "BENCH_TOKEN": token,
        "BENCH_EMAIL": email,
        "BENCH_PASSWORD": jobs.PASSWORD,
        "BENCH_IDS_FILE": str(tmp / "ids.txt"),
        "BENCH_BODY_FILE": str(tmp / "note.json"),
    }


def probes(client: httpx.Client, wrk_env: dict[str, str]) -> dict[str, Callable[[], int]]:
    """Each endpoint's request as its wrk script sends it, checked for its 2xx status."""
    ids = Path(wrk_env["BENCH_IDS_FILE"]).read_text().split()
    auth = {"Authorization": "Bearer " + wrk_env["BENCH_TOKEN"]}
    login = {"email": wrk_env["BENCH_EMAIL"], "password": wrk_env["BENCH_PASSWORD"]}
    body = Path(wrk_env["BENCH_BODY_FILE"]).read_bytes()
    json_auth = {**auth, "Content-Type": "application/json"}
    return {
        GET: partial(check, client, "GET", f"/notes/{ids[0]}", 200, headers=auth),
        LIST: partial(check, client, "GET", "/notes?limit=20", 200, headers=auth),
        POST: partial(check, client, "POST", "/notes", 202, headers=json_auth, content=body),
        LOGIN: partial(check, client, "POST", "/auth/login", 200, json=login),
    }


def measure(
    args: argparse.Namespace,
    wrk: str,
    name: str,
    script: str,
    base: str,
    pid: int,
    env: dict[str, str],
    probe: Callable[[], int],
) -> LoadResult:
    """`load` with the run's duration and warm-up; a login gets its longer timeout."""
    timeout = max(args.timeout, LOGIN_TIMEOUT) if name == LOGIN else args.timeout
    return load(
        name,
        wrk,
        script,
        base,
        pid,
        duration=args.duration,
        warmup=args.warmup,
        timeout=timeout,
        env=env,
        probe=probe,
    )


def bench_database(kind: str, wrk: str, args: argparse.Namespace, tmp: Path) -> list[LoadResult]:
    print(f"{kind}: fresh database, {args.notes} notes", flush=True)
    tmp.mkdir(parents=True, exist_ok=True)
    with database(kind, tmp) as url:
        env = jobs.base_env(url, WORKER_EMBEDDED="false", ACCESS_TOKEN_TTL="3600")
        server, base = asyncio.run(jobs.start_server(env, args.logs))
        floor = None
        try:
            wrk_env = seed(base, env, args.notes, tmp, args.logs)
            if kind == "postgres":
                floor = start_reference(FLOOR_APP, args.logs, {"BENCH_FLOOR_DATABASE": url})
            results = []
            with httpx.Client(base_url=base, timeout=60) as client:
                checks = probes(client, wrk_env)
                for probe in checks.values():
                    probe()
                for name, script in ENDPOINTS:
                    results.append(
                        measure(args, wrk, name, script, base, server.pid, wrk_env, checks[name])
                    )
                    # The floor's same route right after, on the same rows.
                    if floor is not None and name != LOGIN:
                        results.append(bench_floor(wrk, args, floor, name, script, wrk_env))
        finally:
            jobs.stop(server)
            if floor is not None:
                jobs.stop(floor[0])
        # The same creates once more, from a server with the write limits on.
        server, base = asyncio.run(jobs.start_server({**env, **LIMITS_ON}, args.logs))
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                probe = probes(client, wrk_env)[POST]
                probe()
                script = "create_note.lua"
                results.append(
                    measure(args, wrk, COUNTED, script, base, server.pid, wrk_env, probe)
                )
        finally:
            jobs.stop(server)
        return results


def bench_floor(
    wrk: str,
    args: argparse.Namespace,
    floor: tuple[subprocess.Popen[bytes], str],
    name: str,
    script: str,
    wrk_env: dict[str, str],
) -> LoadResult:
    """`floor_app.py`'s answer to the same load on the same database: the route as one
    statement (see floor_app.py)."""
    proc, base = floor
    with httpx.Client(base_url=base, timeout=60) as client:
        probe = probes(client, wrk_env)[name]
        return measure(args, wrk, FLOOR + name, script, base, proc.pid, wrk_env, probe)


def bench_baseline(wrk: str, args: argparse.Namespace, tmp: Path) -> LoadResult:
    print("baseline: bench/baseline_app.py", flush=True)
    ids = [str(uuid.uuid4()) for _ in range(args.notes)]
    (tmp / "baseline-ids.txt").write_text("\n".join(ids) + "\n")
    # A token-sized header, so the request is the size of the API's.
    env = {"BENCH_TOKEN": "x" * 200, "BENCH_IDS_FILE": str(tmp / "baseline-ids.txt")}
    proc, base = start_baseline(args.logs)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            probe = partial(check, client, "GET", f"/notes/{ids[0]}", 200)
            probe()
            return measure(args, wrk, "baseline", "get_note.lua", base, proc.pid, env, probe)
    finally:
        jobs.stop(proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    kinds = [args.only] if args.only else ["sqlite", "postgres"]
    if "postgres" in kinds:
        try:
            psycopg.connect(jobs.pg_url("postgres"), connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            sys.exit(
                f"bench: Postgres at {jobs.PG} does not answer ({exc}).\n"
                "  Set BENCH_DATABASE_URL, or run with --only sqlite."
            )
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="notes-bench-") as tmp_name:
        tmp = Path(tmp_name)
        args.logs = tmp / "logs"
        try:
            run = Run(
                machine=machine(wrk, "postgres" in kinds),
                settings={
                    "duration": args.duration,
                    "warmup": args.warmup,
                    "timeout": args.timeout,
                    "login_timeout": max(args.timeout, LOGIN_TIMEOUT),
                    "notes": args.notes,
                    "quick": args.quick,
                },
                baseline=bench_baseline(wrk, args, tmp),
            )
            for kind in kinds:
                run.databases["SQLite" if kind == "sqlite" else "Postgres"] = bench_database(
                    kind, wrk, args, tmp / kind
                )
            if not args.no_jobs:
                print(f"jobs: {args.job_notes} notes, {args.samples} latency samples", flush=True)
                run.jobs = asyncio.run(
                    jobs.measure(
                        notes=args.job_notes,
                        samples=args.samples,
                        postgres="postgres" in kinds,
                        sqlite="sqlite" in kinds,
                        url=jobs.pg_url("notes_bench_jobs"),
                        log_dir=args.logs,
                    )
                )
                print("\n".join("  " + line for line in jobs.describe(run.jobs)))
            if "postgres" in kinds:
                print(f"streams: {args.streams} idle event streams", flush=True)
                run.streams = asyncio.run(streams.measure(args.streams, log_dir=args.logs))
        except Exception:
            kept = args.out / "logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(args.logs, kept, dirs_exist_ok=True)
            print(f"bench: failed; the servers' logs are in {kept}", file=sys.stderr)
            raise
    png = _plot(run, args.out)
    report = write_report(run, args.out, png)
    write_json(run, args.out)
    print(f"wrote {report} in {time.monotonic() - started:.0f} s")
    return 0


def _plot(run: Run, out: Path) -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("bench: matplotlib is not installed, so no bench.png", file=sys.stderr)
        return False
    from plot import plot

    plot(run, out / "bench.png")
    return True


if __name__ == "__main__":
    sys.exit(main())
