"""Every table has one owner: the only code that reads or writes it (DESIGN.md, "Each table
has one owning repository module"). This reads the source of `src/notes_api/` and fails when
any other module touches a table. No database.

What counts as touching a table, in a module that does not own it:
- using a name that stands for the table: its mapped class (`Note`), its `Table` (`notes`),
  or a statement or condition built on it (`ACTIVE_MEMBER`, a prebuilt `select`), whether
  imported by name (`from notes_api.notes.models import Note`) or reached through its
  module (`models.Note`). The names are found by importing every module of the package and
  asking SQLAlchemy which tables each of its globals stands for, so a new model, a new
  `Table` alias or a new prebuilt statement is covered without editing this file. A name
  written only in a type annotation is no query and does not count;
- naming the table in SQL text (`"... FROM notes ..."`, `"UPDATE jobs ..."`).

What it does not see: a query built by a function of the owner and run elsewhere (that is
the point: the owner builds it), and an ORM object handed out by the owner and changed by
its receiver (the owner chose to hand it out).

Migrations and the modules that define the tables (`*/models.py`, and `notes_api/models.py`
which gathers them for Alembic) are exempt. Every other exemption is in `EXEMPT`, per
module, table and name, with its reason."""

from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Table
from sqlalchemy.sql import ClauseElement, visitors

import notes_api
from notes_api.core.models import Base

SRC = Path(notes_api.__file__).parent

# Table -> the modules that own it (paths under src/notes_api/; a path ending in "/" is a
# whole package). One owner per table. The models module that defines a table is implied.
OWNERS: dict[str, tuple[str, ...]] = {
    "notes": ("notes/repository.py",),
    "idempotency_keys": ("notes/idempotency.py",),
    "users": ("users/",),
    "organizations": ("organizations/",),
    "organization_usage": ("summarize/",),
    "refresh_tokens": ("users/",),
    "login_attempts": ("auth/",),
    "note_events": ("events/",),
    "note_event_counters": ("events/",),
    "webhook_endpoints": ("webhooks/",),
    "webhook_deliveries": ("webhooks/",),
    "jobs": ("jobs/",),
    "note_usage": ("summarize/",),
    "rate_limit_counters": ("limits/",),
}

# (module, table) -> (the names it may use, why). Keep it short: each line is a debt or a
# deliberate trade, and says which.
EXEMPT: dict[tuple[str, str], tuple[frozenset[str], str]] = {}

# Modules that define tables (and `notes_api/models.py`, which imports them all for Alembic).
DEFINITIONS = {"models.py"} | {str(p.relative_to(SRC)) for p in SRC.glob("*/models.py")}

# SQL keywords are written in capitals here; prose ("based on notes") does not match.
SQL_NAMING = r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|ON)\s+\"?{table}\b"


@functools.cache
def modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages([str(SRC)], prefix="notes_api.")
        if not info.ispkg
    )


def path_of(module: str) -> str:
    return module.removeprefix("notes_api.").replace(".", "/") + ".py"


def tables_of(value: Any) -> set[str]:
    """The tables a module global stands for: a mapped class, a Table, or a clause (a
    statement, a condition, a column) built on tables."""
    if isinstance(value, type):
        table = getattr(value, "__table__", None)
        return {table.name} if isinstance(table, Table) and issubclass(value, Base) else set()
    if isinstance(value, Table):
        return {value.name}
    if not isinstance(value, ClauseElement):
        return set()
    found = set()
    for element in visitors.iterate(value):
        if isinstance(element, Table):
            found.add(element.name)
        elif isinstance(element, Column) and isinstance(element.table, Table):
            found.add(element.table.name)
    return found


@functools.cache
def table_names() -> dict[tuple[str, str], set[str]]:
    """(module, global name) -> the tables it stands for, over the whole package."""
    names = {}
    for module in modules():
        for name, value in vars(importlib.import_module(module)).items():
            if tables := tables_of(value):
                names[(module, name)] = tables
    return names


@dataclass(frozen=True)
class Touch:
    module: str  # its path under src/notes_api/
    table: str
    name: str  # the name used, or "SQL text"
    line: int

    def __str__(self) -> str:
        return f"src/notes_api/{self.module}:{self.line} touches {self.table} ({self.name})"


