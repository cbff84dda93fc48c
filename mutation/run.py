"""`make mutate`: mutation testing of the modules where a silent bug costs most, and a report.

Runs mutmut (configured in pyproject.toml, [tool.mutmut]) on the job engine, the tenancy
rule, the login throttle, the tokens and the idempotency claim, then writes
mutation/REPORT.md: the score per module and every surviving mutant with its diff, and, for
those judged equivalent or harmless, why. The reasons live in mutation/verdicts.toml: by
mutant name, or by a rule matching the line the mutant changes (a log call, say), so that
renumbered mutants keep their reasons.

    python mutation/run.py [--max-children N] [--report-only] [--survivors] [TARGET ...]

--survivors tries again only the mutants that survived the last run, or that no test reached
(after new tests were written).

mutmut forks each mutant's test run from a process that has already imported the code, so a
function that runs at import (building a statement once, say) is never seen mutated there.
Such functions are listed in AT_IMPORT; each of their survivors is tried again in a fresh
pytest process, with the mutant written into the source, against the tests that mutmut found
for the function that uses what they built.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = [sys.executable, "-m", "mutmut"]
VERDICTS = ROOT / "mutation" / "verdicts.toml"
REPORT = ROOT / "mutation" / "REPORT.md"


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # under src/
    pattern: str  # mutant names, fnmatch
    what: str
    group: str  # targets of a group are run together, against the group's tests


# Each group runs in its own copy of the project (mutation/work/<group>/), with its own
# [tool.mutmut] selection, so that a mutant is tried against its own module's tests only.
GROUPS: dict[str, list[str]] = {
    "jobs": [
        "tests/jobs/test_queue.py",
        "tests/jobs/test_worker.py",
        "tests/limits/test_fairness.py",
    ],
    "tenancy": [
        "tests/api/test_tenancy.py",
        "tests/api/test_notes.py",
        "tests/api/test_pagination.py",
    ],
    "auth": ["tests/api/test_auth.py", "tests/api/test_tokens.py"],
    "idempotency": ["tests/api/test_idempotency.py"],
}

TARGETS = [
    Target(
        "queue",
        "notes_api/jobs/queue.py",
        "notes_api.jobs.queue.*",
        "job engine: claim, lease, fence, retry",
        "jobs",
    ),
    Target(
        "fair",
        "notes_api/jobs/fair.py",
        "notes_api.jobs.fair.*",
        "job engine: fair claim",
        "jobs",
    ),
    Target(
        "settle",
        "notes_api/jobs/settle.py",
        "notes_api.jobs.settle.*",
        "job engine: outcomes, group commit",
        "jobs",
    ),
    Target(
        "handler",
        "notes_api/jobs/handler.py",
        "notes_api.jobs.handler.*",
        "job engine: retry policy, transient rule",
        "jobs",
    ),
    Target(
        "worker",
        "notes_api/jobs/worker.py",
        "notes_api.jobs.worker.*",
        "job engine: worker loop",
        "jobs",
    ),
    Target(
        "repository",
        "notes_api/notes/repository.py",
        "notes_api.notes.repository.*",
        "tenancy rule",
        "tenancy",
    ),
    Target(
        "throttle",
        "notes_api/auth/throttle.py",
        "notes_api.auth.throttle.*",
        "login throttle",
        "auth",
    ),
    Target(
        "tokens",
        "notes_api/users/tokens.py",
        "notes_api.users.tokens.*",
        "access and refresh tokens",
        "auth",
    ),
    Target(
        "claim_key",
        "notes_api/notes/idempotency.py",
        "notes_api.notes.idempotency.x_claim__mutmut_*",
        "idempotency claim (`claim` only)",
        "idempotency",
    ),
]
# A function that runs at import -> the function whose tests exercise what it built.
AT_IMPORT = {
    # Every fenced write (renew, complete, requeue, fail, release) is built by `_fenced`.
    "notes_api.jobs.queue.x__fenced": "notes_api.jobs.queue.x_complete",
}
WORK = ROOT / "mutation" / "work"
FRESH_RESULTS = "at-import.json"  # in the group's copy: what the fresh processes found
PYTEST_FRESH = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "--no-cov"]
COPIED = ("src", "tests", "migrations", "alembic.ini", "pyproject.toml")


def prepare(group: str, targets: list[Target]) -> Path:
    """The group's copy of the project, its [tool.mutmut] narrowed to the group's modules and
    tests. mutmut keeps its results in the copy's mutants/, so a run can resume."""
    work = WORK / group
    work.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, work / name)
    config = (work / "pyproject.toml").read_text()
    config = _set_list(config, "only_mutate", [f"src/{t.path}" for t in targets])
    config = _set_list(config, "pytest_add_cli_args_test_selection", GROUPS[group])
    (work / "pyproject.toml").write_text(config)
    return work


