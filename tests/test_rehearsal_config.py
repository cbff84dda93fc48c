"""The production rehearsal's Neon-shaped database configuration (rehearsal/database.py):
TLS and SCRAM only, transaction pooling, and URLs in the form Neon hands out. The rehearsal
itself (`make rehearsal`) runs the real thing; these tests keep its generators honest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest

from notes_api.core.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rehearsal_db() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rehearsal_database", ROOT / "rehearsal" / "database.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.strip().startswith("#")}


def test_scram_secret_has_rfc5803_shape_and_verifies(rehearsal_db: ModuleType) -> None:
    salt = b"0123456789abcdef"
    secret = rehearsal_db.scram_secret("pencil", salt=salt, iterations=4096)
    head, keys = secret.split("$", 1)[1].split("$")
    assert secret.startswith("SCRAM-SHA-256$4096:")
    assert head == "4096:" + base64.b64encode(salt).decode()
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    assert stored == hashlib.sha256(client_key).digest()
    assert server == hmac.new(salted, b"Server Key", "sha256").digest()
    assert rehearsal_db.scram_verify(secret, "pencil")
    assert not rehearsal_db.scram_verify(secret, "pencil2")
    assert not rehearsal_db.scram_verify("md5abcdef", "pencil")


def test_postgres_accepts_only_tls_and_scram(rehearsal_db: ModuleType) -> None:
    conf = _settings(
        rehearsal_db.postgresql_conf(
            port=55432,
            socket_dir=Path("/srv/rehearsal/r"),
            cert=Path("/srv/rehearsal/c"),
            key=Path("/srv/rehearsal/k"),
        )
    )
    assert conf["ssl"] == "on"
    assert conf["password_encryption"] == "'scram-sha-256'"
    assert conf["port"] == "55432"
    assert conf["listen_addresses"] == "'127.0.0.1'"
    rules = [line.split() for line in rehearsal_db.pg_hba_conf().splitlines()]
    rules = [r for r in rules if r and not r[0].startswith("#")]
    tcp = [r for r in rules if r[0] != "local"]
    assert {r[-1] for r in tcp if r[0] == "hostssl"} == {"scram-sha-256"}
    assert {r[-1] for r in tcp if r[0] == "hostnossl"} == {"reject"}
    assert {r[0] for r in tcp} == {"hostssl", "hostnossl"}  # no plain `host` line
    assert [r for r in rules if r[0] == "local"] == [["local", "all", "postgres", "peer"]]


def test_pgbouncer_pools_transactions_with_tls_and_scram(rehearsal_db: ModuleType) -> None:
    ini = rehearsal_db.pgbouncer_ini(
        listen_port=56432,
        server_port=55432,
        auth_file=Path("/srv/rehearsal/users.txt"),
        cert=Path("/srv/rehearsal/c"),
        key=Path("/srv/rehearsal/k"),
        logfile=Path("/srv/rehearsal/l"),
        pidfile=Path("/srv/rehearsal/p"),
    )
    conf = _settings(ini)
    assert conf["pool_mode"] == "transaction"
    assert conf["auth_type"] == "scram-sha-256"
    assert conf["client_tls_sslmode"] == "require"
    assert conf["server_tls_sslmode"] == "require"
    assert conf["client_tls_cert_file"] == "/srv/rehearsal/c"
    assert conf["client_tls_key_file"] == "/srv/rehearsal/k"
    assert conf["listen_port"] == "56432"
    assert conf["neondb"] == "host=127.0.0.1 port=55432 dbname=neondb"
    assert conf["unix_socket_dir"] == ""


def test_userlist_quotes_like_pgbouncer_expects(rehearsal_db: ModuleType) -> None:
    text = rehearsal_db.userlist({"neondb_owner": "SCRAM-SHA-256$x", 'od"d': "p"})
    assert text == '"neondb_owner" "SCRAM-SHA-256$x"\n"od""d" "p"\n'


def test_urls_are_neons_and_the_service_accepts_them(rehearsal_db: ModuleType) -> None:
    direct = rehearsal_db.neon_url("neondb_owner", "p@ss/word", 55432)
    pooled = rehearsal_db.neon_url("neondb_owner", "p@ss/word", 56432, channel_binding=False)
    parts = urlsplit(direct)
    assert parts.scheme == "postgresql"
    assert parts.path == "/neondb"
    assert parse_qs(parts.query) == {"sslmode": ["require"], "channel_binding": ["require"]}
    assert parse_qs(urlsplit(pooled).query) == {"sslmode": ["require"]}
    assert "p%40ss%2Fword" in direct
    # What the service does with them (core/config.py): psycopg, parameters kept for libpq.
    normalized = normalize_database_url(direct)
    assert normalized.startswith("postgresql+psycopg://")
    assert normalized.endswith("?sslmode=require&channel_binding=require")
