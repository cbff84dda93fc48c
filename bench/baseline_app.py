"""The floor the API is measured against: FastAPI under the same uvicorn settings as
`notes-api serve` (uvloop, httptools, one process, no access log), one route answering a
note-shaped body through a pydantic response model, with no database, auth or middleware.

    python bench/baseline_app.py --port 8001
"""

from __future__ import annotations

import argparse
import enum
import uuid
from datetime import UTC, datetime

import uvicorn
from corpus import note_text
from fastapi import FastAPI
from pydantic import BaseModel

from notes_api.server import SERVER_OPTIONS


class NoteStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class Note(BaseModel):
    """The fields of the service's `NotePublic`, with the same types."""

    id: uuid.UUID
    title: str | None
    raw_text: str
    summary: str | None
    status: NoteStatus
    attempts: int
    error: str | None
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    summarized_at: datetime | None


OWNER = uuid.uuid4()
NOW = datetime.now(UTC)
TEXT = note_text(0)
SUMMARY = TEXT[:240]

app = FastAPI()


@app.get("/notes/{note_id}")
async def get_note(note_id: uuid.UUID) -> Note:
    return Note(
        id=note_id,
        title="Benchmark note",
        raw_text=TEXT,
        summary=SUMMARY,
        status=NoteStatus.DONE,
        attempts=1,
        error=None,
        owner_id=OWNER,
        created_at=NOW,
        updated_at=NOW,
        summarized_at=NOW,
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main(application: FastAPI = app, port: int = 8001) -> None:
    """Serve `application` under `notes-api serve`'s uvicorn settings (`--host`, `--port`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    args = parser.parse_args()
    uvicorn.run(application, host=args.host, port=args.port, log_level="warning", **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