def _set_list(config: str, key: str, values: list[str]) -> str:
    listed = "".join(f'    "{v}",\n' for v in values)
    changed, count = re.subn(
        rf"^{key} = \[\n(?:    .*\n)*?\]", f"{key} = [\n{listed}]", config, flags=re.M
    )
    if count != 1:
        raise SystemExit(f"mutate: [tool.mutmut] {key} not found as a multi-line list")
    return changed


KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}
NO_TESTS = {5, 33}


def results(target: Target) -> dict[str, int | None]:
    meta = WORK / target.group / "mutants" / "src" / (target.path + ".meta")
    if not meta.exists():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    fresh = WORK / target.group / FRESH_RESULTS
    if fresh.exists():
        codes.update(json.loads(fresh.read_text()))
    return {k: v for k, v in codes.items() if fnmatch.fnmatch(k, target.pattern)}


def _mutmut(work: Path, *args: str) -> str:
    done = subprocess.run([*MUTMUT, *args], cwd=work, capture_output=True, text=True, check=True)
    return done.stdout


def _fresh_run(work: Path, tests: list[str]) -> int:
    """mutmut's exit code for a mutant (KILLED, TIMEOUT, NO_TESTS or 0) from a fresh pytest."""
    command = [*PYTEST_FRESH, *tests]
    env = {**os.environ, "PYTHONPATH": str(work / "src")}
    try:
        run = subprocess.run(command, cwd=work, env=env, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        return 36
    if run.returncode in (0, 5):
        return run.returncode
    return 1  # a failing test, or the mutant broke the import: killed


def try_at_import(group: str, targets: list[Target]) -> None:
    """Each surviving mutant of an AT_IMPORT function, in a fresh process (see the top)."""
    work = WORK / group
    fresh = work / FRESH_RESULTS
    tried: dict[str, int] = {}
    for function, user in AT_IMPORT.items():
        target = next(
            (t for t in targets if fnmatch.fnmatch(function + "__mutmut_1", t.pattern)), None
        )
        if target is None:
            continue
        meta = json.loads((work / "mutants" / "src" / (target.path + ".meta")).read_text())
        codes: dict[str, int | None] = meta["exit_code_by_key"]
        names = sorted(k for k, c in codes.items() if k.startswith(function + "__") and c == 0)
        if not names:
            continue
        tests = _mutmut(work, "tests-for-mutant", f"{user}__mutmut_1").split()
        if not tests:
            raise SystemExit(f"mutate: no test reaches {user}; AT_IMPORT needs another function")
        if _fresh_run(work, tests) != 0:
            raise SystemExit(f"mutate: the tests of {user} fail without a mutant: {tests}")
        source = work / "src" / target.path
        original = source.read_text()
        print(f"mutate: {len(names)} mutants of {function} in fresh processes", flush=True)
        for name in names:
            try:
                _mutmut(work, "apply", name)
                tried[name] = _fresh_run(work, tests)
            finally:
                source.write_text(original)  # the next mutant is applied to the original
    fresh.write_text(json.dumps(tried, indent=1))


_DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
out = {}
for name in json.load(sys.stdin):
    out[name] = get_diff_for_mutant(name, path=find_mutant(name).path)
json.dump(out, sys.stdout)
"""


def diffs_for(target: Target, names: list[str]) -> dict[str, str]:
    """Each mutant's diff, from one process (`mutmut show` per mutant takes seconds each)."""
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS],
        cwd=WORK / target.group,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str] = json.loads(done.stdout)
    return {k: "\n".join(v.splitlines()[2:]).strip() for k, v in found.items()}


def changed_line(diff: str) -> str:
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and line[1:2] != "-"]
    return "\n".join(removed)


