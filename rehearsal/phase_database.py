"""Phase 1: the Neon-shaped database answers only TLS and SCRAM, pools transactions, and
refuses what Neon refuses."""

from __future__ import annotations

import psycopg
from context import Context


def check_database(ctx: Context) -> None:
    r, db = ctx.report, ctx.database
    phase = "Neon-shaped DB"
    r.check(
        phase,
        "the role's password is stored as a SCRAM-SHA-256 secret made by the server",
        db.facts["stored_secret_is_scram"] and db.facts["stored_secret_matches_password"],
        "pg_authid.rolpassword = SCRAM-SHA-256$4096:…, verified against the password; "
        "the same secret is PgBouncer's auth_file entry",
    )

    def attempt(url: str) -> tuple[bool, str]:
        try:
            with psycopg.connect(url, prepare_threshold=None, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT s.ssl, s.version, s.cipher, current_setting('password_encryption') "
                    "FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
                ).fetchone()
                return True, f"ssl={row[0]} {row[1]} {row[2]}" if row else "?"
        except psycopg.Error as exc:
            return False, " ".join(str(exc).split())

    ok, how = attempt(db.direct_url)
    r.check(
        phase,
        "direct URL (`sslmode=require&channel_binding=require`) connects over TLS "
        "with SCRAM channel binding",
        ok and "ssl=True" in how,
        how,
    )
    ok, how = attempt(db.pooled_url)
    r.check(
        phase,
        "pooled URL (`sslmode=require`) connects through PgBouncer over TLS",
        ok and "ssl=True" in how,
        how + " (server side of PgBouncer's server connection)",
    )
    servers = db.console("SHOW SERVERS")
    tls = {s.get("tls", "") for s in servers}
    r.check(
        phase,
        "PgBouncer → Postgres is TLS too (server_tls_sslmode = require)",
        bool(servers) and all(tls),
        f"SHOW SERVERS tls: {', '.join(sorted(tls))}",
    )
    ok, how = attempt(db.pooled_url_with_channel_binding())
    r.check(
        phase,
        "known limit: PgBouncer refuses `channel_binding=require` (it offers SCRAM "
        "without channel binding), so the pooled URL carries `sslmode=require` only",
        not ok and "channel binding" in how,
        how or "it connected: PgBouncer now binds?",
    )
    plain_direct = db.direct_url.replace(
        "sslmode=require&channel_binding=require", "sslmode=disable"
    )
    plain_pooled = db.pooled_url.replace("sslmode=require", "sslmode=disable")
    for label, url, expect in (
        ("direct", plain_direct, "no encryption"),
        ("pooled", plain_pooled, "SSL required"),
    ):
        ok, how = attempt(url)
        r.check(phase, f"{label}: a plaintext connection is refused", not ok and expect in how, how)
    for label, url in (("direct", db.direct_url), ("pooled", db.pooled_url)):
        ok, how = attempt(url.replace(db.password, "wrong" + db.password[5:]))
        r.check(phase, f"{label}: a wrong password is refused", not ok and "auth" in how, how)
    config = {row["key"]: row["value"] for row in db.console("SHOW CONFIG")}
    wanted = {
        "pool_mode": "transaction",
        "auth_type": "scram-sha-256",
        "client_tls_sslmode": "require",
        "server_tls_sslmode": "require",
    }
    seen = {k: config.get(k) for k in wanted}
    r.check(
        phase,
        "PgBouncer runs in transaction mode with TLS and SCRAM for clients",
        seen == wanted,
        ", ".join(f"{k}={v}" for k, v in seen.items()),
    )
    mask = db.password
    r.section(
        "The Neon-shaped database",
        f"""A throwaway PostgreSQL {db.facts.get("postgres_version", "")} cluster (`initdb` into a
temporary directory, run as the `postgres` OS user on port {db.pg_port}; the machine's own
cluster on 5432 is not touched) and {db.facts.get("pgbouncer_version", "PgBouncer")} on port
{db.bouncer_port}, both with a self-signed certificate made by openssl for this run.

- Postgres: `ssl = on`, `password_encryption = scram-sha-256`; `pg_hba.conf` has
  `hostssl … scram-sha-256` and `hostnossl … reject` (the only other line is peer
  authentication on the cluster's private Unix socket, which the rehearsal uses to create
  the role and read `pg_authid`).
- PgBouncer: `pool_mode = transaction`, `auth_type = scram-sha-256` with an `auth_file` that
  holds the SCRAM secret the server made (PgBouncer passes SCRAM through to Postgres with
  it), `client_tls_sslmode = require`, `server_tls_sslmode = require`.
- The service got the URLs in the form Neon's console gives them:
  - `DATABASE_URL_DIRECT` = `{db.direct_url.replace(mask, "•••")}`
  - `DATABASE_URL` = `{db.pooled_url.replace(mask, "•••")}`

**Channel binding through the pooler.** PgBouncer offers SCRAM-SHA-256 but not
SCRAM-SHA-256-PLUS: its changelog says so since 1.12 ("PgBouncer does not support channel
binding. This change just fixes support for clients that offer it"), and 1.18 here refuses
`channel_binding=require` (see the checks). So the pooled URL here carries `sslmode=require`
only. Neon's `-pooler` endpoint is different: a client never talks to PgBouncer there but to
the Neon proxy, which terminates TLS and does the SCRAM exchange (with channel binding) itself
and then hands the session to a PgBouncer next to the compute; that is why Neon's pooled URL
can say `channel_binding=require`. Neon's PgBouncer is also newer (1.22+, with protocol-level
prepared statements); 1.18 here has none, so the service runs here with
`DB_PREPARED_STATEMENTS=false`, the setting such a pooler needs. The direct URL is exact:
libpq refuses to connect unless the server completes SCRAM with channel binding, and the
service connected.
""",
    )
