"""The README's quick start, pasted as it is into bash against a real `notes-api serve`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_start() -> str:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the quick start is one bash block"
    return str(blocks[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`notes-api serve` as `make run` starts it, on a free port and a new SQLite file."""
    port = str(free_port())
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "JWT_", "SUMMARIZER", "OPENAI_", "WORKER_"))
    }
    env.update(
        PORT=port,
        HOST="127.0.0.1",
        APP_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'notes.db'}",
        LOG_LEVEL="WARNING",
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "notes_api.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no /healthz within 60 s"
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def paste(script: str, port: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PORT": port}
    return subprocess.run(
        ["bash"], input=script, env=env, capture_output=True, text=True, timeout=60
    )


def test_quick_start_needs_only_curl_and_python3() -> None:
    script = quick_start()
    # Each command, continuation lines joined, comments left out.
    commands = [c for c in script.replace("\\\n", " ").splitlines() if c and c[0] != "#"]
    assert "jq" not in script
    for command in commands:
        assert re.match(r"(BASE|EMAIL|TOKEN|ID)=|curl ", command), command
        assert set(re.findall(r"\| *(\w+)", command)) <= {"python3"}, command


@pytest.mark.timeout(120)
def test_quick_start_pasted_into_bash_prints_a_summarized_note(served: str) -> None:
    script = quick_start()
    for run in range(2):  # a second paste works too: new account, new Idempotency-Key
        result = paste(script, served)
        assert result.returncode == 0, result.stderr
        note = json.loads(result.stdout)
        assert note["status"] == "done", (run, note)
        assert note["summary"]
        assert len(note["summary"]) < len(note["raw_text"])
        assert note["summary"] in note["raw_text"]
