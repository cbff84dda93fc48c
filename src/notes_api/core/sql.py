"""Small dialect helpers: the few statements SQLite and Postgres spell differently."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    bind = session.get_bind()
    return bind.dialect.name


def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports `.on_conflict_do_update/nothing` on either database."""
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def bound_row(table: Table, columns: Iterable[str], name: str) -> dict[str, BindParameter[Any]]:
    """A row of `table` as bind parameters of its columns' types, named `name.format(column)`:
    the VALUES of an INSERT built once (a part of a larger statement, say) whose values come
    at each execution, as `row_params` gives them."""
    return {c: bindparam(name.format(c), type_=table.c[c].type) for c in columns}


def row_params(row: Mapping[str, Any], columns: Iterable[str], name: str) -> dict[str, Any]:
    """The values of `row` for the parameters of a `bound_row` named `name`."""
    return {name.format(c): row[c] for c in columns}
