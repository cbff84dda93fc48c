"""A Neon-shaped database on this machine, from Debian's packages.

A throwaway PostgreSQL cluster (its own data directory under a temporary folder, its own port,
run as the `postgres` OS user; the machine's main cluster is never touched) that accepts only
TLS and SCRAM-SHA-256, like Neon's computes, and PgBouncer in transaction mode in front of it,
also TLS and SCRAM only, like Neon's `-pooler` endpoint. Both get a self-signed certificate
made on the fly with openssl.

The configuration generators at the top are pure functions (unit-tested in
tests/test_rehearsal_config.py); `NeonLikeDatabase` runs the processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

DB_USER = "neondb_owner"  # the names Neon's console gives a new project
DB_NAME = "neondb"
BOUNCER_ADMIN = "rehearsal_admin"  # PgBouncer's admin console only, never Postgres
OS_USER = "postgres"


# ------------------------------------------------------------------ SCRAM secrets (RFC 5803)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def scram_secret(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The secret Postgres stores for a SCRAM-SHA-256 password (and PgBouncer reads)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


_SECRET = re.compile(
    r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$"
)


def scram_verify(secret: str, password: str) -> bool:
    """Does `secret` (as found in pg_authid) belong to `password`?"""
    match = _SECRET.match(secret)
    if not match:
        return False
    iterations, salt = int(match[1]), base64.b64decode(match[2])
    return hmac.compare_digest(scram_secret(password, salt=salt, iterations=iterations), secret)


# ------------------------------------------------------------------ configuration files


def postgresql_conf(*, port: int, socket_dir: Path, cert: Path, key: Path) -> str:
    """Appended to initdb's postgresql.conf: TLS only, SCRAM only, loopback only."""
    return "\n".join(
        [
            "# --- production rehearsal (rehearsal/database.py): a Neon-shaped compute",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{socket_dir}'",
            "ssl = on",
            f"ssl_cert_file = '{cert}'",
            f"ssl_key_file = '{key}'",
            "ssl_min_protocol_version = 'TLSv1.2'",
            "password_encryption = 'scram-sha-256'",
            # Neon's 0.25 CU compute allows 112; a small cluster is enough here.
            "max_connections = 60",
            "shared_buffers = 64MB",
            # Evidence for the report: who connected from where, and every DDL statement
            # with the client's address (migrations must come over the direct URL).
            "log_connections = on",
            "log_statement = 'ddl'",
            "log_line_prefix = '%m [%p] %r %u@%d app=%a '",
            "log_min_error_statement = error",
            "",
        ]
    )


def pg_hba_conf() -> str:
    """TLS and SCRAM for every TCP client; plaintext TCP is refused outright. The local socket
    (peer, postgres only) is how the rehearsal itself administers the cluster."""
    return "\n".join(
        [
            "# TYPE     DATABASE USER     ADDRESS        METHOD",
            "local      all      postgres                peer",
            "hostssl    all      all      127.0.0.1/32   scram-sha-256",
            "hostssl    all      all      ::1/128        scram-sha-256",
            "hostnossl  all      all      0.0.0.0/0      reject",
            "hostnossl  all      all      ::/0           reject",
            "",
        ]
    )


def pgbouncer_ini(
    *,
    listen_port: int,
    server_port: int,
    auth_file: Path,
    cert: Path,
    key: Path,
    logfile: Path,
    pidfile: Path,
    pool_size: int = 20,
) -> str:
    """PgBouncer as Neon runs it for `-pooler` hosts: transaction pooling, TLS and SCRAM for
    clients, TLS to the server (whose pg_hba refuses anything else)."""
    return "\n".join(
        [
            "[databases]",
            f"{DB_NAME} = host=127.0.0.1 port={server_port} dbname={DB_NAME}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {listen_port}",
            "unix_socket_dir =",
            f"logfile = {logfile}",
            f"pidfile = {pidfile}",
            "pool_mode = transaction",
            "max_client_conn = 1000",
            f"default_pool_size = {pool_size}",
            "query_wait_timeout = 120",
            "auth_type = scram-sha-256",
            f"auth_file = {auth_file}",
            f"stats_users = {BOUNCER_ADMIN}",
            f"admin_users = {BOUNCER_ADMIN}",
            "client_tls_sslmode = require",
            f"client_tls_key_file = {key}",
            f"client_tls_cert_file = {cert}",
            "server_tls_sslmode = require",
            "ignore_startup_parameters = extra_float_digits",
            "log_connections = 1",
            "log_disconnections = 0",
            # SHOW STATS totals are refreshed every stats_period: 1 s keeps them current.
            "stats_period = 1",
            "log_stats = 0",
            "",
        ]
    )


