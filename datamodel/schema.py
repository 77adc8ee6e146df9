"""Sync fields -> SQLite/D1 DDL, and the difference between models and a live database.

Every column except the primary key is nullable and has no default, so a column added later is
a cheap ``ALTER TABLE ADD COLUMN`` on SQLite and D1. Timestamps are ISO-8601 text, JSON is text.
Only safe changes are planned: missing tables, columns and indexes, and dropping a unique index
the model no longer declares (it would refuse saves the model allows). A column that was
removed, renamed or retyped in the model is reported as a warning and never touched.

Each unique constraint (``unique=True``, ``Meta.unique_together``) has a ``CREATE UNIQUE INDEX``
named ``{table}__uniq__{columns}``, over every row; a constraint released on soft delete
(``release_on_delete=True`` on a soft-delete model) holds among live rows only, with the partial
index ``{table}__uniq_live__{columns} ... WHERE "deleted_at" IS NULL``. KV keeps the constraint;
the index is the metadata table's own guard, and a duplicate it finds is reported, never fixed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore import SQLDatabase
from datastore.contract import Statement
from datastore.sqlbuild import quote_identifier

if TYPE_CHECKING:
    from .constraints import UniqueConstraint
    from .model import DataModel
    from .options import Options

__all__ = [
    "MIGRATIONS_TABLE",
    "Change",
    "DuplicateGroup",
    "Duplicates",
    "ModelPlan",
    "column_definition",
    "create_statements",
    "create_tables",
    "existing_indexes",
    "find_duplicates",
    "index_name",
    "live_only",
    "plan_model",
    "schema_hash",
    "unique_index_name",
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
    """A column of the metadata table as ``CREATE TABLE`` and ``ADD COLUMN`` write it."""
    definition = f"{quote_identifier(column)} {meta.fields[column].sql_type}"
    if column == meta.pk_name:
        definition += " PRIMARY KEY NOT NULL"
    return definition


def index_name(meta: Options, columns: tuple[str, ...]) -> str:
    """``{table}__{column}__{column}...``: the name of a declared index."""
    return f"{meta.table}__{_joined(columns)}"


def _joined(columns: tuple[str, ...]) -> str:
    return "__".join(column.strip("_") for column in columns)


def live_only(meta: Options, constraint: UniqueConstraint) -> bool:
    """Whether ``constraint`` holds among live rows only (released when an object is deleted)."""
    return constraint.release_on_delete and meta.soft_delete


UNIQUE_PREFIXES = ("__uniq__", "__uniq_live__")


def unique_index_name(meta: Options, constraint: UniqueConstraint) -> str:
    """``{table}__uniq__{columns}``, or ``{table}__uniq_live__{columns}`` for a partial one."""
    prefix = UNIQUE_PREFIXES[1] if live_only(meta, constraint) else UNIQUE_PREFIXES[0]
    return f"{meta.table}{prefix}{_joined(constraint.fields)}"


def _unique_index_sql(meta: Options, constraint: UniqueConstraint) -> str:
    where = ' WHERE "deleted_at" IS NULL' if live_only(meta, constraint) else ""
    name = quote_identifier(unique_index_name(meta, constraint))
    return (
        f"CREATE UNIQUE INDEX IF NOT EXISTS {name} "
        f"ON {quote_identifier(meta.table)} "
        f"({', '.join(quote_identifier(column) for column in constraint.fields)}){where}"
    )


def _index_sql(meta: Options, columns: tuple[str, ...]) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(index_name(meta, columns))} "
        f"ON {quote_identifier(meta.table)} "
        f"({', '.join(quote_identifier(column) for column in columns)})"
    )


def create_statements(meta: Options) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS``, then its ``CREATE INDEX IF NOT EXISTS`` statements (the
    declared indexes, then one ``UNIQUE`` index per unique constraint)."""
    columns = ",\n    ".join(column_definition(meta, column) for column in meta.sync_fields)
    statements = [f"CREATE TABLE IF NOT EXISTS {quote_identifier(meta.table)} (\n    {columns}\n)"]
    statements.extend(_index_sql(meta, index) for index in meta.indexes)
    statements.extend(_unique_index_sql(meta, unique) for unique in meta.unique_constraints)
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
    shape: dict[str, Any] = {
        "table": meta.table,
        "columns": [[column, meta.fields[column].sql_type] for column in meta.sync_fields],
        "primary_key": meta.pk_name,
        "indexes": [list(index) for index in meta.indexes],
    }
    if meta.unique_constraints:  # absent otherwise: the hash of a model without any is unchanged
        shape["unique"] = [
            [list(unique.fields), live_only(meta, unique)] for unique in meta.unique_constraints
        ]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Change:
    """One planned change: ``kind`` is ``create_table``, ``add_column``, ``create_index``,
    ``create_unique_index`` (which ``constraint`` names) or ``drop_index`` (a unique index over
    ``columns`` that no constraint declares any more). ``detail`` is the column or index name."""

    kind: str
    table: str
    detail: str
    sql: str
    constraint: UniqueConstraint | None = None
    columns: tuple[str, ...] = ()


