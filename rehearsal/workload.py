"""HTTP traffic for the rehearsal (sign-ups, logins, notes, a login burst) and the database
reads that watch its effects through the direct URL, which cost the container nothing."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import psycopg

T = TypeVar("T")

PEOPLE = ["Dana", "Luis", "Priya", "Tomasz", "Aiko", "Sam", "Ngozi", "Elena", "Kwame", "Marta"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Soylent"]
SENTENCES = [
    "Call with {p} from {c} about the renewal of their {n}-seat licence.",
    "{p} wants the CRM export by Friday because the board meets on Monday.",
    "They asked whether archived contacts can be included in the export.",
    "We agreed to send a sample file on Wednesday and to confirm the format with their analyst.",
    "{c} is comparing us with two other vendors and cares mostly about the reporting module.",
    "Budget is approved for {n} seats, with an option for more in the third quarter.",
    "{p} mentioned that the current tool loses notes when two people edit the same account.",
    "Next step: a demo for their sales managers, probably on Tuesday afternoon.",
    "Their legal team needs the data processing agreement before anything is signed.",
    "{p} will introduce us to the head of customer success at {c}.",
    "Pricing concern: they expected a discount for annual billing of about ten percent.",
    "Follow up on Monday with the pricing sheet and the security questionnaire.",
    "The integration with their e-mail system is a must-have, single sign-on is a nice-to-have.",
    "Support tickets from {c} doubled last month, mostly about slow search.",
]


def note_text(rng: random.Random, paragraphs: int = 1) -> str:
    """A CRM call note of 5 to 10 sentences, or several such paragraphs."""
    picked = [s for _ in range(paragraphs) for s in rng.sample(SENTENCES, rng.randint(5, 10))]
    return " ".join(
        s.format(p=rng.choice(PEOPLE), c=rng.choice(COMPANIES), n=rng.choice([12, 25, 40, 80]))
        for s in picked
    )


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of milliseconds or seconds alike."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), round(q / 100 * len(data) + 0.5)))
    return data[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def record(self, status: int, ms: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(ms)


async def _timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await call()
    return response, (time.perf_counter() - started) * 1000


async def _bounded(items: list[T], limit: int, work: Callable[[T], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


def client(base_url: str) -> httpx.AsyncClient:
    # Generous timeouts: at 0.1 vCPU a queue of Argon2 hashes takes seconds.
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(120, connect=15),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )


async def signups(http: httpx.AsyncClient, emails: list[str], password: str) -> Outcome:
    """One at a time, as people arrive: the latency is the service time."""
    out = Outcome()
    for email in emails:
        body = {"email": email, "password": password}
        response, ms = await _timed(lambda b=body: http.post("/auth/signup", json=b))  # type: ignore[misc]
        out.record(response.status_code, ms)
        if response.status_code != 201:
            out.errors.append(f"signup {email}: {response.status_code} {response.text[:200]}")
    return out


async def logins(
    http: httpx.AsyncClient, emails: list[str], password: str, *, concurrency: int = 1
) -> tuple[Outcome, dict[str, str]]:
    out, tokens = Outcome(), {}

    async def one(email: str) -> None:
        body = {"email": email, "password": password}
        response, ms = await _timed(lambda: http.post("/auth/login", json=body))
        out.record(response.status_code, ms)
        if response.status_code == 200:
            tokens[email] = response.json()["access_token"]
        else:
            out.errors.append(f"login {email}: {response.status_code} {response.text[:200]}")

    await _bounded(emails, concurrency, one)
    return out, tokens


async def post_notes(
    http: httpx.AsyncClient,
    tokens: list[str],
    count: int,
    *,
    concurrency: int,
    seed: int,
    paragraphs: int = 1,
) -> tuple[Outcome, list[str]]:
    """`count` notes spread over the tokens' owners; returns their ids."""
    rng = random.Random(seed)
    jobs = [
        (tokens[i % len(tokens)], note_text(rng, paragraphs), f"rehearsal-{seed}-{i}")
        for i in range(count)
    ]
    out, ids = Outcome(), []

    async def one(job: tuple[str, str, str]) -> None:
        token, text, key = job
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        body = {"title": "Rehearsal call", "raw_text": text}
        response, ms = await _timed(lambda: http.post("/notes", json=body, headers=headers))
        out.record(response.status_code, ms)
        if response.status_code == 202:
            ids.append(response.json()["id"])
        else:
            out.errors.append(f"POST /notes: {response.status_code} {response.text[:200]}")

    await _bounded(jobs, concurrency, one)
    return out, ids


