"""Smoke test of the load benchmark: `bench/run.py --quick --only sqlite` runs end to end
against real processes and writes a report with every endpoint and the baseline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = (
    "GET /notes/{id}",
    "GET /notes?limit=20",
    "POST /notes",
    "POST /auth/login",
    "POST /notes, limits on",
)


# About 40 s alone; 74 s as one of two xdist workers beside a CPU hog: room to spare.
@pytest.mark.timeout(200)
def test_quick_benchmark_writes_a_report_with_every_endpoint_and_the_baseline(
    tmp_path: Path,
) -> None:
    if shutil.which("wrk") is None:
        missing = "wrk is not installed (Debian: apt-get install wrk); bench/run.py needs it"
        if in_ci():
            pytest.fail(f"CI is set and {missing}")
        pytest.skip(missing)
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--only", "sqlite", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    report = (tmp_path / "REPORT.md").read_text()
    assert "| baseline (no DB, no auth) |" in report
    for endpoint in ENDPOINTS:
        assert f"| `{endpoint}` |" in report
    assert "## Targets" in report
    assert "SQLite, worker embedded in the API" in report  # the job figure ran

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["baseline"]["requests"] > 0
    loads = {r["name"]: r for r in results["databases"]["SQLite"]}
    assert set(loads) == set(ENDPOINTS)
    # A wrong script (path, token, body) would measure nothing but errors.
    for endpoint in ENDPOINTS:
        assert loads[endpoint]["non_2xx"] == 0, loads[endpoint]
    # A login can take longer than the 2 s run at 64 connections.
    for endpoint in (e for e in ENDPOINTS if e != "POST /auth/login"):
        assert loads[endpoint]["requests"] > 0, loads[endpoint]
    assert (tmp_path / "bench.png").stat().st_size > 10_000
