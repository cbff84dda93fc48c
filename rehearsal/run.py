"""Production rehearsal: the production image, in a Koyeb-sized container (512 MB, 0.1 vCPU,
embedded worker), against a Neon-shaped database (TLS + SCRAM Postgres, PgBouncer in
transaction mode in front of it), all on this machine.

    .venv/bin/python rehearsal/run.py            # or: make rehearsal
    .venv/bin/python rehearsal/run.py --users 20 --notes 100   # a quicker pass

It needs root (the throwaway cluster runs as the postgres OS user; podman is rootful),
Debian's postgresql and pgbouncer (installed with apt-get when missing) and
../shared/tools/container-smoke (which installs podman). It writes docs/rehearsal.md, keeps
the logs in rehearsal/logs/, removes everything else it started (containers, PgBouncer, the
cluster and its files) even when it fails, and exits non-zero when any check failed or
something it needs could not be set up.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import phase_container  # noqa: E402
import phase_database  # noqa: E402
import phase_evidence  # noqa: E402
import phase_sleep  # noqa: E402
from context import Context  # noqa: E402
from database import NeonLikeDatabase  # noqa: E402
from report import Report  # noqa: E402
from stage import IMAGE, Abort, build_image, new_database, preflight, which  # noqa: E402

REPORT_PATH = ROOT / "docs" / "rehearsal.md"
LOGS = HERE / "logs"


def describe_environment(report: Report, db: NeonLikeDatabase) -> None:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    report.env("host", f"{platform.platform()}, {os.cpu_count()} CPUs, {mem_gib:.0f} GiB")
    cgroup = "v2 (unified)" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    report.env("cgroups", cgroup)
    podman_info = out(
        "podman",
        "info",
        "--format",
        "{{.Version.Version}} / {{.Host.CgroupManager}} / {{.Host.CgroupsVersion}}",
    )
    report.env("podman (version / cgroup manager / cgroups)", podman_info)
    report.env("OCI runtime", out("runc", "--version").splitlines()[0] if which("runc") else "crun")
    report.env(
        "PostgreSQL",
        f"{db.facts.get('postgres_version')} (throwaway cluster, port "
        f"{db.pg_port}, /usr/lib/postgresql/.../initdb)",
    )
    report.env("PgBouncer", f"{db.facts.get('pgbouncer_version')} (port {db.bouncer_port})")
    commit = out("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = out(
        "git",
        "-C",
        str(ROOT),
        "status",
        "--porcelain",
        "--",
        "src",
        "migrations",
        "Dockerfile",
        "pyproject.toml",
        "uv.lock",
    )
    report.env(
        "source",
        f"commit {commit}"
        + (", with uncommitted changes in src/ (others were editing)" if dirty else ", clean"),
    )
    report.env("TLS certificate", db.facts.get("certificate", "?"))


def _interrupted(signum: int, _frame: object) -> None:
    print(
        f"\n{signal.Signals(signum).name}: stopping, cleaning up ...", file=sys.stderr, flush=True
    )
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100, help="sign-ups and logins (100)")
    parser.add_argument("--notes", type=int, default=500, help="notes in the load phase (500)")
    parser.add_argument("--burst", type=int, default=20, help="concurrent logins (20)")
    parser.add_argument("--sleep-notes", type=int, default=40, help="notes queued at pause (40)")
    parser.add_argument("--report", type=Path, default=REPORT_PATH)
    args = parser.parse_args(argv)

    # SIGTERM/SIGHUP unwind like an exception, so that the cleanup below still runs.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)

    LOGS.mkdir(exist_ok=True)
    for old in LOGS.iterdir():
        if old.is_file():
            old.unlink()
    report = Report()
    run_id = f"{os.getpid()}"
    db: NeonLikeDatabase | None = None
    ctx = Context(report=report, image=IMAGE, run_id=run_id, logs=LOGS, root=ROOT)
    try:
        preflight(LOGS, report)
        build_image(LOGS, report)
        db = new_database()
        report.secrets += [db.password, db.superuser_password, db.bouncer_admin_password]
        print(f"starting the Neon-shaped database in {db.root} ...", flush=True)
        db.start()
        ctx.db = db
        describe_environment(report, db)
        phase_database.check_database(ctx)
        phase_container.limits_probe(ctx)
        phase_container.production_run(ctx, users=args.users, notes=args.notes, burst=args.burst)
        phase_sleep.sleep_and_wake(ctx, notes=args.sleep_notes)
        phase_evidence.shared_evidence(ctx)
    except Abort as exc:
        report.aborted = str(exc)
        print(f"ABORTED: {exc}", file=sys.stderr, flush=True)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        report.aborted = f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc()
        (LOGS / "traceback.txt").write_text(trace)
        print(trace, file=sys.stderr, flush=True)
    finally:
        problems = ctx.cleanup()
        if db is not None:
            db.save_logs(LOGS)
            problems += db.stop()
        if problems:
            report.check(
                "cleanup", "everything the rehearsal started is gone", False, "; ".join(problems)
            )
        elif report.checks:
            report.check(
                "cleanup",
                "containers removed, PgBouncer and the cluster stopped, temporary files removed",
                True,
            )
        report.write(args.report)
        verdict = "PASS" if report.passed else "FAIL"
        if report.aborted:
            verdict += f" (stopped early: {report.aborted[:200]})"
        print(
            f"\n{verdict}: {len(report.checks) - len(report.failed)} of {len(report.checks)} "
            f"checks passed; report: {args.report}; logs: {LOGS}",
            flush=True,
        )
        for check in report.failed:
            print(f"  failed: {check.phase}: {check.name} — {check.detail}", flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
