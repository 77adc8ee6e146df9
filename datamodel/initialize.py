"""Bring the metadata database up to the declared models: the spec's ``system.initialize``.

Creates missing tables, adds missing columns, creates missing indexes, creates the D1
``objects``/``lists`` tables when the SQL adapter is in use, runs seeds, and records every
applied change in ``_nimbus_migrations`` with the model's schema hash. Idempotent: a second run
changes nothing and says so. Removed, renamed or retyped columns are only reported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore import codec
from datastore.adapters.sql import OBJECT_TABLES_DDL
from datastore.contract import Statement

from .registry import registry
from .schema import MIGRATIONS_DDL, MIGRATIONS_TABLE, Change, plan_model
from .seeds import run_seed

if TYPE_CHECKING:
    from .connection import Connection
    from .model import DataModel

__all__ = ["Report", "initialize"]

Progress = Callable[[str, int, int], None]
OBJECT_TABLES_HASH = hashlib.sha256("\n".join(OBJECT_TABLES_DDL).encode()).hexdigest()[:16]


@dataclass
class Report:
    """What initialize did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    tables_created: list[str] = field(default_factory=list)
    columns_added: list[dict[str, str]] = field(default_factory=list)
    indexes_created: list[dict[str, str]] = field(default_factory=list)
    indexes_dropped: list[dict[str, str]] = field(default_factory=list)
    seeds_run: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.tables_created
            or self.columns_added
            or self.indexes_created
            or self.indexes_dropped
            or any(seed["records"] for seed in self.seeds_run)
        )

    def to_json(self) -> dict[str, Any]:
        """The spec's report shape."""
        return {
            "tablesCreated": self.tables_created,
            "columnsAdded": self.columns_added,
            "indexesCreated": self.indexes_created,
            "indexesDropped": self.indexes_dropped,
            "seedsRun": self.seeds_run,
            "warnings": self.warnings,
            "duration": self.duration_ms,
            "dryRun": self.dry_run,
            "changed": self.changed,
            "statements": self.statements,
        }

    def _record(self, change: Change) -> None:
        self.statements.append(change.sql)
        if change.kind == "create_table":
            self.tables_created.append(change.table)
        elif change.kind == "add_column":
            self.columns_added.append({"table": change.table, "column": change.detail})
        elif change.kind == "drop_index":
            self.indexes_dropped.append({"table": change.table, "index": change.detail})
        else:
            self.indexes_created.append({"table": change.table, "index": change.detail})


def _log_statement(model: str, change: Change, hash_: str, stamp: str) -> Statement:
    return (
        f'INSERT INTO {MIGRATIONS_TABLE} (model, "table", change, detail, "sql", schema_hash, '
        "applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [model, change.table, change.kind, change.detail, change.sql, hash_, stamp],
    )


def _object_table_changes(connection: Connection) -> list[Change]:
    """The D1 ``objects``/``lists`` tables, when the SQL adapter keeps the objects."""
    if connection.datastore.adapter.name != "sql":
        return []
    sql = connection.sql
    if sql.table_info("objects") and sql.table_info("lists") and sql.table_info("nimbus_cas_guard"):
        return []
    return [Change("create_table", "objects", "objects/lists", ddl) for ddl in OBJECT_TABLES_DDL]


def initialize(
    connection: Connection,
    models: Iterable[type[DataModel]] | None = None,
    *,
    dry_run: bool = False,
    seeds: bool = True,
    env: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Create and migrate the metadata tables of ``models`` (default: every model), then seed."""
    from .scope import Scope

    started = time.perf_counter()
    report = Report(dry_run=dry_run)
    sql = connection.sql
    models = list(registry if models is None else models)
    stamp = codec.isoformat(dt.datetime.now(dt.UTC))
    if not sql.table_info(MIGRATIONS_TABLE):
        report.statements.append(MIGRATIONS_DDL)
        if not dry_run:
            sql.execute(MIGRATIONS_DDL)
    object_changes = _object_table_changes(connection)
    if object_changes:
        report.tables_created.extend(["objects", "lists"])
        report.statements.extend(change.sql for change in object_changes)
        if not dry_run:
            sql.batch(
                [(change.sql, ()) for change in object_changes]
                + [_log_statement("objects", object_changes[0], OBJECT_TABLES_HASH, stamp)]
            )
    for index, model in enumerate(models, start=1):
        plan = plan_model(sql, model)
        report.warnings.extend(plan.warnings)
        for change in plan.changes:
            report._record(change)
        if plan.changes and not dry_run:
            statements: list[Statement] = [(change.sql, ()) for change in plan.changes]
            statements += [
                _log_statement(plan.model, change, plan.schema_hash, stamp)
                for change in plan.changes
            ]
            sql.batch(statements)  # the changes and their log entries land together
        if progress is not None:
            progress(model._meta.name, index, len(models))
    if seeds and not dry_run:
        system = Scope(connection, None)
        environment = os.environ if env is None else env
        for model in models:
            if not model._meta.seeds:
                continue
            was_empty = model.objects.bind(system).query().include_deleted().count() == 0
            for seed in model._meta.seeds:
                written = run_seed(model, seed, system, environment, was_empty=was_empty)
                report.seeds_run.append(
                    {"model": model._meta.name, "condition": seed.condition, "records": written}
                )
    report.duration_ms = round((time.perf_counter() - started) * 1000)
    return report
