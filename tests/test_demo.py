"""scripts/demo.py as people run it: a real process, against its own service or a dead one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = [
    "Health and readiness",
    "Sign up an admin, provision an agent",
    "Who am I",
    "Create a note",
    "Watch the summary being made",
    "Replay with the same Idempotency-Key",
    "Tenancy: agents are isolated, the admin sees all",
    "A failed summary, retried",
    "A live event stream and a signed webhook",
    "Refresh token rotation and logout",
]


def run_demo(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"BASE_URL", "DEMO_FAIL_NOTE_TEXT"}}
    environ.update(NO_COLOR="1", **env)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
    )


@pytest.mark.timeout(180)
def test_demo_walks_through_every_step_against_its_own_service() -> None:
    result = run_demo()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for number, title in enumerate(STEPS, 1):
        assert f"[{number}/{len(STEPS)}] {title}" in result.stdout
    for seen in (
        "status: queued",
        "status: done",
        "idempotent_replayed: true",
        "404 Not Found",
        "status: failed",
        "summarizer answered HTTP 400",
        "401 Unauthorized",
        "204 No Content",
        f"all {len(STEPS)} steps passed",
    ):
        assert seen in result.stdout, f"{seen!r} missing from:\n{output}"
    assert "\033[" not in output  # NO_COLOR is honoured
    assert "skipped" not in result.stdout
    # It says which summarizer it runs, and why.
    assert "SUMMARIZER=openai" in result.stdout
    assert "fake" in result.stdout
    assert "extractive" in result.stdout
    # Every call says whose it is, and tokens are told apart by name.
    for who in ("as grace (admin)", "as ada (agent)", "as alan (agent)"):
        assert who in result.stdout
    for name in ("grace", "ada", "alan"):
        assert f"<{name}'s token …" in result.stdout
    # Its own service stops with it: no token lines to paste for nothing, but the way to
    # get them from a service that stays up.
    assert "_TOKEN=eyJ" not in result.stdout
    assert "BASE_URL=http://127.0.0.1:8000 make demo" in result.stdout
    # Attempts add up across the failure and the retry.
    assert "attempts: 1 since the retry (2 in all, 1 before it failed)" in result.stdout
    # The printed commands are what a shell takes as they are.
    commands = [line.split("$ ", 1)[1] for line in result.stdout.splitlines() if "$ curl" in line]
    assert len(commands) > 20
    for command in commands:
        assert command.startswith("curl -s ")
        assert "http://127.0.0.1:" in command
        assert "$BASE_URL" not in command
        assert "--json" not in command
        assert "…" not in command
    assert ".log" not in result.stdout  # no path to a log that is deleted on success


def test_demo_fails_readably_when_the_service_does_not_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    result = run_demo(BASE_URL=f"http://127.0.0.1:{port}")
    assert result.returncode != 0
    assert f"FAILED: GET http://127.0.0.1:{port}/healthz: no answer from the service" in (
        result.stderr
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_make_demo_installs_only_what_serving_needs() -> None:
    """`make demo` syncs the runtime dependencies, not the 60-odd development packages."""
    plan = subprocess.run(
        ["make", "-n", "-B", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "sync --frozen --no-dev" in plan
    assert "--all-groups" not in plan
    assert "scripts/demo.py" in plan