def reason_for(name: str, diff: str, verdicts: dict[str, Any]) -> str | None:
    by_name: dict[str, str] = verdicts.get("mutants", {})
    if name in by_name:
        return by_name[name]
    line = changed_line(diff)
    for rule in verdicts.get("rule", []):
        if re.search(rule["function"], name) and re.search(rule["line"], line, re.MULTILINE):
            return str(rule["reason"])
    return None


def write_report(targets: list[Target], elapsed: float | None) -> int:
    verdicts: dict[str, Any] = tomllib.loads(VERDICTS.read_text()) if VERDICTS.exists() else {}
    rows, sections, unexplained = [], [], 0
    for target in targets:
        codes = results(target)
        killed = sum(1 for c in codes.values() if c in KILLED)
        timeouts = sum(1 for c in codes.values() if c in TIMEOUT)
        survivors = sorted(k for k, c in codes.items() if c == 0)
        untested = sorted(k for k, c in codes.items() if c in NO_TESTS)
        unchecked = sum(1 for c in codes.values() if c is None)
        total = len(codes) - unchecked
        score = (killed + timeouts) / total * 100 if total else 0.0
        diffs = diffs_for(target, survivors + untested)
        reasons = {k: reason_for(k, diffs[k], verdicts) for k in diffs}
        explained = sum(1 for r in reasons.values() if r)
        rows.append(
            f"| `{target.path}` ({target.what}) | {total} | {killed} | {timeouts} | "
            f"{len(survivors)} | {len(untested)} | {score:.1f}% | {explained} |"
        )
        if not survivors and not untested:
            continue
        body = [f"### `{target.path}`", ""]
        for name in survivors + untested:
            kind = "survived" if name in survivors else "no test reaches it"
            reason = reasons[name]
            if reason is None:
                unexplained += 1
            body += [
                f"- `{name}` ({kind}): {reason or '**UNEXPLAINED**'}",
                "",
                "  ```diff",
                *("  " + line for line in diffs[name].splitlines()),
                "  ```",
                "",
            ]
        sections.append("\n".join(body))
    took = f" in {elapsed / 60:.1f} min" if elapsed else ""
    REPORT.write_text(
        "\n".join(
            [
                "# Mutation testing report",
                "",
                f"Written by `make mutate` (mutmut, SQLite-only test selection){took}. Score ="
                " (killed + timed out) / mutants tried. Each group of modules runs against its"
                " own tests (GROUPS in mutation/run.py), and each mutant only against the tests"
                " that reach its function. A function that runs at import (AT_IMPORT in"
                " mutation/run.py) cannot be mutated in mutmut's forked runs; its mutants are"
                " tried each in a fresh pytest process instead.",
                "",
                "Postgres-only statements are not exercised here (mutants run in parallel"
                " processes, which would share the one Postgres test database); such survivors"
                " say so and name the Postgres tests that run the statement. A survivor's reason"
                " comes from mutation/verdicts.toml.",
                "",
                "| module | mutants | killed | timed out | survived | no test | score |"
                " explained |",
                "|---|---|---|---|---|---|---|---|",
                *rows,
                "",
                f"Unexplained survivors: {unexplained}.",
                "",
                "## Survivors",
                "",
                *sections,
                "",
            ]
        )
    )
    print(f"mutate: report in {REPORT.relative_to(ROOT)}; unexplained survivors: {unexplained}")
    return unexplained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--survivors", action="store_true")
    parser.add_argument("targets", nargs="*", help=", ".join(t.name for t in TARGETS))
    args = parser.parse_args()
    unknown = set(args.targets) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = [t for t in TARGETS if not args.targets or t.name in args.targets]
    elapsed = None
    if not args.report_only:
        started = time.monotonic()
        for group in GROUPS:
            members = [t for t in targets if t.group == group]
            if not members:
                continue
            if args.survivors:
                names = [
                    k for t in members for k, c in results(t).items() if c == 0 or c in NO_TESTS
                ]
                if not names:
                    continue
            else:
                names = [t.pattern for t in members]
            work = prepare(group, members)
            print(f"mutate: {group}: {', '.join(t.path for t in members)}", flush=True)
            command = [*MUTMUT, "run", "--max-children", str(args.max_children), *names]
            done = subprocess.run(command, cwd=work, check=False)
            if done.returncode != 0:
                print(f"mutate: mutmut exited with {done.returncode}", file=sys.stderr)
                return done.returncode
            try_at_import(group, members)
            write_report(targets, time.monotonic() - started)
        elapsed = time.monotonic() - started
    write_report(targets, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
