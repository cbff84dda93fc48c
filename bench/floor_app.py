"""The database floor: the service's three measured routes as the least code that could
answer them from the same Postgres tables. FastAPI under the same uvicorn settings as
`notes-api serve`, psycopg in autocommit on a fixed pool of 10 connections, one statement
per request (a note by id, a page of notes, an INSERT of a note), and the baseline's
response model. No caller, tenancy rule, ORM, middleware, limits, job or event: what the
service does above this is what its figures pay for.

    BENCH_FLOOR_DATABASE=postgresql://... python bench/floor_app.py --port 8002
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from baseline_app import Note, main
from fastapi import FastAPI, Query
from psycopg.rows import dict_row
from pydantic import BaseModel

POOL_SIZE = 10  # the service's DB_POOL_SIZE
_COLUMNS = (
    "id, title, raw_text, summary, status, attempts, error, owner_id, created_at, updated_at, "
    "summarized_at"
)
_ONE = f"SELECT {_COLUMNS} FROM notes WHERE id = %(id)s"
_PAGE = f"SELECT {_COLUMNS} FROM notes ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
_ADD = (
    "INSERT INTO notes (id, organization_id, owner_id, title, raw_text, status, attempts, "
    "created_at, updated_at) VALUES (%(id)s, %(organization_id)s, "
    f"%(owner_id)s, %(title)s, %(raw_text)s, 'queued', 0, %(now)s, %(now)s) RETURNING {_COLUMNS}"
)


class Page(BaseModel):
    items: list[Note]
    next_cursor: str | None


class NoteIn(BaseModel):
    raw_text: str
    title: str | None = None


pool: asyncio.Queue[psycopg.AsyncConnection[dict[str, Any]]] = asyncio.Queue()
owner: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["BENCH_FLOOR_DATABASE"]
    for _ in range(POOL_SIZE):
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, prepare_threshold=None, row_factory=dict_row
        )
        await conn.execute("SET TIME ZONE 'UTC'")
        pool.put_nowait(conn)
    conn = await pool.get()
    row = await (
        await conn.execute("SELECT organization_id, owner_id FROM notes LIMIT 1")
    ).fetchone()
    pool.put_nowait(conn)
    owner.update(row or {})
    yield


app = FastAPI(lifespan=lifespan)


async def _fetch(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    conn = await pool.get()
    try:
        return await (await conn.execute(sql, params)).fetchall()
    finally:
        pool.put_nowait(conn)


@app.get("/notes/{note_id}")
async def get_note(note_id: uuid.UUID) -> Note:
    return Note.model_validate((await _fetch(_ONE, {"id": note_id}))[0])


@app.get("/notes")
async def list_notes(limit: int = Query(default=20, ge=1, le=100)) -> Page:
    rows = await _fetch(_PAGE, {"limit": limit + 1})
    return Page.model_validate(
        {"items": rows[:limit], "next_cursor": "more" if len(rows) > limit else None}
    )


@app.post("/notes", status_code=202)
async def create_note(body: NoteIn) -> Note:
    params = {**owner, "id": uuid.uuid4(), "now": datetime.now(UTC), **body.model_dump()}
    return Note.model_validate((await _fetch(_ADD, params))[0])


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    main(app, 8002)
