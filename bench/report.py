"""REPORT.md, results.json and bench.png from one run of bench/run.py."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from load import CONNECTIONS, LoadResult

from jobs import JobFigures, pct
from notes_api.core.config import Settings

CONCURRENCY = Settings.model_fields["worker_concurrency"].default

GET, LIST, POST, LOGIN = "GET /notes/{id}", "GET /notes?limit=20", "POST /notes", "POST /auth/login"
COUNTED = "POST /notes, limits on"
FLOOR = "floor: "  # bench/floor_app.py's figure for the endpoint named after it
# Per database: req/s of each endpoint over the baseline's, at least.
RATIO_TARGETS = {
    "Postgres": {GET: 0.20, LIST: 0.15, POST: 0.12, COUNTED: 0.10},
    "SQLite": {GET: 0.15, LIST: 0.10, POST: 0.08},
}


@dataclass
class Run:
    machine: dict[str, str]
    settings: dict[str, object]
    baseline: LoadResult
    databases: dict[str, list[LoadResult]] = field(default_factory=dict)
    jobs: JobFigures | None = None
    streams: dict[str, float] | None = None  # bench/streams.py's figures (Postgres)

    def ratio(self, result: LoadResult) -> float:
        return result.rps / self.baseline.rps


def _by_name(results: list[LoadResult]) -> dict[str, LoadResult]:
    return {r.name: r for r in results}


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _load_table(run: Run, results: list[LoadResult], *, baseline: bool) -> list[str]:
    lines = [
        "| endpoint | req/s | x baseline | p50 ms | p90 ms | p99 ms | p99/p50 | errors "
        "| RSS after, MB | server CPU | body, B |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    rows = [run.baseline, *results] if baseline else results
    for r in rows:
        name = "baseline (no DB, no auth)" if r is run.baseline else f"`{r.name}`"
        errors = str(r.errors)
        if r.errors:
            errors = f"**{r.errors}** ({r.non_2xx} non-2xx, {r.timeouts} timeouts, "
            errors += f"{r.socket_errors - r.timeouts} other socket)"
        lines.append(
            f"| {name} | {r.rps:,.1f} | {run.ratio(r):.3f} | {_ms(r.p50_ms)} | {_ms(r.p90_ms)} "
            f"| {_ms(r.p99_ms)} | {r.tail:.1f} | {errors} | {r.rss_mb:.0f} | {r.cpu_pct:.0f}% "
            f"| {r.response_bytes:,} |"
        )
    return lines


def _jobs_section(figures: JobFigures) -> list[str]:
    lines = ["## Jobs (`bench/jobs.py`)", ""]
    if figures.one_worker is not None and figures.two_workers is not None:
        lines += [
            f"Throughput, Postgres, extractive summarizer, {figures.notes:,} queued notes, "
            f"default settings (`WORKER_CONCURRENCY={CONCURRENCY}`), measured from the first to "
            "the last `summarized_at`:",
            "",
            "| workers | summaries/s | x one worker |",
            "|--:|--:|--:|",
            f"| 1 | {figures.one_worker:,.0f} | 1.00 |",
            f"| 2 | {figures.two_workers:,.0f} | {figures.two_workers / figures.one_worker:.2f} |",
            "",
        ]
        if figures.summarizer_alone:
            share = figures.one_worker / figures.summarizer_alone
            lines += [
                f"The extractive summarizer alone, in-process on the same texts in the same run "
                f"(no database, queue or worker): {figures.summarizer_alone:,.0f} summaries/s; "
                f"one worker does {share:.3f} of that.",
                "",
            ]
    latencies = [
        ("Postgres, standalone worker", figures.pg_latency_ms),
        ("SQLite, worker embedded in the API", figures.sqlite_latency_ms),
    ]
    if any(values for _, values in latencies):
        lines += [
            "`POST /notes` → `done` (`summarized_at - created_at`), one note at a time to an "
            "idle worker:",
            "",
            "| database, worker | p50 ms | p99 ms | samples |",
            "|---|--:|--:|--:|",
        ]
        lines += [
            f"| {name} | {pct(v, 50):.1f} | {pct(v, 99):.1f} | {len(v)} |"
            for name, v in latencies
            if v
        ]
        lines.append("")
    if (fair := figures.fairness) is not None:
        s = fair.probe_seconds
        lines += [
            f"Fairness, Postgres, one worker, default settings: organization A queues "
            f"{fair.backlog:,} notes, then organization B creates {len(s)}, one at a time, each "
            f"waited for (`POST` → `done`) while A's backlog drains:",
            "",
            "| B's notes, max s | median s | whole queue, summaries/s |",
            "|--:|--:|--:|",
            f"| {max(s):.2f} | {statistics.median(s):.2f} | {fair.summaries_per_second:,.0f} |",
            "",
        ]
    return lines


def _streams_section(f: dict[str, float]) -> list[str]:
    n = int(f["streams"])
    return [
        "## Event streams (`bench/streams.py`)",
        "",
        f"Postgres, one `notes-api serve`: {n} `GET /notes/events` streams opened and left "
        "idle (a heartbeat may pass), then one note created. Connections are the server's to "
        "its database (`pg_stat_activity`): the pool's idle ones and the feed's listener; busy "
        "means in a query or a transaction.",
        "",
        "| streams | RSS without, MB | RSS with, MB | KB per stream | DB connections without "
        "| with | busy while idle | ms until every stream has the event |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
        f"| {n} | {f['rss_mb_without_streams']:.0f} | {f['rss_mb_with_streams']:.0f} "
        f"| {f['kb_per_stream']:.0f} | {f['db_connections_without_streams']:.0f} "
        f"| {f['db_connections_with_streams']:.0f} "
        f"| {f['db_connections_busy_with_streams_idle']:.0f} "
        f"| {f['ms_until_all_streams_have_an_event']:.0f} |",
        "",
    ]


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def targets(run: Run) -> list[tuple[str, dict[str, str], bool]]:
    """(target, figure per database, met) for every target that this run measured."""
    rows: list[tuple[str, dict[str, str], bool]] = []

    def per_db(label: str, figure: Callable[[dict[str, LoadResult]], tuple[str, bool]]) -> None:
        cells, oks = {}, []
        for db, results in run.databases.items():
            # The service's own figures: the floor's rows are a reference, not a target.
            cells[db], ok = figure(_by_name([r for r in results if not r.name.startswith(FLOOR)]))
            oks.append(ok)
        rows.append((label, cells, all(oks)))

    if not run.databases:
        return rows
    for endpoint in (GET, LIST, POST, COUNTED):
        floors = {db: RATIO_TARGETS[db].get(endpoint) for db in run.databases}
        cells, oks = {}, []
        for db, results in run.databases.items():
            found, floor = _by_name(results).get(endpoint), floors[db]
            if found is not None and floor is not None:
                cells[db] = f"{run.ratio(found):.3f}"
                oks.append(run.ratio(found) >= floor)
        if cells:
            wanted = ", ".join(f"{f:.2f} ({db})" for db, f in floors.items() if f is not None)
            rows.append((f"`{endpoint}` ≥ {wanted} x baseline req/s", cells, all(oks)))

    def errors(r: dict[str, LoadResult]) -> tuple[str, bool]:
        bad = [f"{x.name}: {x.errors}" for x in r.values() if x.errors]
        return ("; ".join(bad) or "0"), not bad

    def tail(r: dict[str, LoadResult]) -> tuple[str, bool]:
        worst = max(r.values(), key=lambda x: x.tail)
        bad = [f"{x.name} {x.tail:.1f}" for x in r.values() if x.tail > 4]
        return ("; ".join(bad) or f"worst {worst.tail:.1f}"), not bad

    per_db(f"zero errors at {CONNECTIONS} connections", errors)
    per_db("p99 ≤ 4 x p50 (every endpoint)", tail)
    per_db("login ≥ 30/s", lambda r: (f"{r[LOGIN].rps:.1f}/s", r[LOGIN].rps >= 30))
    per_db(
        "API RSS < 150 MB after load",
        lambda r: (
            f"{max(x.rss_mb for x in r.values()):.0f} MB",
            all(x.rss_mb < 150 for x in r.values()),
        ),
    )
    jobs = run.jobs
    if jobs is not None and jobs.one_worker is not None and jobs.two_workers is not None:
        one, two = jobs.one_worker, jobs.two_workers
        rows.append(("1 worker ≥ 200 summaries/s", {"Postgres": f"{one:.0f}/s"}, one >= 200))
        if jobs.summarizer_alone:
            share = one / jobs.summarizer_alone
            rows.append(
                (
                    "1 worker ≥ 0.3 x the summarizer alone (same run)",
                    {"Postgres": f"{share:.3f} ({jobs.summarizer_alone:.0f}/s alone)"},
                    share >= 0.3,
                )
            )
        rows.append(
            (
                "2 workers ≥ 1.7 x one",
                {"Postgres": f"{two / one:.2f}x ({two:.0f}/s)"},
                two >= 1.7 * one,
            )
        )
    if jobs is not None and jobs.fairness is not None:
        worst = max(jobs.fairness.probe_seconds)
        rows.append(
            (
                f"a note done < 2 s behind another organization's {jobs.fairness.backlog:,}",
                {"Postgres": f"{worst:.2f} s"},
                worst < 2,
            )
        )
    if (st := run.streams) is not None:
        n, pool = int(st["streams"]), int(st["db_pool_size"])
        busy, held = st["db_connections_busy_with_streams_idle"], st["db_connections_with_streams"]
        rows.append(
            (
                f"{n} idle streams hold no database connection (none busy; at most the two "
                f"pools of {pool}, readers' and writers', and the listener open)",
                {"Postgres": f"{busy:.0f} busy, {held:.0f} open"},
                busy == 0 and held <= 2 * pool + 1,
            )
        )
    return rows


def write_report(run: Run, out: Path, png: bool) -> Path:
    m, s = run.machine, run.settings
    lines = [
        "# Benchmark report",
        "",
        f"Written by `bench/run.py` on {m['date']}. Machine: {m['nproc']} CPUs ({m['cpu']}), "
        f"Linux {m['kernel']}, Python {m['python']}, {m['wrk']}"
        + (f", PostgreSQL {m['postgres']}" if m.get("postgres") else "")
        + f". Code: {m['commit']}. Load average before the run: {m['load_before']} (other "
        "processes; well above 0 means they shared the CPUs with the benchmark).",
        "",
        f"Each endpoint: one `notes-api serve` process (uvicorn, uvloop, httptools, "
        f"`WORKER_EMBEDDED=false`, `LOG_LEVEL=WARNING`, `APP_ENV=development`) on a fresh "
        f"database seeded with one user and {s['notes']} notes of about 1 KB (summarized), "
        f"loaded by `wrk -t1 -c{CONNECTIONS} -d{s['duration']}s --timeout {s['timeout']}s "
        f"--latency` after a {s['warmup']} s warm-up. wrk runs on the same machine and takes "
        f"about one CPU. Login runs with `--timeout {s.get('login_timeout', s['timeout'])}s`: 64 "
        "connections queued on hashes served at about 35/s wait 1.8 s each (Little's law), so "
        "a 2 s timeout would count the queue as failures. The server runs with the write "
        "limits off, as a load from one account needs; `POST /notes, limits on` is the same "
        "load on a second server with every limit on (each write's counters written in its "
        "transaction), set far above what one user sends. Endpoints run in the order shown; "
        "RSS is the server's VmRSS after each run, once it has answered a last request; "
        "server CPU is its CPU time during the run over the run's length (100% is one core). "
        "Errors are HTTP ≥ 400 plus socket errors and timeouts; wrk leaves answers "
        "slower than its timeout out of the percentiles and counts them as timeouts. wrk, the "
        "server and Postgres (and, for the job figures, the workers) share the machine's "
        f"{m['nproc']} CPUs. The baseline is "
        "`bench/baseline_app.py`: FastAPI with the same server settings, one route answering "
        "a note-shaped pydantic response model with no database, auth or middleware "
        "(`GET /notes/{id}` with the same wrk script). On Postgres, the `floor:` rows are "
        "`bench/floor_app.py` on the same seeded database under the same load: each route "
        "as one psycopg statement behind FastAPI, with no caller, tenancy rule, ORM, "
        "middleware, limits, job or event; what the service does above that is what its "
        "ratios pay for.",
        "",
    ]
    for db, results in run.databases.items():
        lines += [f"## {db}", "", *_load_table(run, results, baseline=True), ""]
    if not run.databases:
        lines += ["## Baseline", "", *_load_table(run, [], baseline=True), ""]
    if run.jobs is not None:
        lines += _jobs_section(run.jobs)
    if run.streams is not None:
        lines += _streams_section(run.streams)
    rows = targets(run)
    if rows:
        dbs = list(run.databases)
        lines += [
            "## Targets",
            "",
            "| target | " + " | ".join(dbs) + " | status |",
            "|---|" + "--:|" * len(dbs) + "---|",
        ]
        for label, cells, ok in rows:
            lines.append(
                f"| {label} | "
                + " | ".join(cells.get(db, "-") for db in dbs)
                + f" | {_verdict(ok)} |"
            )
        lines.append("")
    if png:
        lines += ["![latency and throughput](bench.png)", ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def write_json(run: Run, out: Path) -> None:
    data = {
        "machine": run.machine,
        "settings": run.settings,
        "baseline": run.baseline.as_dict(),
        "databases": {db: [r.as_dict() for r in rs] for db, rs in run.databases.items()},
        "jobs": asdict(run.jobs) if run.jobs else None,
        "streams": run.streams,
    }
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
