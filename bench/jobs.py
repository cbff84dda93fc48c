"""Job figures: summaries per second with one and two worker processes on Postgres, and
the time from `POST /notes` to `done` with an idle worker on Postgres and SQLite.

    python bench/jobs.py [--notes 2000] [--latency-samples 200]

Throughput: notes are queued with no worker running, then K `notes-api worker` processes
start; the rate is measured between the first and the last `summarized_at`, so process
start-up is left out. Latency: a real server (`notes-api serve`) with an idle worker takes
one note at a time; each note's `summarized_at - created_at` is the time to done."""

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
from pathlib import Path
from typing import Any

import httpx
import psycopg

PG = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/notes_bench")
WORDS = ("customer renewal budget meeting deadline export pipeline invoice contract "
         "onboarding support ticket escalation roadmap feature priority").split()


def note_text(i: int) -> str:
    rng = random.Random(i)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize()
                 + "." for _ in range(10)]
    return f"Note {i}. " + " ".join(sentences)  # about 1 KB


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


def spawn(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{command}-", suffix=".log", delete=False)  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "notes_api.cli", command],
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def base_env(url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "APP_ENV": "development", "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json", "SUMMARIZER": "extractive", **extra}


async def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = spawn("serve", {**env, "PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(base + "/healthz")).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def signup(client: httpx.AsyncClient, base: str) -> dict[str, str]:
    email = f"bench-{random.getrandbits(40):x}@example.com"
    r = await client.post(base + "/auth/signup", json={"email": email, "password": "benchmark pw"})
    r.raise_for_status()
    return {"Authorization": "Bearer " + r.json()["access_token"]}


async def throughput(workers: int, notes: int) -> float:
    reset_pg(PG)
    server, base = await start_server(base_env(PG, WORKER_EMBEDDED="false"))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = await signup(client, base)
            sem = asyncio.Semaphore(32)

            async def post(i: int) -> None:
                async with sem:
                    r = await client.post(base + "/notes", headers=headers,
                                          json={"raw_text": note_text(i)})
                    r.raise_for_status()

            await asyncio.gather(*(post(i) for i in range(notes)))
        procs = [spawn("worker", base_env(PG, WORKER_CONCURRENCY="16")) for _ in range(workers)]
        try:
            with psycopg.connect(PG) as conn:
                while True:
                    done = conn.execute("SELECT count(*) FROM notes WHERE status = 'done'"
                                        ).fetchone()[0]  # type: ignore[index]
                    conn.commit()
                    if done == notes:
                        break
                    time.sleep(0.1)
                first, last = conn.execute(
                    "SELECT min(summarized_at), max(summarized_at) FROM notes").fetchone()  # type: ignore[misc]
        finally:
            for p in procs:
                stop(p)
    finally:
        stop(server)
    return float(notes / (last - first).total_seconds())


async def latency(url: str, env: dict[str, str], samples: int) -> list[float]:
    server, base = await start_server(env)
    worker = None if env.get("WORKER_EMBEDDED") == "true" else spawn("worker", env)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = await signup(client, base)
            await asyncio.sleep(2)  # let the worker go idle
            result: list[float] = []
            for i in range(samples):
                r = await client.post(base + "/notes", headers=headers,
                                      json={"raw_text": note_text(i)})
                note = (await client.get(f"{base}/notes/{r.json()['id']}?wait=10",
                                         headers=headers)).json()
                assert note["status"] == "done", note
                from datetime import datetime

                created = datetime.fromisoformat(note["created_at"])
                done = datetime.fromisoformat(note["summarized_at"])
                result.append((done - created).total_seconds() * 1000)
                await asyncio.sleep(0.05)  # the worker is idle again before the next note
            return result
    finally:
        if worker is not None:
            stop(worker)
        stop(server)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    one = await throughput(1, args.notes)
    two = await throughput(2, args.notes)
    print(f"throughput, Postgres, extractive: 1 worker {one:.0f}/s, 2 workers {two:.0f}/s "
          f"({two / one:.2f}x)")
    reset_pg(PG)
    pg = await latency(PG, base_env(PG, WORKER_EMBEDDED="false"), args.latency_samples)
    tmp = Path(tempfile.mkdtemp()) / "bench.db"
    lite = await latency(str(tmp), base_env(f"sqlite:///{tmp}", WORKER_EMBEDDED="true"),
                         args.latency_samples)
    for name, values in (("Postgres, standalone worker", pg), ("SQLite, embedded worker", lite)):
        print(f"POST -> done, {name}: p50 {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms"
              f" (n={len(values)})")


if __name__ == "__main__":
    asyncio.run(main())
