"""What idle event streams cost: `notes-api serve` on Postgres with N open streams
(`GET /notes/events`), its memory before and after they open, the database connections the
server holds (`pg_stat_activity`) with none and with N open, and how long one event takes to
reach all N.

    python bench/streams.py [--streams 500]

It drops and creates the database `notes_bench_streams` on `BENCH_DATABASE_URL`'s server."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
from load import rss_mb

import jobs

DB = "notes_bench_streams"
POOL = 10  # DB_POOL_SIZE: connections never outnumber two pools of it and the listener


def connections(url: str) -> tuple[int, int]:
    """The server's connections to the database: all of them (the listener's, the pool's
    idle ones), and those busy (in a query or a transaction) at this moment."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (DB,),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def first_line(lines: AsyncIterator[str]) -> None:
    async for line in lines:
        if line.startswith(":"):  # the stream's opening comment
            return


async def wait_for_event(lines: AsyncIterator[str]) -> float:
    async for line in lines:
        if line.startswith("event: note.queued"):
            return time.monotonic()
    raise RuntimeError("stream ended")


async def measure(streams: int, log_dir: Path | None = None) -> dict[str, float]:
    url = jobs.pg_url(DB)
    jobs.reset_pg(url)
    env = jobs.base_env(
        url,
        WORKER_EMBEDDED="false",
        EVENT_STREAMS_PER_USER=str(streams),
        # One user of one organization opens them all: that organization's share must
        # allow it, and a share must stay below the process's limit.
        EVENT_STREAMS_PER_ORGANIZATION=str(streams),
        EVENT_STREAMS_PER_PROCESS=str(streams + 1),
        DB_POOL_SIZE=str(POOL),
    )
    server, base = await jobs.start_server(env, log_dir)
    try:
        limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            headers = await jobs.signup(client, base)
            await client.post("/notes", headers=headers, json={"raw_text": "Warm-up."})
            await client.get("/notes", headers=headers)
            await asyncio.sleep(1)
            rss_before, conns_before = rss_mb(server.pid), connections(url)
            opened = [
                await client.send(
                    client.build_request("GET", "/notes/events", headers=headers), stream=True
                )
                for _ in range(streams)
            ]
            try:
                assert all(r.status_code == 200 for r in opened), [r.status_code for r in opened][
                    :5
                ]
                lines = [r.aiter_lines() for r in opened]
                await asyncio.gather(*(first_line(each) for each in lines))
                await asyncio.sleep(2)  # idle: a heartbeat or two may pass
                rss_after, conns_after = rss_mb(server.pid), connections(url)
                waits = [asyncio.create_task(wait_for_event(each)) for each in lines]
                start = time.monotonic()
                await client.post("/notes", headers=headers, json={"raw_text": "To all."})
                arrivals = await asyncio.gather(*waits)
                fanout_ms = (max(arrivals) - start) * 1000
            finally:
                for r in opened:
                    await r.aclose()
    finally:
        jobs.stop(server)
    result: dict[str, float] = {
        "streams": streams,
        "db_pool_size": POOL,
        "rss_mb_without_streams": round(rss_before, 1),
        "rss_mb_with_streams": round(rss_after, 1),
        "kb_per_stream": round((rss_after - rss_before) * 1024 / streams, 1),
        "db_connections_without_streams": conns_before[0],
        "db_connections_with_streams": conns_after[0],
        "db_connections_busy_with_streams_idle": conns_after[1],
        "ms_until_all_streams_have_an_event": round(fanout_ms, 1),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.streams)), indent=2))


if __name__ == "__main__":
    main()
