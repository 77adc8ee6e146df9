"""Sync fields -> SQLite/D1 DDL, and the difference between models and a live database.

Every column except the primary key is nullable and has no default, so a column added later is
a cheap ``ALTER TABLE ADD COLUMN`` on SQLite and D1. Timestamps are ISO-8601 text, JSON is text.
Only safe changes are planned: missing tables, columns and indexes. A column that was removed,
renamed or retyped in the model is reported as a warning and never touched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from datastore import SQLDatabase
from datastore.contract import Statement
from datastore.sqlbuild import quote_identifier

if TYPE_CHECKING:
    from .model import DataModel
    from .options import Options

__all__ = [
    "MIGRATIONS_TABLE",
    "Change",
    "ModelPlan",
    "column_definition",
    "create_statements",
    "create_tables",
    "index_name",
    "plan_model",
    "schema_hash",
]

MIGRATIONS_TABLE = "_nimbus_migrations"
MIGRATIONS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (\n"
    "    id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    model TEXT NOT NULL,\n"
    '    "table" TEXT NOT NULL,\n'
    "    change TEXT NOT NULL,\n"
    "    detail TEXT NOT NULL,\n"
    '    "sql" TEXT NOT NULL,\n'
    "    schema_hash TEXT NOT NULL,\n"
    "    applied_at TEXT NOT NULL\n"
    ")"
)


def column_definition(meta: Options, column: str) -> str:
    definition = f"{quote_identifier(column)} {meta.fields[column].sql_type}"
    if column == meta.pk_name:
        definition += " PRIMARY KEY NOT NULL"
    return definition


def index_name(meta: Options, columns: tuple[str, ...]) -> str:
    return f"{meta.table}__{'__'.join(column.strip('_') for column in columns)}"


def _index_sql(meta: Options, columns: tuple[str, ...]) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(index_name(meta, columns))} "
        f"ON {quote_identifier(meta.table)} "
        f"({', '.join(quote_identifier(column) for column in columns)})"
    )


def create_statements(meta: Options) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` and its ``CREATE INDEX IF NOT EXISTS`` statements."""
    columns = ",\n    ".join(column_definition(meta, column) for column in meta.sync_fields)
    statements = [f"CREATE TABLE IF NOT EXISTS {quote_identifier(meta.table)} (\n    {columns}\n)"]
    statements.extend(_index_sql(meta, index) for index in meta.indexes)
    return statements


def create_tables(sql: SQLDatabase, models: Iterable[type[DataModel]]) -> None:
    """Create every model's table and indexes if missing, in one batch (idempotent)."""
    statements: list[Statement] = [
        (statement, ()) for model in models for statement in create_statements(model._meta)
    ]
    if statements:
        sql.batch(statements)


def schema_hash(meta: Options) -> str:
    """A short hash of what the metadata table should look like (table, columns, indexes)."""
    shape = {
        "table": meta.table,
        "columns": [[column, meta.fields[column].sql_type] for column in meta.sync_fields],
        "primary_key": meta.pk_name,
        "indexes": [list(index) for index in meta.indexes],
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Change:
    """One planned change: ``kind`` is ``create_table``, ``add_column`` or ``create_index``."""

    kind: str
    table: str
    detail: str
    sql: str


@dataclass
class ModelPlan:
    model: str
    table: str
    schema_hash: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _existing_indexes(sql: SQLDatabase, table: str) -> set[str]:
    rows = sql.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", [table]
    )
    return {row["name"] for row in rows}


def plan_model(sql: SQLDatabase, model: type[DataModel]) -> ModelPlan:
    """What it takes to bring the live table of ``model`` up to its declaration."""
    meta = model._meta
    plan = ModelPlan(meta.name, meta.table, schema_hash(meta))
    columns = {column.name: column for column in sql.table_info(meta.table)}
    if not columns:
        create_table, *indexes = create_statements(meta)
        plan.changes.append(Change("create_table", meta.table, meta.table, create_table))
        for index, statement in zip(meta.indexes, indexes, strict=True):
            plan.changes.append(
                Change("create_index", meta.table, index_name(meta, index), statement)
            )
        return plan
    for column in meta.sync_fields:
        expected = meta.fields[column].sql_type or ""
        live = columns.get(column)
        if live is None:
            plan.changes.append(
                Change(
                    "add_column",
                    meta.table,
                    column,
                    f"ALTER TABLE {quote_identifier(meta.table)} "
                    f"ADD COLUMN {column_definition(meta, column)}",
                )
            )
        elif live.type.upper() != expected.upper():
            plan.warnings.append(
                f"{meta.table}.{column} is {live.type or 'untyped'} in the database but "
                f"{expected} in {meta.name}: retyping is not applied; migrate it by hand"
            )
    for column in columns:
        if column not in meta.sync_fields:
            plan.warnings.append(
                f"{meta.table}.{column} is not a sync field of {meta.name} (removed or "
                "renamed?): it is left in place; drop it by hand once unused"
            )
    existing = _existing_indexes(sql, meta.table)
    for index in meta.indexes:
        name = index_name(meta, index)
        if name not in existing:
            plan.changes.append(Change("create_index", meta.table, name, _index_sql(meta, index)))
    return plan
