"""Verify that every metadata row matches its KV object, and rebuild the rows from KV.

KV is the source of truth. For each model, ``verify`` streams every KV object in batches (one
page of ids plus one bulk read per batch) and compares its projection with the metadata row:

* missing: the object has no row;
* stale: the row differs from the object's projection;
* orphan: a row whose object is gone from KV.

With ``repair=True`` missing and stale rows are upserted from KV and orphan rows deleted. It is
safe while the application writes: upserts are guarded by ``_version`` so a row a concurrent
save just wrote is never regressed, and an orphan row is deleted only if its ``_version`` is
still the one seen. Memory stays bounded by ``batch_size``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore.keys import composite_key
from datastore.sqlbuild import quote_identifier

from .sync import project_row, upsert_statements

if TYPE_CHECKING:
    from .connection import Connection
    from .model import DataModel

__all__ = ["SyncReport", "verify"]

SAMPLE = 20


@dataclass
class SyncReport:
    model: str
    checked: int = 0
    missing: int = 0
    stale: int = 0
    orphans: int = 0
    repaired: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def drift(self) -> int:
        return self.missing + self.stale + self.orphans

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "checked": self.checked,
            "missing": self.missing,
            "stale": self.stale,
            "orphans": self.orphans,
            "repaired": self.repaired,
            "examples": self.examples,
        }

    def _note(self, kind: str, object_id: str) -> None:
        if len(self.examples) < SAMPLE:
            self.examples.append(f"{kind}: {object_id}")


def compare(model: type[DataModel], data: dict[str, Any], row: dict[str, Any] | None) -> str:
    """``ok``, ``missing`` or ``stale`` for one object and its row (``None`` if absent)."""
    if row is None:
        return "missing"
    expected = project_row(model._meta, data)
    actual = [row.get(column) for column in model._meta.sync_fields]
    return "ok" if expected == actual else "stale"


def _rows(connection: Connection, model: type[DataModel], pks: list[Any]) -> dict[Any, dict]:
    meta = model._meta
    columns = ", ".join(quote_identifier(column) for column in meta.sync_fields)
    rows = connection.sql.execute(
        f"SELECT {columns} FROM {quote_identifier(meta.table)} "
        f"WHERE {quote_identifier(meta.pk_name)} IN (SELECT value FROM json_each(?))",
        [json.dumps(pks)],
    )
    return {row[meta.pk_name]: row for row in rows}


def verify(
    connection: Connection,
    model: type[DataModel],
    *,
    repair: bool = False,
    batch_size: int = 500,
    progress: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Compare ``model``'s rows with KV (and rebuild them with ``repair``)."""
    meta = model._meta
    report = SyncReport(meta.name)
    system = connection.datastore.system()
    sql = connection.sql
    for batch in system.scan(meta.kv_class, batch_size):
        objects = {stored.data.get(meta.pk_name): stored.data for stored in batch.values()}
        rows = _rows(connection, model, list(objects))
        fixes, ahead = [], []
        for pk, data in objects.items():
            report.checked += 1
            row = rows.get(pk)
            state = compare(model, data, row)
            if state == "ok":
                continue
            setattr(report, state, getattr(report, state) + 1)
            report._note(state, str(pk))
            if row is not None and (row.get("_version") or 0) > (data.get("_version") or 0):
                ahead.append(row)  # the guarded upsert would keep this row: handled below
            else:
                fixes.append(project_row(meta, data))
        if repair and fixes:
            sql.batch(upsert_statements(meta, fixes, sql.max_bound_parameters), idempotent=True)
            report.repaired += len(fixes)
        if repair and ahead:
            report.repaired += _force(connection, model, ahead)
        if progress is not None:
            progress(report)
    _orphans(connection, model, report, repair, batch_size)
    if progress is not None:
        progress(report)
    return report


def _force(connection: Connection, model: type[DataModel], rows: list[dict[str, Any]]) -> int:
    """Rows whose ``_version`` is ahead of KV. Re-read KV first: if a save landed meanwhile the
    row is right and is left alone; otherwise overwrite it, only if unchanged since seen."""
    meta = model._meta
    table, pk = quote_identifier(meta.table), quote_identifier(meta.pk_name)
    ids = {composite_key(*(str(row[name]) for name in meta.key_fields)): row for row in rows}
    fresh = connection.datastore.system().read_many(meta.kv_class, list(ids))
    assignments = ", ".join(f"{quote_identifier(column)} = ?" for column in meta.sync_fields)
    statements = []
    for kv_id, row in ids.items():
        stored = fresh.get(kv_id)
        if stored is None or (stored.data.get("_version") or 0) >= (row.get("_version") or 0):
            continue
        statements.append(
            (
                f'UPDATE {table} SET {assignments} WHERE {pk} = ? AND "_version" IS ?',
                [*project_row(meta, stored.data), row[meta.pk_name], row["_version"]],
            )
        )
    if statements:
        connection.sql.batch(statements, idempotent=True)
    return len(statements)


def _orphans(
    connection: Connection, model: type[DataModel], report: SyncReport, repair: bool, size: int
) -> None:
    meta = model._meta
    table, pk = quote_identifier(meta.table), quote_identifier(meta.pk_name)
    key_columns = list(dict.fromkeys([meta.pk_name, *meta.key_fields, "_version"]))
    columns = ", ".join(quote_identifier(column) for column in key_columns)
    system = connection.datastore.system()
    last: Any = None
    while True:
        where = f"WHERE {pk} > ? " if last is not None else ""
        rows = connection.sql.execute(
            f"SELECT {columns} FROM {table} {where}ORDER BY {pk} LIMIT ?",
            [*([last] if last is not None else []), size],
        )
        if not rows:
            return
        last = rows[-1][meta.pk_name]
        ids = {composite_key(*(str(row[name]) for name in meta.key_fields)): row for row in rows}
        present = system.read_many(meta.kv_class, list(ids))
        gone = [row for kv_id, row in ids.items() if kv_id not in present]
        for row in gone:
            report.orphans += 1
            report._note("orphan", str(row[meta.pk_name]))
        if repair and gone:
            connection.sql.batch(
                [
                    (
                        f'DELETE FROM {table} WHERE {pk} = ? AND "_version" IS ?',
                        [row[meta.pk_name], row["_version"]],
                    )
                    for row in gone
                ],
                idempotent=True,
            )
            report.repaired += len(gone)
        if len(rows) < size:
            return
