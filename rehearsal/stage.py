"""The rehearsal's stage, in pieces that other programs can use too (`make video` runs its
deployment scene on it): the preflight, the image built by container-smoke, the Neon-shaped
database, and the environment the Koyeb guide gives the container.

Standard library only, apart from container.py's httpx, so that an interpreter without the
project's packages (the video's tools, .tools/video) can import it:

    import stage                      # with rehearsal/ on sys.path
    stage.preflight()                 # root, postgresql, pgbouncer, container-smoke; Abort if not
    stage.build_image(logs)           # container-smoke builds localhost/notes-api:rehearsal
    with stage.neon_like_database(logs) as db:
        box = Container(name, stage.IMAGE, port, stage.service_env(db, jwt_secret))
        box.run()                     # podman run --memory 512m --cpus 0.1 ...
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from container import podman
from database import NeonLikeDatabase, free_port, postgres_bindir
from report import Report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IMAGE = "localhost/notes-api:rehearsal"
SMOKE = ROOT.parent / "shared" / "tools" / "container-smoke"
APT_PACKAGES = {"pgbouncer": "pgbouncer", "openssl": "openssl", "psql": "postgresql-client"}


class Abort(Exception):
    """Something the rehearsal needs is missing: say what, and stop with a failure."""


def which(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin:/usr/bin")


def preflight(logs: Path, report: Report | None = None) -> None:
    """Root, Debian's postgresql, pgbouncer, openssl and psql (installed with apt-get when
    missing), the postgres OS user and container-smoke; Abort says what is missing."""
    if os.geteuid() != 0:
        raise Abort(
            "run it as root: the throwaway cluster runs as the postgres OS user and "
            "podman is used rootful"
        )
    missing = sorted({pkg for cmd, pkg in APT_PACKAGES.items() if not which(cmd)})
    if postgres_bindir() is None:
        missing.append("postgresql")
    if missing:
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log = logs / "apt-get.log"
        with log.open("w") as out:
            subprocess.run(["apt-get", "update"], stdout=out, stderr=out, env=env, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", *missing],
                stdout=out,
                stderr=out,
                env=env,
                check=False,
            )
        still = sorted({pkg for cmd, pkg in APT_PACKAGES.items() if not which(cmd)})
        if postgres_bindir() is None:
            still.append("postgresql")
        if still:
            lines = log.read_text().splitlines()
            why = [line for line in lines if line.startswith("E:")] or lines[-3:]
            raise Abort(f"{', '.join(still)} could not be installed with apt-get: {' '.join(why)}")
        if report is not None:
            report.env("installed by the rehearsal", ", ".join(missing))
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Abort("no postgres OS user (Debian's postgresql package makes it)") from None
    if not os.access(SMOKE, os.X_OK):
        raise Abort(f"{SMOKE} is missing: it builds the image with podman")


def build_image(logs: Path, report: Report | None = None) -> None:
    """container-smoke builds the Dockerfile (installing podman if needed) and checks that the
    image answers /healthz; the rehearsal then runs that image itself. podman's layer cache
    makes a rebuild of an unchanged tree quick."""
    port = free_port(18179)
    command = [
        str(SMOKE),
        str(ROOT),
        "--tag",
        IMAGE,
        "--network",
        "host",
        "--env",
        f"PORT={port}",
        "--port",
        str(port),
        "--health",
        "/healthz",
        "--env",
        f"JWT_SECRET={secrets.token_hex(32)}",
        "--env",
        "APP_ENV=production",
        "--timeout",
        "120",
    ]
    print("building the image with container-smoke ...", flush=True)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False)
    took = time.monotonic() - started
    (logs / "container-smoke.log").write_text(result.stdout + result.stderr)
    verdict = next(
        (line for line in result.stdout.splitlines() if line.startswith("RESULT:")), "no RESULT"
    )
    if result.returncode == 2:
        raise Abort(
            "container-smoke could not set up podman or its base images (exit 2): "
            + (result.stderr.strip()[-500:] or verdict)
        )
    if report is not None:
        report.check(
            "image",
            "container-smoke builds the production Dockerfile and the image answers /healthz",
            result.returncode == 0,
            f"{took:.0f} s; {verdict[:160]}",
        )
    if result.returncode != 0:
        raise Abort(f"the image did not build or start (container-smoke exit {result.returncode})")
    print(f"image {IMAGE} ready ({took:.0f} s)", flush=True)
    if report is not None:
        info = podman("image", "inspect", "-f", "{{.Id}} {{.Size}}", IMAGE).split()
        report.env(
            "image",
            f"`{IMAGE}` {info[0][:12]}, {int(info[1]) / 1e6:.0f} MB, built from the "
            "working tree by container-smoke",
        )


def new_database() -> NeonLikeDatabase:
    """A Neon-shaped database, not started yet: a fresh temporary directory, free ports near
    55432 (Postgres) and 56432 (PgBouncer)."""
    bindir = postgres_bindir()
    if bindir is None:
        raise Abort("no PostgreSQL under /usr/lib/postgresql (run preflight first)")
    return NeonLikeDatabase(
        root=Path(tempfile.mkdtemp(prefix="notes-rehearsal-")),
        pg_port=free_port(55432),
        bouncer_port=free_port(56432),
        bindir=bindir,
    )


@contextlib.contextmanager
def neon_like_database(logs: Path) -> Iterator[NeonLikeDatabase]:
    """A started Neon-shaped database; stopped, its files removed and its logs kept in `logs`
    on the way out, also after an error."""
    db = new_database()
    try:
        db.start()
        yield db
    finally:
        db.save_logs(logs)
        problems = db.stop()
        if problems:
            print(f"stopping the database: {'; '.join(problems)}", flush=True)


def service_env(db: NeonLikeDatabase, jwt_secret: str, **extra: str) -> dict[str, str]:
    """What the Koyeb guide sets (deploy/koyeb.md, step 3), with this machine's URLs."""
    return {
        "APP_ENV": "production",
        "WORKER_EMBEDDED": "true",
        "JWT_SECRET": jwt_secret,
        "DATABASE_URL": db.pooled_url,
        # PgBouncer 1.18 (Debian 12's) cannot keep protocol-level prepared statements in
        # transaction mode (1.21 can, and Neon's pooler does): the setting a pooler like it needs.
        "DB_PREPARED_STATEMENTS": "false",
        "DATABASE_URL_DIRECT": db.direct_url,
        # Every rehearsal user signs up from this one machine's address.
        "SIGNUP_PER_CLIENT_PER_HOUR": "0",
        **extra,
    }
