"""Job figures: summaries per second with one and two worker processes on Postgres, and
the time from `POST /notes` to `done` with an idle worker on Postgres and SQLite.

    python bench/jobs.py [--notes 2000] [--latency-samples 200]
    python bench/jobs.py --fairness [--backlog 5000] [--probes 20]

Throughput: notes are queued with no worker running, then K `notes-api worker` processes
start; the rate is measured between the first and the last `summarized_at`, so process
start-up is left out. Latency: a real server (`notes-api serve`) with an idle worker takes
one note at a time; each note's `summarized_at - created_at` is the time to done.
Fairness: organization A queues a backlog with no worker running, one worker starts, then
organization B creates notes one at a time; each of B's notes is timed from `POST` to `done`
while A's backlog drains, and the drain rate of the whole queue is measured as above.

`bench/run.py` imports this module: the process helpers below are shared with it."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
from corpus import note_text

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/notes_bench")
PASSWORD = "benchmark password"
LOGS: dict[int, Path] = {}  # pid -> the log file of a process started by spawn()


def pg_url(name: str) -> str:
    """The URL of database `name` on the server `BENCH_DATABASE_URL` points at."""
    return PG.rsplit("/", 1)[0] + "/" + name


def reset_pg(url: str) -> None:
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notes_api_command() -> list[str]:
    """The console script of this environment (what `make run` starts), else the module."""
    script = Path(sys.executable).with_name("notes-api")
    return [str(script)] if script.exists() else [sys.executable, "-m", "notes_api.cli"]


def spawn(
    command: str, env: dict[str, str], log_dir: Path | None = None
) -> subprocess.Popen[bytes]:
    log_dir = log_dir or Path(tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the child writes to it until it exits
        prefix=f"bench-{command}-", suffix=".log", dir=log_dir, delete=False
    )
    proc = subprocess.Popen(
        [*notes_api_command(), command],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    LOGS[proc.pid] = Path(log.name)
    return proc


def log_of(proc: subprocess.Popen[bytes]) -> Path | None:
    return LOGS.get(proc.pid)


def failure(proc: subprocess.Popen[bytes], what: str, lines: int = 25) -> RuntimeError:
    """An error that carries the end of the process's log, which says why."""
    log = log_of(proc)
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log else []
    return RuntimeError("\n".join([f"{what} (log: {log})", *tail]))


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def base_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "DATABASE_URL_DIRECT": "",
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "SUMMARIZER": "extractive",
        # Benchmarks measure the service at full load from one account and one address: no
        # write limits, and no login throttle (it counts attempts in flight, by design).
        "RATE_LIMIT_USER_WRITES_PER_MINUTE": "0",
        "RATE_LIMIT_ORG_WRITES_PER_MINUTE": "0",
        "LOGIN_MAX_FAILURES": "1000000",
        "SIGNUP_PER_CLIENT_PER_HOUR": "0",
        **extra,
    }


