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
        LOG_LEVEL="INFO",
        LOG_FORMAT="console",
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
        yield str(tmp_path / "serve.log")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def paste(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The block pasted into bash in a second terminal, where only what is given was set."""
    env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(
        ["bash"], input=script, env=env, capture_output=True, text=True, timeout=60
    )


def test_quick_start_needs_only_curl_and_python3() -> None:
    script = quick_start()
    # Each command, continuation lines joined, comments left out.
    commands = [c for c in script.replace("\\\n", " ").splitlines() if c and c[0] != "#"]
    assert "jq" not in script
    for command in commands:
        assert re.match(r"(BASE|EMAIL|TOKEN|ID)=|curl |if ! curl |  echo |else|fi", command), (
            command
        )
        assert set(re.findall(r"\| *(\w+)", command)) <= {"python3"}, command


def ready_line(log: str) -> str:
    """The `export BASE=...` that the server's last start-up line tells the reader to run."""
    deadline = time.monotonic() + 10
    while not (found := re.search(r"export BASE=(\S+?)`", Path(log).read_text())):
        assert time.monotonic() < deadline, Path(log).read_text()
        time.sleep(0.1)
    return found.group(1)


@pytest.mark.timeout(120)
def test_quick_start_pasted_into_bash_prints_a_summarized_note(served: str) -> None:
    """PORT was given to the server only (`PORT=8001 make run`): the paste goes where the
    server's ready line says, and reads no PORT of its own."""
    script = quick_start()
    base = ready_line(served)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base), base
    assert f"Swagger UI: {base}/docs" in Path(served).read_text()
    for run in range(2):  # a second paste works too: new account, new Idempotency-Key
        result = paste(script, BASE=base)
        assert result.returncode == 0, result.stderr
        note = json.loads(result.stdout)
        assert note["status"] == "done", (run, note)
        assert note["summary"]
        assert len(note["summary"]) < len(note["raw_text"])
        assert note["summary"] in note["raw_text"]


def test_quick_start_with_nothing_listening_says_what_to_do() -> None:
    """The paste before `make run` (or on the wrong port) says where it looked and what to
    run, instead of JSON tracebacks."""
    result = paste(quick_start(), PORT=str(free_port()))
    assert result.returncode == 0, result.stderr
    assert "Nothing answers at http://127.0.0.1:" in result.stdout
    assert "export BASE=" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def endpoint_rows() -> dict[str, str]:
    """Each `METHOD /path` named in the README's endpoints table, with its row."""
    section = README.split("## Endpoints", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for row in (line for line in section.splitlines() if line.startswith("| `")):
        cell = row.split(" | ", 1)[0]
        for method, path in re.findall(r"`(GET|POST|PATCH|DELETE) (/[^`]*)`", cell):
            rows[f"{method} {re.sub(r'{[a-z_]*id}', '{}', path)}"] = cell
    return rows


def test_readme_table_names_every_required_body_field() -> None:
    """A route that needs a body shows it in the table (`POST /auth/logout {refresh_token}`
    was missing once, and its 422 did not say what to send)."""
    from notes_api.core.config import Settings
    from notes_api.main import create_app

    document = create_app(Settings(_env_file=None, app_env="test")).openapi()  # type: ignore[call-arg]
    schemas = document["components"]["schemas"]
    rows = endpoint_rows()
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            key = f"{method.upper()} {re.sub(r'{[a-z_]*id}', '{}', path)}"
            assert key in rows, f"{key} is not in the README's endpoints table"
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                ref = media["schema"]["$ref"].rsplit("/", 1)[1]
                for field in schemas[ref].get("required", []):
                    checked += 1
                    assert re.search(rf"\b{field}\b", rows[key]), (key, field)
    assert checked > 10
