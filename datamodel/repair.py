"""Verify that every metadata row matches its KV object, and rebuild the rows from KV.

KV is the source of truth. For each model, ``verify`` streams every KV object in batches (one
page of ids plus one bulk read per batch) and compares its projection with the metadata row:

* missing: the object has no row;
* stale: the row differs from the object's projection;
* orphan: a row whose object is gone from KV;
* duplicate: a value of a unique constraint held by more than one object (a write that
  slipped past the constraint, on a store without compare-and-set such as Cloudflare KV);
* shared key: two objects (two KV keys) with one primary key, where the key pattern has
  several fields and the primary key alone does not tell them apart: the table keeps one
  row per primary key, so one of them cannot be listed.

Each object is compared with the row of its primary key field by field (every sync column:
key fields, owner, ``_auth``, timestamps, version), and a row whose key fields name another
object is that object's, not this one's.

With ``repair=True`` missing and stale rows are upserted from KV and orphan rows deleted. It is
safe while the application writes: upserts are guarded by ``_version`` so a row a concurrent
save just wrote is never regressed, and an orphan row is deleted only if its ``_version`` is
still the one seen. Memory stays bounded by ``batch_size``.

Duplicates and shared keys are never repaired: which object keeps the value (or the row) is a
decision for a person, and either way one object's data changes (for a shared key: give the
model a primary key unique across its key pattern, or delete one object; see
``SHARED_KEYS_HINT``). Where the table has the constraint's unique index, an
object whose row would break it is left as it is and reported (not counted as missing or
stale); a row that holds a value only because it is stale (its object says otherwise) has the
value cleared first, so the object that owns it gets its row. Where the index is missing (refused
by ``initialize``), the rows are written as KV says and the duplicates found in the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore.contract import Statement
from datastore.keys import composite_key
from datastore.sqlbuild import quote_identifier

from .schema import existing_indexes, find_duplicates, live_only, unique_index_name
from .sync import project_row, upsert_statements

if TYPE_CHECKING:
    from .connection import Connection
    from .constraints import UniqueConstraint
    from .model import DataModel
    from .options import Options

__all__ = ["DUPLICATES_HINT", "SHARED_KEYS_HINT", "SyncReport", "verify"]

SAMPLE = 20
IDS_PER_VALUE = 10

DUPLICATES_HINT = (
    "Duplicated values are not repaired: decide which object keeps each value and change the "
    "others' values through the model layer (deleting one frees its value only on a model "
    "without soft delete, or with release_on_delete=True), then run `manage.py nimbus_sync "
    "--repair` again (and `manage.py nimbus_initialize` if it refused the unique index)."
)


SHARED_KEYS_HINT = (
    "Objects sharing a primary key are not repaired: the metadata table keeps one row per "
    "primary key, so only one of them can be listed. Give the model a primary key that is "
    "unique across its key pattern (and move the objects to it), or delete the object that "
    "should not exist (hard), then run `manage.py nimbus_sync --repair` again."
)


@dataclass
class SyncReport:
    """What ``verify`` found for one model. ``missing``, ``stale`` and ``orphans`` are rows
    ``repair`` rebuilds; ``duplicates`` counts values of unique constraints held by several
    objects, which it leaves for a person to decide (the first are in ``duplicate_values``)."""

    model: str
    checked: int = 0
    missing: int = 0
    stale: int = 0
    orphans: int = 0
    duplicates: int = 0
    shared_keys: int = 0
    repaired: int = 0
    examples: list[str] = field(default_factory=list)
    duplicate_values: list[dict[str, Any]] = field(default_factory=list)
    shared_key_values: list[dict[str, Any]] = field(default_factory=list)
    _duplicated: dict[tuple[str, tuple[Any, ...]], set[Any]] = field(
        default_factory=dict, repr=False
    )

    @property
    def repairable(self) -> int:
        """The drift ``repair=True`` fixes: missing, stale and orphan rows."""
        return self.missing + self.stale + self.orphans

    @property
    def drift(self) -> int:
        return self.repairable + self.duplicates + self.shared_keys

    @property
    def needs_decision(self) -> int:
        """The drift ``repair=True`` leaves for a person: duplicates and shared keys."""
        return self.duplicates + self.shared_keys

    def to_json(self) -> dict[str, Any]:
        report = {
            "model": self.model,
            "checked": self.checked,
            "missing": self.missing,
            "stale": self.stale,
            "orphans": self.orphans,
            "duplicates": self.duplicates,
            "repaired": self.repaired,
            "examples": self.examples,
            "duplicate_values": self.duplicate_values,
            "shared_keys": self.shared_keys,
            "shared_key_values": self.shared_key_values,
        }
        if self.duplicates:
            report["duplicates_hint"] = DUPLICATES_HINT
        if self.shared_keys:
            report["shared_keys_hint"] = SHARED_KEYS_HINT
        return report

    def _shared(self, pk: Any, kv_ids: list[str]) -> None:
        self.shared_keys += 1
        if len(self.shared_key_values) < SAMPLE:
            self.shared_key_values.append({"pk": pk, "ids": sorted(kv_ids)[:IDS_PER_VALUE]})

    def _note(self, kind: str, object_id: str) -> None:
        if len(self.examples) < SAMPLE:
            self.examples.append(f"{kind}: {object_id}")

    def _duplicate(self, constraint: UniqueConstraint, values: tuple[Any, ...], ids: Any) -> None:
        """Count a duplicated value once however often it is met; keep the first in full."""
        key = (constraint.name, values)
        known = self._duplicated.get(key)
        if known is None:
            known = self._duplicated[key] = set()
            self.duplicates += 1
            if len(self.duplicate_values) < SAMPLE:
                self.duplicate_values.append(
                    {
                        "constraint": constraint.name,
                        "values": dict(zip(constraint.fields, values, strict=True)),
                        "ids": [],
                    }
                )
        known.update(ids)
        for entry in self.duplicate_values:
            if entry["constraint"] == constraint.name and tuple(entry["values"].values()) == values:
                entry["ids"] = sorted(known, key=str)[:IDS_PER_VALUE]


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
    indexed: list[UniqueConstraint] = []
    if meta.unique_constraints:
        existing = existing_indexes(sql, meta.table)
        indexed = [c for c in meta.unique_constraints if unique_index_name(meta, c) in existing]
    for batch in system.scan(meta.kv_class, batch_size):
        report.checked += len(batch)
        objects, kv_ids = _one_per_key(report, batch, meta)
        rows = _rows(connection, model, list(objects))
        _others_rows(connection, model, report, objects, kv_ids, rows)
        drifted = {}
        for pk, data in objects.items():
            state = compare(model, data, rows.get(pk))
            if state != "ok":
                drifted[pk] = state
        withheld: set[Any] = set()
        clears: list[Statement] = []
        if indexed and drifted:
            withheld, clears = _unique_conflicts(
                connection, model, indexed, objects, drifted, report
            )
        fixes, ahead = [], []
        for pk, state in drifted.items():
            if pk in withheld:
                continue  # shares a unique value with another object: reported, not repaired
            setattr(report, state, getattr(report, state) + 1)
            report._note(state, str(pk))
            row, data = rows.get(pk), objects[pk]
            if row is not None and (row.get("_version") or 0) > (data.get("_version") or 0):
                ahead.append((kv_ids[pk], row))  # the guarded upsert would keep this row
            else:
                fixes.append(project_row(meta, data))
        if repair and fixes:
            upserts = upsert_statements(meta, fixes, sql.max_bound_parameters)
            sql.batch([*clears, *upserts], idempotent=True)
            report.repaired += len(fixes)
        if repair and ahead:
            report.repaired += _force(connection, model, ahead)
        if progress is not None:
            progress(report)
    _orphans(connection, model, report, repair, batch_size)
    for constraint in meta.unique_constraints:
        if constraint not in indexed:  # nothing kept duplicates out of the table: look there
            found = find_duplicates(sql, meta, constraint, limit=SAMPLE)
            for group in found.groups:
                report._duplicate(constraint, tuple(group.values.values()), group.ids)
            report.duplicates += found.total - len(found.groups)
    if progress is not None:
        progress(report)
    return report


def _one_per_key(
    report: SyncReport, batch: dict[str, Any], meta: Options
) -> tuple[dict[Any, dict[str, Any]], dict[Any, str]]:
    """The objects of a scanned batch by primary key, and their KV ids; objects of the batch
    sharing a primary key are reported and left out (one row cannot hold both)."""
    by_pk: dict[Any, list[str]] = {}
    for kv_id, stored in batch.items():
        by_pk.setdefault(meta.row_pk(stored.data), []).append(kv_id)
    objects, kv_ids = {}, {}
    for pk, ids in by_pk.items():
        if len(ids) > 1:
            report._shared(pk, ids)
            for kv_id in ids:
                report._note("shared key", kv_id)
            continue
        objects[pk], kv_ids[pk] = batch[ids[0]].data, ids[0]
    return objects, kv_ids


def _others_rows(
    connection: Connection,
    model: type[DataModel],
    report: SyncReport,
    objects: dict[Any, dict[str, Any]],
    kv_ids: dict[Any, str],
    rows: dict[Any, dict[str, Any]],
) -> None:
    """Objects whose row (by primary key) has the key fields of another object: if that
    object exists with the same primary key, the two share the row's key (reported, and left
    out of ``objects``); otherwise the row is stale and ``compare`` says so. One bulk KV read,
    only when such rows exist."""
    meta = model._meta
    foreign = {}
    for pk in objects:
        row = rows.get(pk)
        if row is not None:
            row_id = composite_key(*(str(row.get(name)) for name in meta.key_fields))
            if row_id != kv_ids[pk]:
                foreign[pk] = row_id
    if not foreign:
        return
    found = connection.datastore.system().read_many(meta.kv_class, list(set(foreign.values())))
    for pk, row_id in foreign.items():
        other = found.get(row_id)
        if other is not None and meta.row_pk(other.data) == pk:
            report._shared(pk, [kv_ids[pk], row_id])
            report._note("shared key", kv_ids[pk])
            del objects[pk]


def _claims(meta: Options, constraint: UniqueConstraint, data: dict[str, Any]) -> tuple | None:
    """The values an object holds under ``constraint`` in its row, or ``None`` if it holds
    none (a NULL among them, or deleted where the constraint is released on delete)."""
    row = dict(zip(meta.sync_fields, project_row(meta, data), strict=True))
    values = tuple(row[name] for name in constraint.fields)
    if any(value is None for value in values):
        return None
    if live_only(meta, constraint) and row.get("deleted_at") is not None:
        return None
    return values


def _unique_conflicts(
    connection: Connection,
    model: type[DataModel],
    constraints: list[UniqueConstraint],
    objects: dict[Any, dict[str, Any]],
    drifted: dict[Any, str],
    report: SyncReport,
) -> tuple[set[Any], list[Statement]]:
    """Which drifted objects of a batch would break a unique index with their row.

    Returns the objects to leave alone (their value is also another object's, in KV: reported
    as duplicates) and the statements that clear a value from rows holding it only because
    they are stale. One SQL round trip for the rows holding the values, and one bulk KV read
    for those of other objects, outside the batch."""
    meta = model._meta
    table, sql = quote_identifier(meta.table), connection.sql
    claims: dict[tuple[UniqueConstraint, tuple], list[Any]] = {}
    for pk in drifted:
        for constraint in constraints:
            values = _claims(meta, constraint, objects[pk])
            if values is not None:
                claims.setdefault((constraint, values), []).append(pk)
    if not claims:
        return set(), []
    selected = list(dict.fromkeys([meta.pk_name, *meta.key_fields, "_version"]))
    statements: list[Statement] = []
    for constraint in constraints:
        wanted = [list(values) for (c, values) in claims if c == constraint]
        join = " AND ".join(
            f"t.{quote_identifier(name)} = json_extract(j.value, '$[{position}]')"
            for position, name in enumerate(constraint.fields)
        )
        live = ' AND t."deleted_at" IS NULL' if live_only(meta, constraint) else ""
        columns = ", ".join(f"t.{quote_identifier(c)}" for c in [*selected, *constraint.fields])
        statements.append(
            (
                f"SELECT {columns} FROM json_each(?) AS j JOIN {table} AS t ON {join}{live}",
                [json.dumps(wanted)],
            )
        )
    found = dict(zip(constraints, sql.batch(statements), strict=True))
    holders: dict[tuple[UniqueConstraint, tuple], list[dict[str, Any]]] = {}
    outside: dict[str, Any] = {}
    for constraint, rows in found.items():
        for row in rows:
            values = tuple(row[name] for name in constraint.fields)
            if row[meta.pk_name] in claims.get((constraint, values), ()):
                continue  # the object's own row already holds it
            holders.setdefault((constraint, values), []).append(row)
            if row[meta.pk_name] not in objects:
                outside[composite_key(*(str(row[name]) for name in meta.key_fields))] = row
    stored = (
        connection.datastore.system().read_many(meta.kv_class, list(outside)) if outside else {}
    )
    truth = {
        row[meta.pk_name]: stored[kv_id].data for kv_id, row in outside.items() if kv_id in stored
    }
    truth.update(objects)
    withheld: set[Any] = set()
    clears: list[Statement] = []
    for (constraint, values), claimants in claims.items():
        also: list[Any] = []
        for row in holders.get((constraint, values), []):
            data = truth.get(row[meta.pk_name])
            if data is not None and _claims(meta, constraint, data) == values:
                also.append(row[meta.pk_name])  # its object holds the value too, in KV
            else:
                clears.append(_clear(meta, constraint, row))
        if len(claimants) + len(also) > 1:
            withheld.update(claimants)
            report._duplicate(constraint, values, [*claimants, *also])
    return withheld, clears


def _clear(meta: Options, constraint: UniqueConstraint, row: dict[str, Any]) -> Statement:
    """Empty a stale row's unique values (if unchanged since seen); its own repair, in this
    pass or the orphan pass, rewrites or deletes it."""
    assignments = ", ".join(f"{quote_identifier(name)} = NULL" for name in constraint.fields)
    return (
        f"UPDATE {quote_identifier(meta.table)} SET {assignments} "
        f'WHERE {quote_identifier(meta.pk_name)} = ? AND "_version" IS ?',
        [row[meta.pk_name], row["_version"]],
    )


def _force(
    connection: Connection, model: type[DataModel], rows: list[tuple[str, dict[str, Any]]]
) -> int:
    """Rows whose ``_version`` is ahead of KV, each with the KV id of its object (not the one
    its key fields may wrongly say). Re-read KV first: if a save landed meanwhile the row is
    right and is left alone; otherwise overwrite it, only if unchanged since seen."""
    meta = model._meta
    table, pk = quote_identifier(meta.table), quote_identifier(meta.pk_name)
    ids = dict(rows)
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