async def note_round_trip(http: httpx.AsyncClient, token: str, text: str) -> tuple[str, float, str]:
    """POST a note, then `GET ?wait=10` until it is done: (id, milliseconds, final status)."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    response = await http.post("/notes", json={"raw_text": text}, headers=headers)
    response.raise_for_status()
    note_id = response.json()["id"]
    status = response.json()["status"]
    for _ in range(3):
        if status in ("done", "failed"):
            break
        got = await http.get(f"/notes/{note_id}", params={"wait": 10}, headers=headers)
        got.raise_for_status()
        status = got.json()["status"]
    return note_id, (time.perf_counter() - started) * 1000, status


# ---------------------------------------------------------------- the database's view


class Monitor:
    """Reads through the direct URL (application_name rehearsal-monitor, so that the rehearsal
    can tell its own sessions apart from the service's)."""

    APP = "rehearsal-monitor"

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(
            url, autocommit=True, application_name=self.APP, prepare_threshold=None
        )

    def close(self) -> None:
        self.conn.close()

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())

    def one(self, sql: str, params: Any = None) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def note_statuses(self, ids: list[str] | None = None) -> dict[str, int]:
        if ids is None:
            rows = self.rows("SELECT status, count(*) FROM notes GROUP BY status")
        else:
            rows = self.rows(
                "SELECT status, count(*) FROM notes WHERE id = ANY(%s::uuid[]) GROUP BY status",
                (ids,),
            )
        return {str(status): int(count) for status, count in rows}

    def wait_all_done(self, ids: list[str], timeout: float, poll: float = 0.25) -> float | None:
        """Seconds until every note in `ids` is done (or failed); None on timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            counts = self.note_statuses(ids)
            if counts.get("done", 0) + counts.get("failed", 0) >= len(ids):
                return time.monotonic() - started
            time.sleep(poll)
        return None

    def latency_ms(self, note_id: str) -> float | None:
        """created_at → summarized_at as the service recorded them."""
        value = self.one(
            "SELECT extract(epoch FROM summarized_at - created_at) * 1000 FROM notes "
            "WHERE id = %s::uuid",
            (note_id,),
        )
        return None if value is None else float(value)

    def summarized_window(self, ids: list[str]) -> tuple[float, float] | None:
        row = self.conn.execute(
            "SELECT extract(epoch FROM min(created_at)), extract(epoch FROM max(summarized_at)) "
            "FROM notes WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            return None
        return float(row[0]), float(row[1])

    def done_jobs_per_note(self, ids: list[str] | None = None) -> dict[int, int]:
        """How many notes have 0, 1, 2... `done` summarize jobs."""
        where = "" if ids is None else "WHERE n.id = ANY(%s::uuid[])"
        rows = self.rows(
            "SELECT done, count(*) FROM ("
            "  SELECT n.id, count(j.id) FILTER (WHERE j.status = 'done') AS done"
            "  FROM notes n LEFT JOIN jobs j"
            "    ON j.kind = 'summarize' AND j.dedupe_key = n.id::text "
            f"  {where} GROUP BY n.id) per_note GROUP BY done ORDER BY done",
            None if ids is None else (ids,),
        )
        return {int(done): int(count) for done, count in rows}

    def job_attempts(self, ids: list[str]) -> dict[int, int]:
        rows = self.rows(
            "SELECT attempts, count(*) FROM jobs WHERE kind = 'summarize' "
            "AND dedupe_key = ANY(%s) AND status = 'done' GROUP BY attempts ORDER BY attempts",
            (ids,),
        )
        return {int(a): int(c) for a, c in rows}

    def job_statuses(self) -> dict[str, int]:
        rows = self.rows("SELECT status, count(*) FROM jobs GROUP BY status")
        return {str(s): int(c) for s, c in rows}

    def processing_jobs(self, ids: list[str]) -> list[str]:
        rows = self.rows(
            "SELECT id::text FROM jobs WHERE kind = 'summarize' AND status = 'processing' "
            "AND dedupe_key = ANY(%s)",
            (ids,),
        )
        return [str(r[0]) for r in rows]

    def jobs_state(self, job_ids: list[str]) -> dict[str, tuple[str, int]]:
        rows = self.rows(
            "SELECT id::text, status, attempts FROM jobs WHERE id = ANY(%s::uuid[])", (job_ids,)
        )
        return {str(i): (str(s), int(a)) for i, s, a in rows}

    def note_snapshot(self, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        rows = self.rows(
            "SELECT id::text, status, summary, summarized_at, attempts FROM notes "
            "WHERE id = ANY(%s::uuid[])",
            (ids,),
        )
        return {str(r[0]): tuple(r[1:]) for r in rows}

    def open_transactions(self) -> int:
        """Sessions of the service inside a transaction (the monitor's own excepted)."""
        return int(
            self.one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND application_name <> %s "
                "AND xact_start IS NOT NULL",
                (self.APP,),
            )
        )

    def expired_leases(self) -> int:
        return int(
            self.one(
                "SELECT count(*) FROM jobs WHERE status = 'processing' AND lease_expires_at < now()"
            )
        )

    def backends(self) -> list[dict[str, Any]]:
        """Every session on the service's database, with its TLS state."""
        rows = self.conn.execute(
            "SELECT a.pid, a.client_port, a.application_name, a.state, left(a.query, 60), "
            "s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid "
            "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
        ).fetchall()
        keys = ("pid", "client_port", "application_name", "state", "query", "ssl", "tls")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]