def userlist(entries: dict[str, str]) -> str:
    """PgBouncer's auth_file: `"user" "secret"` per line, double quotes doubled."""

    def q(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    return "".join(f"{q(user)} {q(secret)}\n" for user, secret in entries.items())


def neon_url(
    user: str, password: str, port: int, *, db: str = DB_NAME, channel_binding: bool = True
) -> str:
    """A connection string in the exact form Neon hands out."""
    query = "sslmode=require" + ("&channel_binding=require" if channel_binding else "")
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{credentials}@127.0.0.1:{port}/{db}?{query}"


# ------------------------------------------------------------------ processes


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin that has initdb."""
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _as_postgres() -> dict[str, Any]:
    return {"user": OS_USER, "group": OS_USER, "extra_groups": []}


@dataclass
class NeonLikeDatabase:
    root: Path  # a fresh temporary directory; removed by stop()
    pg_port: int
    bouncer_port: int
    bindir: Path
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    superuser_password: str = field(default_factory=lambda: secrets.token_hex(16))
    bouncer_admin_password: str = field(default_factory=lambda: secrets.token_hex(16))
    bouncer: subprocess.Popen[bytes] | None = None
    started_pg: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    user_secret: str = ""

    # paths
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def cert(self) -> Path:
        return self.root / "tls" / "server.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls" / "server.key"

    @property
    def pg_log(self) -> Path:
        return self.root / "postgresql.log"

    @property
    def bouncer_log(self) -> Path:
        return self.root / "pgbouncer.log"

    @property
    def bouncer_ini(self) -> Path:
        return self.root / "pgbouncer.ini"

    # URLs
    @property
    def direct_url(self) -> str:
        return neon_url(DB_USER, self.password, self.pg_port)

    @property
    def pooled_url(self) -> str:
        # PgBouncer cannot do SCRAM channel binding (see rehearsal/README.md): sslmode only.
        return neon_url(DB_USER, self.password, self.bouncer_port, channel_binding=False)

    def pooled_url_with_channel_binding(self) -> str:
        return neon_url(DB_USER, self.password, self.bouncer_port)

    @property
    def superuser_url(self) -> str:
        return neon_url("postgres", self.superuser_password, self.pg_port, db="postgres")

    @property
    def bouncer_console_url(self) -> str:
        return neon_url(
            BOUNCER_ADMIN,
            self.bouncer_admin_password,
            self.bouncer_port,
            db="pgbouncer",
            channel_binding=False,
        )

    # lifecycle
    def start(self) -> None:
        pw = pwd.getpwnam(OS_USER)
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o700)
        self._make_certificate(pw.pw_uid, pw.pw_gid)
        self._initdb(pw.pw_uid, pw.pw_gid)
        self._start_postgres()
        self._create_role_and_database()
        self._start_bouncer(pw.pw_uid, pw.pw_gid)

    def _make_certificate(self, uid: int, gid: int) -> None:
        tls = self.cert.parent
        tls.mkdir()
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-sha256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=ep-rehearsal-local.neon.invalid",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        for path in (tls, self.cert, self.key):
            os.chown(path, uid, gid)
        self.key.chmod(0o600)
        out = subprocess.run(
            [
                "openssl",
                "x509",
                "-in",
                str(self.cert),
                "-noout",
                "-subject",
                "-fingerprint",
                "-sha256",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.facts["certificate"] = " ".join(out.split())

    def _initdb(self, uid: int, gid: int) -> None:
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.superuser_password + "\n")
        os.chown(pwfile, uid, gid)
        pwfile.chmod(0o600)
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
            **_as_postgres(),
        )
        pwfile.unlink()
        conf = postgresql_conf(
            port=self.pg_port, socket_dir=self.root, cert=self.cert, key=self.key
        )
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\n" + conf)
        (self.data / "pg_hba.conf").write_text(pg_hba_conf())

    def _start_postgres(self) -> None:
        subprocess.run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.pg_log),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
            **_as_postgres(),
        )
        self.started_pg = True
        version = self.psql_local("SHOW server_version").strip()
        self.facts["postgres_version"] = version

    def psql_local(self, *sql: str, db: str = "postgres") -> str:
        """Run SQL as the superuser over the cluster's own Unix socket (peer auth); each
        argument is its own command, in one session."""
        commands = [arg for statement in sql for arg in ("-c", statement)]
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                str(self.root),
                "-p",
                str(self.pg_port),
                "-d",
                db,
                *commands,
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=self.root,
            **_as_postgres(),
        )
        return str(result.stdout)

    def _create_role_and_database(self) -> None:
        # The server hashes the password itself (password_encryption = scram-sha-256); the
        # secret it stored is what PgBouncer's auth_file then carries, as Neon's pooler does.
        # (Not logged: log_statement = 'ddl' would write the password into the log.)
        self.psql_local(
            "SET log_statement = 'none'",
            f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{self.password}'",
        )
        self.psql_local(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        secret = self.psql_local(
            f"SELECT rolpassword FROM pg_authid WHERE rolname = '{DB_USER}'"
        ).strip()
        self.facts["stored_secret_is_scram"] = secret.startswith("SCRAM-SHA-256$")
        self.facts["stored_secret_matches_password"] = scram_verify(secret, self.password)
        self.user_secret = secret

    def _start_bouncer(self, uid: int, gid: int) -> None:
        auth_file = self.root / "userlist.txt"
        auth_file.write_text(
            userlist(
                {
                    DB_USER: self.user_secret,
                    BOUNCER_ADMIN: scram_secret(self.bouncer_admin_password),
                }
            )
        )
        ini = pgbouncer_ini(
            listen_port=self.bouncer_port,
            server_port=self.pg_port,
            auth_file=auth_file,
            cert=self.cert,
            key=self.key,
            logfile=self.bouncer_log,
            pidfile=self.root / "pgbouncer.pid",
        )
        self.bouncer_ini.write_text(ini)
        for path in (auth_file, self.bouncer_ini):
            os.chown(path, uid, gid)
            path.chmod(0o600)
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.bouncer = subprocess.Popen(
            [binary, str(self.bouncer_ini)],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **_as_postgres(),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.bouncer.poll() is not None:
                tail = self.bouncer_log.read_text()[-800:] if self.bouncer_log.exists() else ""
                raise RuntimeError(f"pgbouncer exited with {self.bouncer.returncode}: {tail}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.bouncer_port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("pgbouncer did not listen within 15 s")
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stdout
        self.facts["pgbouncer_version"] = version.splitlines()[0] if version else "?"

    def console(self, command: str) -> list[dict[str, str]]:
        """A SHOW command on PgBouncer's admin console (simple protocol only: psql)."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-A",
                "-F",
                "\t",
                "-P",
                "footer=off",
                self.bouncer_console_url,
                "-c",
                command,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=20,
        )
        lines = result.stdout.splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]

    def stop(self) -> list[str]:
        """Stop PgBouncer and the cluster and remove every file. Returns what went wrong."""
        problems: list[str] = []
        if self.bouncer is not None and self.bouncer.poll() is None:
            self.bouncer.send_signal(signal.SIGINT)  # safe shutdown
            try:
                self.bouncer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.bouncer.kill()
                self.bouncer.wait()
                problems.append("pgbouncer needed SIGKILL")
        if self.started_pg:
            result = subprocess.run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                capture_output=True,
                text=True,
                cwd=self.root,
                check=False,
                **_as_postgres(),
            )
            if result.returncode != 0:
                problems.append(f"pg_ctl stop: {result.stderr.strip()}")
                pid_file = self.data / "postmaster.pid"
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
                    except (OSError, ValueError) as exc:
                        problems.append(f"killing the postmaster: {exc}")
                    time.sleep(1)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            problems.append(f"{self.root} could not be removed")
        return problems

    def save_logs(self, into: Path) -> None:
        for path in (self.pg_log, self.bouncer_log):
            if path.exists():
                shutil.copyfile(path, into / path.name)
