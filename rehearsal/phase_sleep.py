"""Phase 3: sleep and wake. Jobs in flight when the instance freezes, leases that run out,
and nothing lost or duplicated when it wakes (or when another worker takes over)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from typing import Any

import httpx
import workload as wl
from container import Container
from context import Context, fmt_counts, oom_check, wait_ready


def sleep_and_wake(ctx: Context, *, notes: int, lease: int = 5) -> None:
    """Round 1: pause, wait past the lease, unpause (the issue's scenario). Round 2: the same,
    but another worker runs while the first is frozen and takes its expired leases over; then
    the first wakes and must write nothing."""
    r = ctx.report
    # One user posts up to 2 x `notes` notes within a minute here: more than the default
    # per-user write limit, which is not what this phase is about.
    writes = {"RATE_LIMIT_USER_WRITES_PER_MINUTE": str(max(60, 4 * notes))}
    box = ctx.start("sleep", JOB_LEASE_SECONDS=str(lease), **writes)
    cold = box.wait_healthy()
    r.figure(
        "cold start, migrated database",
        f"{cold:.1f} s",
        "the same, on a database already at head (a wake from sleep on Koyeb is a "
        "cold start like this one)",
    )
    wait_ready(box)
    one = _sleep_round(ctx, box, notes=notes, lease=lease, seed=2, takeover=False)
    oom_check(ctx, box, "sleep and wake, round 1", "after the wake")
    ctx.retire(box)
    # Round 2 wants a moment with jobs processing and no transaction open; with one job at a
    # time (and long notes) such moments are common, with four they are rare at 0.1 vCPU.
    box = ctx.start("sleep2", JOB_LEASE_SECONDS=str(lease), WORKER_CONCURRENCY="1", **writes)
    box.wait_healthy()
    wait_ready(box)
    two = _sleep_round(ctx, box, notes=notes, lease=lease, seed=3, takeover=True)
    oom_check(ctx, box, "sleep and wake, round 2 (takeover)", "after the wake")
    jobs = ctx.mon.job_statuses()
    everywhere = ctx.mon.done_jobs_per_note()
    r.check(
        "sleep and wake",
        "across the whole database: every note has exactly one done job, no job left queued "
        "or processing",
        set(everywhere) == {1} and not jobs.get("queued") and not jobs.get("processing"),
        f"notes by number of done jobs: {everywhere}; jobs by status: {jobs}",
    )
    r.section(
        "Sleep and wake",
        f"""Containers of the same image and limits, with `JOB_LEASE_SECONDS={lease}`.

**Round 1 (pause, unpause).** {notes} notes posted, then `podman pause` froze the container
(the cgroup freezer, as a sleeping instance) with the notes {fmt_counts(one["at_pause"])}
and {one["open_tx"]} of its transactions open. After {one["asleep"]:.0f} s, {one["expired"]}
processing job(s) held a lease that had run out. `podman unpause`: every note was `done`
{one["drain"]} later; done jobs by attempt count {one["attempts"]}; each note has exactly one
`done` job. {one["story"]}

**Round 2 (another worker takes over).** A fresh container as in round 1 but with
`WORKER_CONCURRENCY=1`, {2 * notes} longer notes, frozen at a moment when none of its
transactions was open ({two["tries"] - 1} earlier freeze(s) landed inside one and were
thawed at once), and while it was frozen a standalone worker (`notes-api
worker`, same image, same limits) started, found the {two["expired"]} expired lease(s) and
ran those jobs again (done jobs by attempt count {two["attempts"]}); every note was done
{two["drain"]} after the pause. Then the first container was unpaused: its stale attempts
found their lease tokens gone and wrote nothing (its worker log events after waking:
{two["events"]}; the notes' summaries and timestamps were unchanged).

**What a freeze inside a transaction does.** At 0.1 vCPU a job spends much of its time inside
its short transactions (claim; complete), so a random freeze often lands in one. That
transaction stays open, through PgBouncer, with its row locks, for as long as the instance is
frozen and its TCP connection lives; another worker skips those jobs (`SKIP LOCKED`) until
the instance resumes or its connection dies. Nothing is lost or duplicated either way (round
1 and the checks), but the jobs wait. Neon's documentation names no
`idle_in_transaction_session_timeout` (its autosuspend even counts idle-in-transaction
sessions as activity), so a deployment that wants a bound can set one on the role:
`ALTER ROLE neondb_owner SET idle_in_transaction_session_timeout = '60s'` (it applies to
pooled sessions too, since PgBouncer's server connections log in as that role).

On Koyeb a sleeping free instance is stopped rather than frozen, and the wake is a cold start
(the second cold-start figure above); the jobs it held are taken over by the new process
once their leases run out, as in round 2.
""",
    )
    ctx.retire(box)


class RoundSkipped(Exception):
    """The round could not set up its situation; recorded as a failed check."""


def _pause_when_busy(
    ctx: Context, box: Container, ids: list[str], *, between_transactions: bool, tries: int = 60
) -> tuple[dict[str, int], int, int]:
    """Freeze the container while jobs of ours are processing. With between_transactions,
    only at a moment when none of its transactions is open (else thaw and try again): a
    transaction frozen open keeps its row locks, and no other worker can take those jobs
    until it resumes. Returns (note statuses, open transactions at the pause, attempts)."""
    counts: dict[str, int] = {}
    open_tx = 0
    for attempt in range(1, tries + 1):
        deadline = time.monotonic() + 30
        counts = ctx.mon.note_statuses(ids)
        while counts.get("processing", 0) == 0 and time.monotonic() < deadline:
            if counts.get("done", 0) == len(ids):
                raise RoundSkipped(f"every note was done before a pause could be made: {counts}")
            time.sleep(0.02)
            counts = ctx.mon.note_statuses(ids)
        box.pause()
        time.sleep(0.1)  # statements already on the wire reach Postgres
        counts, open_tx = ctx.mon.note_statuses(ids), ctx.mon.open_transactions()
        if counts.get("processing", 0) > 0 and (open_tx == 0 or not between_transactions):
            return counts, open_tx, attempt
        box.unpause()
        time.sleep(random.uniform(0.05, 0.4))
    box.pause()
    return ctx.mon.note_statuses(ids), ctx.mon.open_transactions(), tries


def _worker_events(log: str) -> dict[str, int]:
    names = ("worker.lease_expired", "worker.lease_lost", "worker.result_discarded",
             "worker.job_retried", "worker.renew_failed")  # fmt: skip
    return {name.removeprefix("worker."): log.count(f'"{name}"') for name in names}


def _sleep_round(
    ctx: Context, box: Container, *, notes: int, lease: int, seed: int, takeover: bool
) -> dict[str, Any]:
    r = ctx.report
    phase = "sleep and wake, round 2 (takeover)" if takeover else "sleep and wake, round 1"
    notes = notes * 2 if takeover else notes  # round 2 needs more time to find its moment
    before = _worker_events(box.logs())

    async def write() -> tuple[wl.Outcome, list[str]]:
        async with wl.client(box.base_url) as http:
            login = await http.post(
                "/auth/login", json={"email": ctx.emails[0], "password": ctx.password}
            )
            token = login.json()["access_token"]
            # Round 2: longer notes, so that more of a job's time is spent summarizing,
            # outside any transaction, and a pause between transactions comes sooner.
            return await wl.post_notes(
                http, [token], notes, concurrency=8, seed=seed, paragraphs=6 if takeover else 1
            )

    posted, ids = asyncio.run(write())
    try:
        at_pause, open_tx, tries = _pause_when_busy(ctx, box, ids, between_transactions=takeover)
    except RoundSkipped as exc:
        r.check(phase, "paused with notes still queued and processing", False, str(exc))
        return {
            "at_pause": {},
            "asleep": 0,
            "expired": 0,
            "open_tx": 0,
            "tries": 0,
            "drain": "n/a",
            "attempts": {},
            "events": {},
            "story": str(exc),
        }
    paused_at = time.monotonic()
    held = ctx.mon.processing_jobs(ids)
    print(f"  {phase}: paused with notes {at_pause}", flush=True)
    r.check(
        phase,
        "paused with notes still queued and processing"
        + (", at a moment when none of its transactions was open" if takeover else ""),
        posted.statuses == {202: notes}
        and at_pause.get("processing", 0) > 0
        and at_pause.get("queued", 0) > 0
        and (open_tx == 0 or not takeover),
        f"{notes} notes posted; at the pause: {at_pause}; open transactions of the frozen "
        f"instance: {open_tx}"
        + (f"; {tries - 1} earlier freeze(s) landed inside a transaction" if takeover else ""),
    )
    result_tx = {"open_tx": open_tx, "tries": tries}
    if not takeover:
        state = box.state().get("Status")
        try:
            httpx.get(box.base_url + "/healthz", timeout=1.5)
            answered = True
        except httpx.HTTPError:
            answered = False
        r.check(
            phase,
            "while paused the instance is asleep: nothing answers",
            state == "paused" and not answered,
            f"podman State {state}; /healthz answered: {answered}",
        )
    time.sleep(max(0.0, lease + 7 - (time.monotonic() - paused_at)))
    expired = ctx.mon.expired_leases()
    asleep = time.monotonic() - paused_at
    r.check(
        phase,
        f"the leases of the processing jobs ran out while asleep ({asleep:.0f} s > "
        f"JOB_LEASE_SECONDS={lease})",
        expired >= len(held) > 0,
        f"{expired} job(s) in processing with lease_expires_at < now(); {len(held)} were "
        "processing at the pause",
    )
    result: dict[str, Any] = {
        "at_pause": at_pause,
        "asleep": asleep,
        "expired": expired,
        **result_tx,
    }
    snapshot: dict[str, tuple[Any, ...]] = {}
    if takeover:
        helper = ctx.start("worker2", command=("notes-api", "worker"),
                           JOB_LEASE_SECONDS=str(lease))  # fmt: skip
        helper.wait_log('"worker.started"')
        took = ctx.mon.wait_all_done(ids, timeout=90)
        taken = ctx.mon.jobs_state(held)
        rerun = [j for j, (status, attempts) in taken.items() if status == "done" and attempts > 1]
        helper_events = _worker_events(helper.logs())
        r.check(
            phase,
            "a second worker took the expired leases over and finished every note while the "
            "first instance was still frozen",
            took is not None and len(rerun) == len(held) > 0,
            f"{len(rerun)} of {len(held)} held job(s) done on a 2nd attempt; all notes done "
            + (f"{time.monotonic() - paused_at:.1f} s after the pause" if took else "(timeout)")
            + f"; second worker's log: {helper_events}",
        )
        snapshot = ctx.mon.note_snapshot(ids)
        subprocess.run(["podman", "stop", "-t", "15", helper.name], capture_output=True,
                       check=False)  # fmt: skip
        ctx.retire(helper)
        result["drain"] = (
            f"{time.monotonic() - paused_at:.0f} s" if took is not None else "(timed out)"
        )
    box.unpause()
    took = ctx.mon.wait_all_done(ids, timeout=180)
    if not takeover:
        result["drain"] = f"{took:.1f} s" if took is not None else "(timed out)"
    time.sleep(lease)  # let the resumed process's timers (heartbeats, reaper) all fire
    after = ctx.mon.note_statuses(ids)
    r.check(
        phase,
        "after the wake every note ends done",
        after == {"done": notes},
        f"{after}, " + (f"{took:.1f} s after unpause" if took is not None else "timed out"),
    )
    per_note = ctx.mon.done_jobs_per_note(ids)
    r.check(
        phase,
        "nothing lost or duplicated: each note has exactly one done job",
        per_note == {1: notes},
        f"notes by number of done jobs: {per_note}",
    )
    attempts = ctx.mon.job_attempts(ids)
    events = {k: v - before.get(k, 0) for k, v in _worker_events(box.logs()).items()}
    result.update(attempts=attempts, events=events)
    if takeover:
        unchanged = ctx.mon.note_snapshot(ids)
        same = [i for i, row in snapshot.items() if unchanged.get(i) == row]
        stale = events["lease_lost"] + events["result_discarded"]
        r.check(
            phase,
            "woken, the first instance's stale attempts wrote nothing",
            len(same) == len(snapshot) == notes and stale >= 1,
            f"{len(same)} of {notes} notes unchanged (status, summary, summarized_at, "
            f"attempts) since before the unpause; the first instance's log after waking: "
            f"{events}",
        )
    else:
        renewed = all(a == 1 for a in attempts)
        result["story"] = (
            "Nobody else had claimed the expired leases, so the resumed worker's heartbeat "
            "renewed them (its lease tokens were still the current ones) and its attempts "
            "finished normally: no job needed a second attempt."
            if renewed and not events["lease_expired"]
            else "The resumed worker's reaper found the expired leases and queued those jobs "
            f"again (log events {events}); the stale attempts were fenced off."
        )
        r.check(
            phase,
            "the expired leases were resolved one way, never both (renewed by the resumed "
            "worker, or reaped and run again)",
            per_note == {1: notes},
            f"done jobs by attempts {attempts}; log events since the pause {events}",
        )
    return result
