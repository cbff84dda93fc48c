"""Fixtures for tests that run the service as real processes on the real Postgres."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.harness import Processes, truncate


@pytest.fixture
def procs() -> Iterator[Processes]:
    group = Processes()
    try:
        yield group
    finally:
        group.kill_all()


@pytest.fixture
def pg(pg_url: str) -> str:
    """The test Postgres, emptied for this test."""
    truncate(pg_url)
    return pg_url