def _annotations(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside type annotations."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        notes: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            notes.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            notes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for note in notes:
            if note is not None:
                inside.update(id(sub) for sub in ast.walk(note))
    return inside


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            found.add(id(body[0].value))
    return found


def touches(
    module: str, source: str, names: dict[tuple[str, str], set[str]], known: set[str]
) -> Iterator[Touch]:
    """The tables `module`'s source touches, by name or in SQL text."""
    path = path_of(module)
    tree = ast.parse(source)
    skip = _annotations(tree) | _docstrings(tree)
    # Local name -> (module, name) for names imported from a module, or (module, "") for a
    # module imported whole.
    local: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                bound = alias.asname or alias.name
                local[bound] = (target, "") if target in known else (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    local[alias.asname] = (alias.name, "")
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        ref = None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in local:
            ref = local[node.id]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in local
            and local[node.value.id][1] == ""
        ):
            ref = (local[node.value.id][0], node.attr)
        if ref is not None and ref[1]:
            for table in names.get(ref, ()):
                yield Touch(path, table, ref[1], node.lineno)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for table in OWNERS:
                if re.search(SQL_NAMING.format(table=table), node.value):
                    yield Touch(path, table, "SQL text", node.lineno)


def owns(path: str, table: str) -> bool:
    return path in DEFINITIONS or any(
        path == owner or (owner.endswith("/") and path.startswith(owner)) for owner in OWNERS[table]
    )


def trespasses(sources: dict[str, str] | None = None) -> list[Touch]:
    """Every touch of a table outside its owner and not exempt. `sources` replaces the
    source of some modules (the tests of this test)."""
    names = table_names()
    known = set(modules())
    found = []
    for module in sorted(known):
        path = path_of(module)
        source = (sources or {}).get(path) or (SRC / path).read_text()
        for touch in touches(module, source, names, known):
            exempt = EXEMPT.get((touch.module, touch.table))
            if owns(touch.module, touch.table) or (exempt and touch.name in exempt[0]):
                continue
            found.append(touch)
    return sorted(set(found), key=lambda t: (t.module, t.line, t.table))


def test_every_table_is_touched_only_by_its_owner() -> None:
    found = trespasses()
    assert not found, "Tables touched outside their owner (OWNERS):\n" + "\n".join(map(str, found))


def test_every_table_has_an_owner_and_every_owner_exists() -> None:
    assert set(OWNERS) == set(Base.metadata.tables)
    for owners in OWNERS.values():
        for owner in owners:
            assert (SRC / owner).exists(), owner


def test_every_exemption_is_still_needed() -> None:
    """An exemption nothing uses any more goes, so the list stays the debt that is left."""
    names = table_names()
    known = set(modules())
    used = set()
    for module in known:
        path = path_of(module)
        for touch in touches(module, (SRC / path).read_text(), names, known):
            used.add((touch.module, touch.table, touch.name))
    for (path, table), (allowed, _why) in EXEMPT.items():
        for name in allowed:
            assert (path, table, name) in used, f"{path}: {table} ({name}) is exempt for nothing"


QUERY_ON_NOTES = """
from sqlalchemy import select
from notes_api.notes.models import Note


def newest(organization_id):
    return select(Note).where(Note.organization_id == organization_id)
"""

QUERY_THROUGH_MODULE = """
from sqlalchemy import func, select
from notes_api.notes import repository


def count():
    return select(func.count()).select_from(repository.notes)
"""

RAW_SQL = """
from sqlalchemy import text

COUNT = text("SELECT count(*) FROM jobs WHERE status = 'queued'")
"""

ANNOTATION_ONLY = """
from notes_api.users.models import User


def name_of(user: User) -> str:
    return user.email
"""


@pytest.mark.parametrize(
    ("source", "table"),
    [(QUERY_ON_NOTES, "notes"), (QUERY_THROUGH_MODULE, "notes"), (RAW_SQL, "jobs")],
    ids=["model-imported", "table-through-its-module", "sql-text"],
)
def test_a_query_outside_the_owner_fails(source: str, table: str) -> None:
    module = "organizations/service.py"
    found = trespasses({module: (SRC / module).read_text() + source})
    assert {(t.module, t.table) for t in found if t.module == module} == {(module, table)}


def test_a_type_annotation_is_no_query() -> None:
    module = "organizations/service.py"
    found = trespasses({module: (SRC / module).read_text() + ANNOTATION_ONLY})
    assert [t for t in found if t.module == module] == []