@dataclass
class ModelPlan:
    """What ``plan_model`` found: the changes to apply, and what it only reports."""

    model: str
    table: str
    schema_hash: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def existing_indexes(sql: SQLDatabase, table: str) -> dict[str, str]:
    """The live indexes of ``table``: name -> ``CREATE`` statement (empty for automatic ones)."""
    rows = sql.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", [table]
    )
    return {row["name"]: row["sql"] or "" for row in rows}


_INDEXED_COLUMNS = re.compile(r"\bON\s+\S+\s*\(([^)]*)\)", re.IGNORECASE)


def _obsolete_unique_indexes(meta: Options, existing: dict[str, str]) -> list[Change]:
    """Unique indexes this project created (by name) that no declared constraint matches."""
    declared = {unique_index_name(meta, unique) for unique in meta.unique_constraints}
    changes = []
    for name, statement in sorted(existing.items()):
        ours = any(name.startswith(f"{meta.table}{prefix}") for prefix in UNIQUE_PREFIXES)
        if not ours or name in declared or not statement.upper().startswith("CREATE UNIQUE"):
            continue
        columns = _indexed_columns(statement)
        changes.append(
            Change(
                "drop_index",
                meta.table,
                name,
                f"DROP INDEX IF EXISTS {quote_identifier(name)}",
                columns=columns,
            )
        )
    return changes


def _indexed_columns(statement: str) -> tuple[str, ...]:
    """The columns a ``CREATE [UNIQUE] INDEX`` statement indexes (empty if it cannot tell)."""
    match = _INDEXED_COLUMNS.search(statement)
    if match is None:
        return ()
    return tuple(column.strip().strip('"') for column in match.group(1).split(","))


def _drop_column_sql(meta: Options, column: str, existing: dict[str, str]) -> str:
    """How to drop ``column`` by hand: its indexes first (SQLite refuses otherwise)."""
    table = quote_identifier(meta.table)
    statements = [
        f"DROP INDEX IF EXISTS {quote_identifier(name)};"
        for name, statement in sorted(existing.items())
        if column in _indexed_columns(statement)
    ]
    statements.append(f"ALTER TABLE {table} DROP COLUMN {quote_identifier(column)};")
    return f"drop it by hand: `{' '.join(statements)}`"


def _create_unique(meta: Options, unique: UniqueConstraint) -> Change:
    return Change(
        "create_unique_index",
        meta.table,
        unique_index_name(meta, unique),
        _unique_index_sql(meta, unique),
        constraint=unique,
        columns=unique.fields,
    )


