"""Every way the database can be wrong at start-up gets one line that names DATABASE_URL and
what to check, and no traceback: real `notes-api` processes against a closed port, a
missing database and a server that does not speak SSL (the local Postgres), a wrong
password and a server that takes only SSL (a Postgres cluster of the test's own), and a
schema behind or ahead of the code."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from notes_api.core.config import normalize_database_url
from notes_api.core.migrations import head_revision, upgrade
from tests.conftest import ensure_pg_database, pg_admin_url

pytestmark = pytest.mark.timeout(120)

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
WRONG = "not-the-password-9f3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def notes_api(*args: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env.update(DATABASE_URL=url, PORT=str(free_port()), HOST="127.0.0.1", APP_ENV="development")
    return subprocess.run(
        [sys.executable, "-m", "notes_api.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The command failed with one line on stderr naming DATABASE_URL, and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "DATABASE_URL" in line and WRONG not in line, line
    for text in expected:
        assert text in line, line
    return line


def test_database_down(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/notes"
    for command in ("serve", "migrate", "worker"):
        one_line(notes_api(command, url=url, tmp_path=tmp_path), "nothing answers at 127.0.0.1:")


def test_host_unknown(tmp_path: Path) -> None:
    url = "postgresql://postgres@no-such-host.invalid:5432/notes"
    one_line(notes_api("migrate", url=url, tmp_path=tmp_path), "is not known")


@pytest.fixture
def local_pg(pg_url: str) -> str:
    return pg_url


def test_database_missing(local_pg: str, tmp_path: Path) -> None:
    name = f"notes_missing_{uuid.uuid4().hex[:8]}"
    url = local_pg.rsplit("/", 1)[0] + "/" + name
    line = one_line(notes_api("serve", url=url, tmp_path=tmp_path), f'database "{name}" does not')
    assert "create it" in line


def test_ssl_asked_of_a_server_without_it(local_pg: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_admin_url(local_pg), autocommit=True) as conn:
        if conn.execute("SHOW ssl").fetchone() != ("off",):
            pytest.skip("the local Postgres speaks SSL")
    url = f"{local_pg}?sslmode=require"
    one_line(notes_api("migrate", url=url, tmp_path=tmp_path), "sslmode")


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[int]:
    """A Postgres cluster of this test's own, whose pg_hba.conf asks `pwuser` for its
    password and takes `ssluser` over SSL only (the shared server trusts everyone)."""
    if PG_BIN is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and Debian's Postgres binaries for a private cluster")
    # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 folders.
    root = Path(tempfile.mkdtemp(prefix="notes-own-pg-"))
    data = root / "data"
    shutil.chown(root, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all pwuser 127.0.0.1/32 scram-sha-256\n"
        "hostssl all ssluser 127.0.0.1/32 trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
    )
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data)]
    subprocess.run([*ctl, "-o", options, "-l", str(root / "log"), "-w", "start"], check=True)
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
            conn.execute("CREATE ROLE pwuser LOGIN PASSWORD 'the-right-one'")
            conn.execute("CREATE ROLE ssluser LOGIN")
            conn.commit()
        yield port
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_wrong_password(own_cluster: int, tmp_path: Path) -> None:
    url = f"postgresql://pwuser:{WRONG}@127.0.0.1:{own_cluster}/postgres"
    for command in ("serve", "migrate"):
        one_line(notes_api(command, url=url, tmp_path=tmp_path), "refused the user's password")
    # The right one gets past it (the cluster is real, not a stand-in that always refuses).
    right = f"postgresql://pwuser:the-right-one@127.0.0.1:{own_cluster}/postgres"
    psycopg.connect(right).close()


def test_server_takes_ssl_only(own_cluster: int, tmp_path: Path) -> None:
    url = f"postgresql://ssluser@127.0.0.1:{own_cluster}/postgres"
    one_line(notes_api("migrate", url=url, tmp_path=tmp_path), "add ?sslmode=require to")


@pytest.fixture
def behind_db(local_pg: str) -> str:
    """A database of its own, migrated to the revision before head."""
    url = local_pg + "_behind"
    ensure_pg_database(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    upgrade(normalize_database_url(url), "20261130_0003")
    return url


def test_schema_behind(behind_db: str, tmp_path: Path) -> None:
    for command in (["serve", "--no-migrate"], ["worker"]):
        line = one_line(
            notes_api(*command, url=behind_db, tmp_path=tmp_path),
            "schema is at migration 20261130_0003",
            "notes-api migrate",
        )
        assert str(head_revision()) in line
    # What the line says to do is what fixes it.
    assert notes_api("migrate", url=behind_db, tmp_path=tmp_path).returncode == 0


def test_schema_ahead_of_the_code(behind_db: str, tmp_path: Path) -> None:
    with psycopg.connect(behind_db, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '20991231_0001_from_the_future'")
    one_line(notes_api("migrate", url=behind_db, tmp_path=tmp_path), "newer version")
