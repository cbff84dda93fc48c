"""What one request costs, counted in-process: Python calls, database round trips and CPU
time per `GET /notes/{id}`, `GET /notes?limit=20` and `POST /notes`. Unlike wrk's figures,
calls and round trips do not move with the machine's load.

    python bench/calls.py [--database URL] [--requests 300]

The app is called directly as an ASGI app (no server, no client library in the count). A
round trip is a statement, a BEGIN, a COMMIT or a ROLLBACK the driver sends."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event

from notes_api.core.config import Settings
from notes_api.core.migrations import upgrade
from notes_api.main import create_app

SAMPLES = 50  # requests whose calls and round trips are averaged


class Counter:
    def __init__(self) -> None:
        self.round_trips = 0

    def attach(self, sync_engine: Any, *, autocommit: bool = False) -> None:
        def count(*_args: Any, **_kw: Any) -> None:
            self.round_trips += 1

        event.listen(sync_engine, "before_cursor_execute", count)
        if autocommit:  # the readers' pool (core/db.py): the driver sends no BEGIN or COMMIT
            return

        def count_ending(_conn: Any) -> None:
            self.round_trips += 1

        def count_begin(conn: Any) -> None:
            # SQLite's BEGIN is a statement of its own (core/db.py), counted above.
            if conn.dialect.name != "sqlite":
                count_ending(conn)

        event.listen(sync_engine, "begin", count_begin)
        event.listen(sync_engine, "commit", count_ending)
        event.listen(sync_engine, "rollback", count_ending)


async def call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out


async def measure(
    database_url: str, requests: int, *, limits: bool = False
) -> dict[str, dict[str, float]]:
    # The write limits off, as `make bench` runs them, unless asked for (their defaults);
    # the per-user limit high enough for the requests made here.
    writes = (
        {"rate_limit_user_writes_per_minute": 100_000}
        if limits
        else {
            "rate_limit_user_writes_per_minute": 0,
            "rate_limit_org_writes_per_minute": 0,
            "summaries_per_org_per_day": 0,
        }
    )
    settings = Settings(
        database_url=database_url,
        worker_embedded=False,
        log_level="WARNING",
        signup_per_client_per_hour=0,
        **writes,
    )
    await asyncio.to_thread(upgrade, settings.async_database_url)
    app = create_app(settings)
    results: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        counter = Counter()
        counter.attach(app.state.db.engine.sync_engine)
        if app.state.db.reader_engine is not app.state.db.engine:
            counter.attach(app.state.db.reader_engine.sync_engine, autocommit=True)
        email = f"calls-{uuid.uuid4().hex[:10]}@example.com"
        signup = json.dumps({"email": email, "password": "correct horse battery"}).encode()
        json_headers = {"content-type": "application/json"}
        answer = await call(app, "POST", "/auth/signup", json_headers, signup)
        token = json.loads(answer["body"])["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        note = json.dumps({"title": "Call", "raw_text": "Dana called. " * 60}).encode()
        ids = []
        for _ in range(25):
            answer = await call(app, "POST", "/notes", auth | json_headers, note)
            ids.append(json.loads(answer["body"])["id"])
        cases: dict[str, Callable[[int], Any]] = {
            "GET /notes/{id}": lambda i: call(app, "GET", f"/notes/{ids[i % len(ids)]}", auth),
            "GET /notes?limit=20": lambda i: call(app, "GET", "/notes?limit=20", auth),
            "POST /notes": lambda i: call(app, "POST", "/notes", auth | json_headers, note),
        }
        for name, request in cases.items():
            for i in range(20):  # warm: statement caches, the caller's record
                await request(i)
            before = counter.round_trips
            calls = [0]
            sys.setprofile(_profiler_into(calls))
            try:
                for i in range(SAMPLES):
                    answer = await request(i)
                    assert answer["status"] < 300, answer
            finally:
                sys.setprofile(None)
            round_trips = (counter.round_trips - before) / SAMPLES
            started = time.process_time()
            for i in range(requests):
                await request(i)
            cpu_ms = (time.process_time() - started) * 1000 / requests
            results[name] = {
                "python_calls": calls[0] / SAMPLES,
                "round_trips": round_trips,
                "cpu_ms": round(cpu_ms, 3),
            }
    return results


def _profiler_into(box: list[int]) -> Callable[[Any, str, Any], None]:
    def profiler(_frame: Any, event_name: str, _arg: Any) -> None:
        if event_name in ("call", "c_call"):
            box[0] += 1

    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="a database URL (default: a fresh SQLite file)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--limits", action="store_true", help="the write limits on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'calls.db'}"
        results = asyncio.run(measure(url, args.requests, limits=args.limits))
    width = max(map(len, results))
    print(f"{'':{width}}  python calls  round trips  CPU ms")
    for name, r in results.items():
        calls, trips, cpu = r["python_calls"], r["round_trips"], r["cpu_ms"]
        print(f"{name:{width}}  {calls:12,.0f}  {trips:11.1f}  {cpu:6.3f}")


if __name__ == "__main__":
    main()