def plan_model(sql: SQLDatabase, model: type[DataModel]) -> ModelPlan:
    """What it takes to bring the live table of ``model`` up to its declaration."""
    meta = model._meta
    plan = ModelPlan(meta.name, meta.table, schema_hash(meta))
    columns = {column.name: column for column in sql.table_info(meta.table)}
    if not columns:
        create_table = create_statements(meta)[0]
        plan.changes.append(Change("create_table", meta.table, meta.table, create_table))
        for index in meta.indexes:
            plan.changes.append(
                Change("create_index", meta.table, index_name(meta, index), _index_sql(meta, index))
            )
        plan.changes.extend(_create_unique(meta, unique) for unique in meta.unique_constraints)
        return plan
    live_keys = [column.name for column in columns.values() if column.primary_key]
    if live_keys != [meta.pk_name]:
        plan.warnings.append(
            f"{meta.table}'s primary key is {', '.join(live_keys) or 'none'} in the database but "
            f"{meta.pk_name} in {meta.name}: a table's primary key cannot be changed in place, "
            f"so nothing is applied to {meta.table}. Its rows are an index of KV: run "
            f"`DROP TABLE {quote_identifier(meta.table)}`, then `manage.py nimbus_initialize` "
            "(it creates the table) and `manage.py nimbus_sync --repair` (it rebuilds every "
            "row from KV)"
        )
        return plan
    existing = existing_indexes(sql, meta.table)
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
                f"{expected} in {meta.name}: retyping is not applied (SQLite and D1 cannot "
                "change a column's type, and its rows keep comparing as the old type). To "
                f"retype it, {_drop_column_sql(meta, column, existing)}, then run `manage.py "
                f"nimbus_initialize`: it adds the column as {expected} and backfills it from "
                "KV (until then, filters on it find nothing)"
            )
    for column in columns:
        if column not in meta.sync_fields:
            plan.warnings.append(
                f"{meta.table}.{column} is not a sync field of {meta.name} (removed or "
                "renamed?): it is left in place. If renamed, declare the new name as a sync "
                "field and run `manage.py nimbus_initialize`, which adds its column and "
                "backfills it from KV (objects stored before the rename keep their value "
                "under the old name in KV until they are saved again). Once nothing reads "
                f"the old column, {_drop_column_sql(meta, column, existing)}"
            )
    for index in meta.indexes:
        name = index_name(meta, index)
        if name not in existing:
            plan.changes.append(Change("create_index", meta.table, name, _index_sql(meta, index)))
    for unique in meta.unique_constraints:
        if unique_index_name(meta, unique) not in existing:
            plan.changes.append(_create_unique(meta, unique))
    plan.changes.extend(_obsolete_unique_indexes(meta, existing))
    return plan


@dataclass(frozen=True)
class DuplicateGroup:
    """Values that ``count`` rows hold; ``ids`` are the first of their primary keys."""

    values: dict[str, Any]
    ids: list[Any]
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "ids": self.ids, "count": self.count}


@dataclass(frozen=True)
class Duplicates:
    """The values of a unique constraint held by more than one row of a metadata table:
    ``total`` such values in all, the first ``groups`` of them in order."""

    constraint: UniqueConstraint
    groups: list[DuplicateGroup]
    total: int


def _unique_filter(meta: Options, constraint: UniqueConstraint) -> str:
    """The rows a unique index covers: NULLs repeat freely, deleted rows count unless the
    constraint is released on delete."""
    conditions = [f"{quote_identifier(column)} IS NOT NULL" for column in constraint.fields]
    if live_only(meta, constraint):
        conditions.append('"deleted_at" IS NULL')
    return " AND ".join(conditions)


def find_duplicates(
    sql: SQLDatabase,
    meta: Options,
    constraint: UniqueConstraint,
    *,
    limit: int = 20,
    ids_per_group: int = 10,
) -> Duplicates:
    """What would refuse ``constraint``'s unique index on the live table: the first ``limit``
    duplicated values with up to ``ids_per_group`` ids each, and how many values in all.

    One round trip (two statements in a batch) and memory bounded by ``limit`` and
    ``ids_per_group`` however many rows repeat a value; the database scans the table.
    """
    table, pk = quote_identifier(meta.table), quote_identifier(meta.pk_name)
    columns = ", ".join(quote_identifier(column) for column in constraint.fields)
    where = _unique_filter(meta, constraint)
    ranked = (
        f'SELECT {columns}, {pk} AS "_id", COUNT(*) OVER (PARTITION BY {columns}) AS "_count", '
        f'ROW_NUMBER() OVER (PARTITION BY {columns} ORDER BY {pk}) AS "_rank" '
        f"FROM {table} WHERE {where}"
    )
    rows, totals = sql.batch(
        [
            (
                f'SELECT {columns}, "_id", "_count" FROM ({ranked}) '
                f'WHERE "_count" > 1 AND "_rank" <= ? ORDER BY {columns}, "_id" LIMIT ?',
                [ids_per_group, limit * ids_per_group],
            ),
            (
                f'SELECT COUNT(*) AS "total" FROM (SELECT 1 FROM {table} WHERE {where} '
                f"GROUP BY {columns} HAVING COUNT(*) > 1)",
                [],
            ),
        ]
    )
    groups: dict[tuple[Any, ...], DuplicateGroup] = {}
    for row in rows:
        values = tuple(row[column] for column in constraint.fields)
        group = groups.get(values)
        if group is None:
            if len(groups) == limit:
                break
            group = groups[values] = DuplicateGroup(
                dict(zip(constraint.fields, values, strict=True)), [], row["_count"]
            )
        group.ids.append(row["_id"])
    return Duplicates(constraint, list(groups.values()), totals[0]["total"] if totals else 0)
