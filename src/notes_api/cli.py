"""`notes-api serve | worker | migrate | create-admin`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import socket
import sys

import structlog

from notes_api.core.config import Settings, get_settings
from notes_api.core.logging import configure_logging
from notes_api.core.migrations import explain, schema_behind, upgrade
from notes_api.server import SERVER_OPTIONS, Server

log = structlog.get_logger("notes_api.cli")


def _prepare_sqlite_dir(settings: Settings) -> None:
    path = settings.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def migrate(settings: Settings) -> None:
    _prepare_sqlite_dir(settings)
    upgrade(settings.async_direct_url)
    log.info("migrate.done")


class DatabaseUnusable(Exception):
    """The database cannot serve this code; the message is the one line to show."""


def _url_variable(settings: Settings) -> str:
    return "DATABASE_URL_DIRECT" if settings.database_url_direct else "DATABASE_URL"


def check_schema(settings: Settings) -> None:
    """For commands that do not migrate: the schema must already be at this code's head."""
    behind = schema_behind(settings.async_direct_url)
    if behind is not None:
        raise DatabaseUnusable(
            f"Cannot start: {behind}. Run `notes-api migrate` (make migrate) with the same "
            f"{_url_variable(settings)}, or start without --no-migrate."
        )


def port_taken(host: str, port: int) -> str | None:
    """Why HOST:PORT cannot be listened on, or None when it can. Bound the way uvicorn binds
    (SO_REUSEADDR), so a port left in TIME_WAIT by the last run counts as free."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def serve(settings: Settings, *, migrate_first: bool = True) -> int:
    # Checked before anything touches the database: a second `make run` must not migrate the
    # first one's database or start a worker on it only to fail at the bind.
    reason = port_taken(settings.host, settings.port)
    if reason is not None:
        print(
            f"Cannot listen on {settings.host}:{settings.port} ({reason}): is another server "
            f"running there? Stop it, or choose another port with PORT, "
            f"e.g. PORT={settings.port + 1} make run",
            file=sys.stderr,
        )
        return 1
    import uvicorn

    from notes_api.main import create_app

    if migrate_first:
        migrate(settings)
    else:
        check_schema(settings)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        **SERVER_OPTIONS,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.job_shutdown_grace) + 5,
    )
    _Announcing(config).run()
    return 0


class _Announcing(Server):
    """Ends the start-up with where to go next, once the socket listens: the last line of
    `make run` is the one a newcomer reads."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started or not self.servers or not self.servers[0].sockets:
            return
        port = self.servers[0].sockets[0].getsockname()[1]
        host = self.config.host
        # A wildcard address is not one a browser can open; the loopback one serves it too.
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)  # noqa: S104
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        base = f"http://{host}:{port}"
        log.info(
            f"Ready. Swagger UI: {base}/docs . Quick start (README.md): in another terminal "
            f"run `export BASE={base}`, then paste the block."
        )


def worker(settings: Settings) -> None:
    import uvloop

    check_schema(settings)
    uvloop.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    from notes_api.core.db import Database
    from notes_api.jobs.listener import job_channels, listen_forever
    from notes_api.runtime import make_summarizer, make_worker, settle_memory

    db = Database(settings, pool_size=min(settings.db_pool_size, settings.worker_concurrency + 2))
    summarizer = make_summarizer(settings)
    job_worker = make_worker(db, settings, summarizer)
    settle_memory()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, job_worker.stop)
    listener = (
        None
        if db.is_sqlite
        else asyncio.create_task(
            listen_forever(settings.async_direct_url, job_channels(queued=True, finished=False))
        )
    )
    try:
        await job_worker.run()
    finally:
        if listener is not None:
            listener.cancel()
        await summarizer.aclose()
        await db.dispose()


def create_admin(settings: Settings, email: str, password: str | None) -> int:
    from notes_api.bootstrap import create_admin as create
    from notes_api.core.db import Database
    from notes_api.core.schemas import normalize_email
    from notes_api.users.passwords import Passwords

    try:
        email = normalize_email(email)
    except ValueError as exc:
        print(f"Not a usable email address: {exc}", file=sys.stderr)
        return 2
    password = password or os.environ.get("ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            print("Give the password with --password or ADMIN_PASSWORD.", file=sys.stderr)
            return 2
        password = getpass.getpass("Password: ")
    if not 8 <= len(password) <= 128:
        print("The password must be 8 to 128 characters.", file=sys.stderr)
        return 2

    async def run() -> bool:
        db = Database(settings, pool_size=1)
        try:
            return await create(db, settings, Passwords(settings), email, password)
        finally:
            await db.dispose()

    migrate(settings)
    if not asyncio.run(run()):
        print(f"{email} already has an account.", file=sys.stderr)
        return 1
    print(f"Created admin {email} in the default organization.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notes-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the API (with the embedded worker by default)")
    serve_p.add_argument("--no-migrate", action="store_true", help="skip migrations at start")
    sub.add_parser("worker", help="run a standalone worker")
    sub.add_parser("migrate", help="apply database migrations")
    admin_p = sub.add_parser("create-admin", help="create an admin in the default organization")
    admin_p.add_argument("email")
    admin_p.add_argument("--password", help="default: $ADMIN_PASSWORD, or asked for")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.effective_log_format, settings.log_level)
    try:
        return _run(args, settings)
    except DatabaseUnusable as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:
        # Every way the database can be wrong gets one line that says what to check, not
        # the tracebacks of three chained errors; anything else stays a traceback.
        url = settings.database_url_direct or settings.database_url
        reason = explain(exc, url, _url_variable(settings))
        if reason is None:
            raise
        print(reason, file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return serve(settings, migrate_first=not args.no_migrate)
    if args.command == "worker":
        worker(settings)
    elif args.command == "migrate":
        migrate(settings)
    else:
        return create_admin(settings, args.email, args.password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
