"""The statements that run on every request or every claim use their indexes on Postgres:
checked with EXPLAIN on a database big enough for the planner to care (20,000 notes in two
organizations, 4,000 queued jobs, statistics fresh)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects import postgresql

from notes_api.core.identity import Caller, Role
from notes_api.core.models import utcnow
from notes_api.jobs import fair
from notes_api.notes import repository
from notes_api.notes.repository import NoteFilters
from tests.conftest import TABLES

NOTES_PER_USER = 2_500


def _plan(conn: psycopg.Connection[Any], stmt: Any, params: dict[str, Any]) -> str:
    compiled = stmt.compile(
        dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True}
    )
    values = {**compiled.params, **params}
    rows = conn.execute("EXPLAIN " + str(compiled), values).fetchall()
    plan = "\n".join(row[0] for row in rows)
    print(plan)
    return plan


@pytest.fixture(scope="module")
def seeded(pg_url: str) -> Iterator[dict[str, Caller]]:
    now = utcnow()
    callers: dict[str, Caller] = {}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} CASCADE")
        for org_name in ("a", "b"):
            org = uuid.uuid4()
            conn.execute(
                "INSERT INTO organizations (id, name, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s)",
                (org, org_name, now, now),
            )
            for n, role in enumerate([Role.ADMIN, Role.AGENT, Role.AGENT, Role.AGENT]):
                user = uuid.uuid4()
                conn.execute(
                    "INSERT INTO users (id, organization_id, email, password_hash, role,"
                    " is_active, created_at, updated_at)"
                    " VALUES (%s, %s, %s, 'x', %s, true, %s, %s)",
                    (user, org, f"{org_name}{n}@example.com", role.value, now, now),
                )
                callers.setdefault(f"{org_name}-{role.value}", Caller(user, org, role))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO notes (id, organization_id, owner_id, raw_text, status,"
                        " attempts, created_at, updated_at) VALUES (%s, %s, %s, %s, 'done',"
                        " 0, %s, %s)",
                        [
                            (uuid.uuid4(), org, user, "text", stamp, stamp)
                            for stamp in (now - timedelta(seconds=i) for i in range(NOTES_PER_USER))
                        ],
                    )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_after,"
                " created_at, updated_at) VALUES (%s, 'summarize', '{}', %s, 1, 5, %s, %s, %s)",
                [
                    (uuid.uuid4(), "queued" if i % 5 == 0 else "done", now, now, now)
                    for i in range(20_000)
                ],
            )
        conn.execute("ANALYZE")
    yield callers
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} CASCADE")


@pytest.mark.parametrize(
    ("who", "index"),
    [("a-AGENT", "ix_notes_owner_created"), ("a-ADMIN", "ix_notes_org_created")],
)
def test_a_page_of_notes_is_an_index_scan_that_stops_at_the_limit(
    pg_url: str, seeded: dict[str, Caller], who: str, index: str
) -> None:
    caller = seeded[who]
    stmt, params = repository.page_query(caller, NoteFilters(), 21)
    with psycopg.connect(pg_url) as conn:
        plan = _plan(conn, stmt.statement, params)
    assert f"Index Scan Backward using {index} on notes" in plan
    assert "Seq Scan on notes" not in plan
    # The page is cut by the index order: no sort of the caller's notes (a sort of the 21
    # rows of the page, above the limit, is fine).
    assert plan.index("Limit") < plan.index(index)


def test_the_next_page_starts_in_the_index_too(pg_url: str, seeded: dict[str, Caller]) -> None:
    caller = seeded["b-AGENT"]
    after = (utcnow() - timedelta(seconds=100), uuid.uuid4())
    stmt, params = repository.page_query(caller, NoteFilters(after=after), 21)
    with psycopg.connect(pg_url) as conn:
        plan = _plan(conn, stmt.statement, params)
    assert "Index Scan Backward using ix_notes_owner_created on notes" in plan
    assert "Sort" not in plan


def test_one_note_is_a_primary_key_lookup(pg_url: str, seeded: dict[str, Caller]) -> None:
    caller = seeded["a-AGENT"]
    stmt = repository.one_statement(caller, for_update=True)
    params = {"note_id": uuid.uuid4(), **repository.tenant_params(caller)}
    with psycopg.connect(pg_url) as conn:
        plan = _plan(conn, stmt.statement, params)
    assert "Index Scan using pk_notes on notes" in plan
    assert "Seq Scan on notes" not in plan


def test_the_fairness_keys_are_read_from_the_index_one_probe_per_key(
    pg_url: str, seeded: dict[str, Caller]
) -> None:
    stmt = fair.shares_statement(["summarize"], now=utcnow(), room=16)
    with psycopg.connect(pg_url) as conn:
        plan = _plan(conn, stmt, {})
    assert "Recursive Union" in plan
    assert "ix_jobs_queued_key_run_after on jobs" in plan
    assert "Seq Scan on jobs" not in plan


def test_a_claim_reads_only_the_queued_jobs_index(pg_url: str, seeded: dict[str, Caller]) -> None:
    shares = {"": 12, "org-a": 4}
    stmt = fair.claim_statement(
        ["summarize"], shares, worker_id="w", lease_seconds=30, now=utcnow()
    )
    with psycopg.connect(pg_url) as conn:
        plan = _plan(conn, stmt, {})
    assert "Index Scan using ix_jobs_queued_key_run_after on jobs" in plan
    assert "Seq Scan on jobs" not in plan