async def start_server(
    env: dict[str, str], log_dir: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = spawn("serve", {**env, "HOST": "127.0.0.1", "PORT": str(port)}, log_dir)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise failure(proc, f"the server exited with {proc.returncode}")
            try:
                if (await client.get(base + "/healthz")).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    stop(proc)
    raise failure(proc, "the server did not answer /healthz within 60 s")


async def signup(
    client: httpx.AsyncClient, base: str, organization: str | None = None
) -> dict[str, str]:
    email = f"bench-{random.getrandbits(40):x}@example.com"
    body = {"email": email, "password": PASSWORD}
    if organization is not None:
        body["organization_name"] = organization
    r = await client.post(base + "/auth/signup", json=body)
    r.raise_for_status()
    return {"Authorization": "Bearer " + r.json()["access_token"]}


async def throughput(workers: int, notes: int, url: str = PG, log_dir: Path | None = None) -> float:
    """Summaries per second with `workers` worker processes draining `notes` queued notes."""
    reset_pg(url)
    server, base = await start_server(base_env(url, WORKER_EMBEDDED="false"), log_dir)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = await signup(client, base)
            sem = asyncio.Semaphore(32)

            async def post(i: int) -> None:
                async with sem:
                    r = await client.post(
                        base + "/notes", headers=headers, json={"raw_text": note_text(i)}
                    )
                    r.raise_for_status()

            await asyncio.gather(*(post(i) for i in range(notes)))
        env = base_env(url)  # the worker as deployed: default settings
        procs = [spawn("worker", env, log_dir) for _ in range(workers)]
        try:
            with psycopg.connect(url) as conn:
                deadline = time.monotonic() + 600
                while True:
                    row = conn.execute(
                        "SELECT count(*) FROM notes WHERE status = 'done'"
                    ).fetchone()
                    conn.commit()
                    if row is not None and row[0] == notes:
                        break
                    for p in procs:
                        if p.poll() is not None:
                            raise failure(p, f"a worker exited with {p.returncode}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{notes - (row[0] if row else 0)} notes not done")
                    await asyncio.sleep(0.1)
                span = conn.execute(
                    "SELECT min(summarized_at), max(summarized_at) FROM notes"
                ).fetchone()
        finally:
            for p in procs:
                stop(p)
    finally:
        stop(server)
    assert span is not None
    first, last = span
    return float(notes / (last - first).total_seconds())


async def latency(env: dict[str, str], samples: int, log_dir: Path | None = None) -> list[float]:
    """Milliseconds from `created_at` to `summarized_at`, one note at a time, idle worker."""
    server, base = await start_server(env, log_dir)
    worker = None if env.get("WORKER_EMBEDDED") == "true" else spawn("worker", env, log_dir)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = await signup(client, base)
            await asyncio.sleep(2)  # let the worker go idle
            result: list[float] = []
            for i in range(samples):
                r = await client.post(
                    base + "/notes", headers=headers, json={"raw_text": note_text(i)}
                )
                r.raise_for_status()
                note = (
                    await client.get(f"{base}/notes/{r.json()['id']}?wait=10", headers=headers)
                ).json()
                assert note["status"] == "done", note
                created = datetime.fromisoformat(note["created_at"])
                done = datetime.fromisoformat(note["summarized_at"])
                result.append((done - created).total_seconds() * 1000)
                await asyncio.sleep(0.05)  # the worker is idle again before the next note
            return result
    finally:
        if worker is not None:
            stop(worker)
        stop(server)


@dataclass
class Fairness:
    backlog: int
    probe_seconds: list[float]  # each of B's notes, POST -> done, wall clock
    summaries_per_second: float  # the whole queue, first to last `summarized_at`


async def fairness(
    backlog: int, probes: int, url: str = PG, log_dir: Path | None = None
) -> Fairness:
    """Organization A's backlog is queued, one worker starts on it, then organization B
    creates `probes` notes one at a time, each waited for before the next."""
    reset_pg(url)
    env = base_env(url, WORKER_EMBEDDED="false")
    server, base = await start_server(env, log_dir)
    worker = None
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            org_a = await signup(client, base, "Org A")
            org_b = await signup(client, base, "Org B")
            sem = asyncio.Semaphore(32)

            async def post(i: int) -> None:
                async with sem:
                    r = await client.post(
                        base + "/notes", headers=org_a, json={"raw_text": note_text(i)}
                    )
                    r.raise_for_status()

            await asyncio.gather(*(post(i) for i in range(backlog)))
            worker = spawn("worker", env, log_dir)
            with psycopg.connect(url) as conn:
                while True:  # the worker is up and busy with A's backlog
                    row = conn.execute("SELECT count(*) FROM notes WHERE status = 'done'")
                    done = row.fetchone()
                    conn.commit()
                    if done is not None and done[0] > 0:
                        break
                    if worker.poll() is not None:
                        raise failure(worker, f"the worker exited with {worker.returncode}")
                    await asyncio.sleep(0.05)
            seconds: list[float] = []
            for i in range(probes):
                started = time.perf_counter()
                r = await client.post(
                    base + "/notes", headers=org_b, json={"raw_text": note_text(backlog + i)}
                )
                r.raise_for_status()
                note_url = f"{base}/notes/{r.json()['id']}?wait=10"
                while (await client.get(note_url, headers=org_b)).json()["status"] != "done":
                    if worker.poll() is not None:
                        raise failure(worker, f"the worker exited with {worker.returncode}")
                seconds.append(time.perf_counter() - started)
        with psycopg.connect(url) as conn:
            deadline = time.monotonic() + 600
            while True:
                row = conn.execute("SELECT count(*) FROM notes WHERE status <> 'done'")
                left = row.fetchone()
                conn.commit()
                if left is not None and left[0] == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the backlog was not drained in 600 s")
                await asyncio.sleep(0.1)
            span = conn.execute("SELECT min(summarized_at), max(summarized_at) FROM notes")
            first, last = span.fetchone() or (None, None)
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
    assert first is not None
    assert last is not None
    rate = (backlog + probes) / (last - first).total_seconds()
    return Fairness(backlog=backlog, probe_seconds=seconds, summaries_per_second=rate)


def describe_fairness(figures: Fairness) -> list[str]:
    s = figures.probe_seconds
    return [
        f"fairness, Postgres, 1 worker: {figures.backlog} notes queued by organization A, then "
        f"{len(s)} notes by organization B one at a time",
        f"  B's notes POST -> done: max {max(s):.2f} s, median {statistics.median(s):.2f} s, "
        f"min {min(s):.2f} s",
        f"  whole queue drained at {figures.summaries_per_second:.0f} summaries/s",
    ]


async def summarizer_rate(notes: int) -> float:
    """The extractive summarizer alone, in this process, on the same `notes` texts the
    throughput runs queue: summaries/s with no database, queue or worker around it. The
    worker figures are read beside it: the machine is shared, and both move with its load."""
    from notes_api.summarize.extractive import ExtractiveSummarizer

    summarizer = ExtractiveSummarizer()
    texts = [note_text(i) for i in range(notes)]
    started = time.perf_counter()
    for text in texts:
        await summarizer.summarize(text)
    return notes / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@dataclass
class JobFigures:
    notes: int
    samples: int
    summarizer_alone: float | None = None  # summaries/s, in-process, no engine
    one_worker: float | None = None  # summaries/s, Postgres
    two_workers: float | None = None
    pg_latency_ms: list[float] | None = None  # standalone idle worker
    sqlite_latency_ms: list[float] | None = None  # embedded idle worker
    fairness: Fairness | None = None  # one organization's backlog, another's new notes


async def measure(
    *,
    notes: int,
    samples: int,
    postgres: bool = True,
    sqlite: bool = True,
    url: str = PG,
    log_dir: Path | None = None,
    backlog: int = 5000,
    probes: int = 20,
    throughput_only: bool = False,
) -> JobFigures:
    figures = JobFigures(notes=notes, samples=samples)
    if postgres:
        figures.summarizer_alone = await summarizer_rate(notes)
        figures.one_worker = await throughput(1, notes, url, log_dir)
        figures.two_workers = await throughput(2, notes, url, log_dir)
        if not throughput_only:
            figures.fairness = await fairness(backlog, probes, url, log_dir)
    if postgres and not throughput_only:
        reset_pg(url)
        env = base_env(url, WORKER_EMBEDDED="false")
        figures.pg_latency_ms = await latency(env, samples, log_dir)
    if sqlite and not throughput_only:
        with tempfile.TemporaryDirectory(prefix="notes-bench-") as tmp:
            env = base_env(f"sqlite:///{tmp}/bench.db", WORKER_EMBEDDED="true")
            figures.sqlite_latency_ms = await latency(env, samples, log_dir)
    return figures


def describe(figures: JobFigures) -> list[str]:
    lines = []
    if figures.one_worker is not None and figures.two_workers is not None:
        lines.append(
            f"throughput, Postgres, extractive: 1 worker {figures.one_worker:.0f}/s, "
            f"2 workers {figures.two_workers:.0f}/s "
            f"({figures.two_workers / figures.one_worker:.2f}x)"
        )
    if figures.summarizer_alone is not None and figures.one_worker is not None:
        lines.append(
            f"the extractive summarizer alone, in-process, same texts, same run: "
            f"{figures.summarizer_alone:.0f}/s (1 worker = "
            f"{figures.one_worker / figures.summarizer_alone:.3f} of it)"
        )
    for name, values in (
        ("Postgres, standalone worker", figures.pg_latency_ms),
        ("SQLite, embedded worker", figures.sqlite_latency_ms),
    ):
        if values:
            lines.append(
                f"POST -> done, {name}: p50 {pct(values, 50):.1f} ms, "
                f"p99 {pct(values, 99):.1f} ms (n={len(values)})"
            )
    if figures.fairness is not None:
        lines += describe_fairness(figures.fairness)
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--fairness", action="store_true", help="only the fairness scenario")
    parser.add_argument(
        "--throughput", action="store_true", help="only the summarizer and 1- and 2-worker rates"
    )
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    if args.fairness:
        print("\n".join(describe_fairness(await fairness(args.backlog, args.probes))))
        return
    figures = await measure(
        notes=args.notes,
        samples=args.latency_samples,
        backlog=args.backlog,
        probes=args.probes,
        throughput_only=args.throughput,
    )
    print("\n".join(describe(figures)))


if __name__ == "__main__":
    asyncio.run(main())
