"""Bring the metadata database up to the declared models: the spec's ``system.initialize``.

Creates missing tables, adds missing columns, creates missing indexes, creates the D1
``objects``/``lists`` tables when the SQL adapter is in use, runs seeds, and records every
applied change in ``_nimbus_migrations`` with the model's schema hash. Idempotent: a second run
changes nothing and says so. Removed, renamed or retyped columns are only reported.

Per model, in this order:

1. tables, columns and declared indexes are created (and unique indexes no constraint declares
   any more dropped), with their log entries in the same batch;
2. a column added to an existing table is *backfilled*: every KV object of the model is
   streamed in batches and its row rewritten with the version-guarded upsert of the save
   protocol, so a filter on the new column finds old objects too (an object without the field
   gets NULL). The ``backfill`` entry is logged only once it is done: an interrupted backfill
   (its ``add_column`` logged, its ``backfill`` not) is resumed by the next run;
3. a missing unique index is created only if no two rows already hold the same values; if some
   do, it is *refused*: the report lists the duplicates and what to do, and the other changes
   still apply. Checking after step 2 means a new unique column is checked on the old objects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore import IntegrityError, codec
from datastore.adapters.sql import OBJECT_TABLES_DDL
from datastore.contract import Statement

from .registry import registry
from .reservations import claim_existing
from .schema import (
    MIGRATIONS_DDL,
    MIGRATIONS_TABLE,
    Change,
    Duplicates,
    ModelPlan,
    find_duplicates,
    plan_model,
)
from .scope import Scope
from .seeds import run_seed
from .sync import project_row, upsert_statements

if TYPE_CHECKING:
    from .connection import Connection
    from .model import DataModel
    from .options import Options

__all__ = ["PROGRESS_EVERY", "Report", "backfill", "initialize"]

Progress = Callable[[str, int, int], None]
BackfillProgress = Callable[[str, int], None]
OBJECT_TABLES_HASH = hashlib.sha256("\n".join(OBJECT_TABLES_DDL).encode()).hexdigest()[:16]
PROGRESS_EVERY = 1000  # a backfill reports its progress every this many objects
SAMPLE = 20  # duplicated values listed per refused unique index

REFUSED_HINT = (
    "Existing objects already share these values, so the unique index was not created (the "
    "other changes were applied). Decide which object keeps each value and change the others' "
    "values through the model layer (deleting one frees its value only on a model without "
    "soft delete, or with release_on_delete=True; `manage.py nimbus_sync` lists them too), "
    "then run `manage.py nimbus_initialize` again to create the index."
)


@dataclass
class Report:
    """What initialize did (or, with ``dry_run``, would do).

    ``backfills`` has one entry per model whose new columns were filled from KV: ``model``,
    ``table``, ``columns``, ``objects`` and ``progress`` (the counts reported on the way).
    ``refused`` has one entry per unique index not created because rows share its values:
    ``model``, ``table``, ``index``, ``fields``, ``duplicates`` (how many values repeat), the
    first ``groups`` (``values``, ``ids``, ``count``) and a ``hint``.
    """

    dry_run: bool = False
    tables_created: list[str] = field(default_factory=list)
    columns_added: list[dict[str, str]] = field(default_factory=list)
    indexes_created: list[dict[str, str]] = field(default_factory=list)
    indexes_dropped: list[dict[str, str]] = field(default_factory=list)
    backfills: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    # Unique constraints added to a model with objects: the reservations claimed for them.
    claimed: list[dict[str, Any]] = field(default_factory=list)
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
            or self.backfills
            or any(seed["records"] for seed in self.seeds_run)
        )

    def to_json(self) -> dict[str, Any]:
        """The spec's report shape."""
        return {
            "tablesCreated": self.tables_created,
            "columnsAdded": self.columns_added,
            "indexesCreated": self.indexes_created,
            "indexesDropped": self.indexes_dropped,
            "backfills": self.backfills,
            "refused": self.refused,
            "reservationsClaimed": self.claimed,
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

    def _refuse(self, model: str, change: Change, duplicates: Duplicates) -> None:
        self.refused.append(
            {
                "model": model,
                "table": change.table,
                "index": change.detail,
                "fields": list(duplicates.constraint.fields),
                "duplicates": duplicates.total,
                "groups": [group.to_json() for group in duplicates.groups],
                "hint": REFUSED_HINT,
            }
        )


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


def _pending_backfills(connection: Connection, log_exists: bool) -> dict[str, set[str]]:
    """Table -> columns whose latest ``add_column`` has no ``backfill`` logged after it (one
    query for every model). Columns added before backfills existed are filled once too."""
    if not log_exists:
        return {}
    rows = connection.sql.execute(
        f'SELECT "table", change, detail FROM {MIGRATIONS_TABLE} '
        "WHERE change IN ('add_column', 'backfill') ORDER BY id"
    )
    pending: dict[str, set[str]] = {}
    for row in rows:
        columns = pending.setdefault(row["table"], set())
        if row["change"] == "add_column":
            columns.add(row["detail"])
        else:
            columns.discard(row["detail"])
    return pending


def backfill(
    connection: Connection,
    model: type[DataModel],
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rewrite every metadata row of ``model`` from its KV object; return how many objects.

    Streams the objects in batches of ``batch_size`` (one page of ids and one bulk read each)
    and writes each batch's rows with the save protocol's version-guarded upsert in one SQL
    round trip, so memory is bounded and a save landing meanwhile is never regressed.
    ``progress`` gets the count every ``PROGRESS_EVERY`` objects, and the final count.
    """
    meta = model._meta
    sql = connection.sql
    done = reported = 0
    for batch in Scope(connection, None).store(meta).scan(meta.kv_class, batch_size):
        rows = [project_row(meta, stored.data) for stored in batch.values()]
        if rows:
            sql.batch(upsert_statements(meta, rows, sql.max_bound_parameters), idempotent=True)
        done += len(rows)
        if progress is not None and done // PROGRESS_EVERY > reported // PROGRESS_EVERY:
            progress(done)
            reported = done
    if progress is not None and (reported != done or done == 0):
        progress(done)
    return done


def _count_objects(connection: Connection, meta: Options, batch_size: int) -> int:
    """How many KV objects ``meta``'s model has: id pages only, no object is read."""
    adapter = connection.datastore.adapter
    count, cursor = 0, None
    while True:
        ids, cursor = adapter.list_ids(meta.kv_class, cursor, batch_size)
        count += len(ids)
        if cursor is None:
            return count


class _Migration:
    """One model's plan carried out in the order the module docstring gives."""

    def __init__(
        self,
        connection: Connection,
        model: type[DataModel],
        report: Report,
        *,
        dry_run: bool,
        stamp: str,
        pending: set[str],
        batch_size: int,
        progress: BackfillProgress | None,
    ) -> None:
        self.connection, self.model, self.meta, self.report = connection, model, model._meta, report
        self.dry_run, self.stamp, self.batch_size = dry_run, stamp, batch_size
        self.progress = progress
        self.plan: ModelPlan = plan_model(connection.sql, model)
        report.warnings.extend(self.plan.warnings)
        self.new_table = any(change.kind == "create_table" for change in self.plan.changes)
        added = {change.detail for change in self.plan.changes if change.kind == "add_column"}
        # A new table has no old rows to fill (nimbus_sync --repair rebuilds them from KV).
        self.backfill_columns = [
            column
            for column in self.meta.sync_fields
            if not self.new_table and (column in added or column in pending)
        ]

    def run(self) -> None:
        uniques = [c for c in self.plan.changes if c.kind == "create_unique_index"]
        replaced = {change.columns for change in uniques}
        drops_after = [
            c for c in self.plan.changes if c.kind == "drop_index" and c.columns in replaced
        ]
        first = [c for c in self.plan.changes if c not in uniques and c not in drops_after]
        self._apply(first)
        if self.backfill_columns:
            self._backfill()
        refused: set[tuple[str, ...]] = set()
        for change in uniques:
            duplicates = self._duplicates(change)
            if duplicates is not None and duplicates.total:
                self.report._refuse(self.meta.name, change, duplicates)
                refused.add(change.columns)
            else:
                self._apply([change])
                self._claim(change)
        for change in drops_after:
            if change.columns in refused:
                self.report.warnings.append(
                    f"{change.detail} is kept until the unique index replacing it can be created"
                )
            else:
                self._apply([change])

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            self.report._record(change)
        if changes and not self.dry_run:
            # Each change after its log entry, in one batch: one transaction where the database
            # has them. Where a batch may stop part way (D1 over the REST API), a change is
            # then never applied unlogged (its column would never be backfilled); one logged
            # but not applied is applied, and logged again, by the next run.
            statements: list[Statement] = []
            for change in changes:
                statements += [self._log(change), (change.sql, ())]
            self.connection.sql.batch(statements)

    def _log(self, change: Change) -> Statement:
        return _log_statement(self.plan.model, change, self.plan.schema_hash, self.stamp)

    def _backfill(self) -> None:
        meta = self.meta
        entry: dict[str, Any] = {
            "model": meta.name,
            "table": meta.table,
            "columns": self.backfill_columns,
            "objects": 0,
            "progress": [],
        }
        self.report.backfills.append(entry)
        if self.dry_run:
            entry["objects"] = _count_objects(self.connection, meta, self.batch_size)
            return

        def progress(done: int) -> None:
            entry["progress"].append(done)
            if self.progress is not None:
                self.progress(meta.name, done)

        try:
            entry["objects"] = done = backfill(
                self.connection, self.model, batch_size=self.batch_size, progress=progress
            )
        except IntegrityError as exc:
            raise IntegrityError(
                f"backfilling {meta.table} from KV stopped: an object's row breaks a unique "
                f"index ({exc}); `manage.py nimbus_sync` lists the duplicates, and the next "
                "run resumes the backfill"
            ) from exc
        # Logged only now: a backfill cut short is redone by the next run.
        sql = f"-- {done} objects of {meta.kv_class} upserted from KV"
        self.connection.sql.batch(
            [
                self._log(Change("backfill", meta.table, column, sql))
                for column in self.backfill_columns
            ]
        )

    def _claim(self, change: Change) -> None:
        """Objects stored before a unique constraint was declared hold no reservation yet:
        claim theirs, so a value an old object holds refuses a new one."""
        if self.new_table or self.dry_run:
            return
        assert change.constraint is not None
        kv = self.connection.datastore.kv
        size = (
            self.batch_size if kv is None else min(self.batch_size, kv.limits.max_batch_write // 2)
        )
        store = Scope(self.connection, None).store(self.meta)
        claimed = claim_existing(store, self.meta, change.constraint, max(1, size))
        self.report.claimed.append(
            {"model": self.meta.name, "constraint": change.constraint.name, "objects": claimed}
        )

    def _duplicates(self, change: Change) -> Duplicates | None:
        """The duplicates that refuse ``change`` (``None``: nothing to check, the table is new;
        or, in a dry run, its columns are not there or not filled yet)."""
        if self.new_table:
            return None
        if self.dry_run and set(change.columns) & set(self.backfill_columns):
            self.report.warnings.append(
                f"{change.detail} will be created after the backfill of {self.meta.table} "
                "unless existing objects share its values"
            )
            return None
        assert change.constraint is not None
        return find_duplicates(self.connection.sql, self.meta, change.constraint, limit=SAMPLE)


def initialize(
    connection: Connection,
    models: Iterable[type[DataModel]] | None = None,
    *,
    dry_run: bool = False,
    seeds: bool = True,
    env: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    batch_size: int = 500,
    backfill_progress: BackfillProgress | None = None,
) -> Report:
    """Create and migrate the metadata tables of ``models`` (default: every model), then seed.

    ``progress(model, index, total)`` is called after each model; ``backfill_progress(model,
    objects)`` every ``PROGRESS_EVERY`` objects of a backfill (``batch_size`` objects are read
    and written at a time). A refused unique index is in ``Report.refused``; nothing raises.
    """
    started = time.perf_counter()
    report = Report(dry_run=dry_run)
    sql = connection.sql
    models = list(registry if models is None else models)
    stamp = codec.isoformat(dt.datetime.now(dt.UTC))
    log_exists = bool(sql.table_info(MIGRATIONS_TABLE))
    if not log_exists:
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
    pending = _pending_backfills(connection, log_exists)
    for index, model in enumerate(models, start=1):
        _Migration(
            connection,
            model,
            report,
            dry_run=dry_run,
            stamp=stamp,
            pending=pending.get(model._meta.table, set()),
            batch_size=batch_size,
            progress=backfill_progress,
        ).run()
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
