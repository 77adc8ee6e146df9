"""The save protocol: KV is the source of truth, the metadata row an index rebuilt from it.

1. validate; run ``before_create``/``before_update`` (may modify or reject);
2. set timestamps and owner, bump ``_version``;
3. write the full object to KV with compare-and-set on the version read (create-only for new
   objects): a concurrent update raises ``Conflict`` instead of being lost;
4. upsert the sync fields with ``ON CONFLICT DO UPDATE ... WHERE excluded._version >=
   _version``: idempotent, and never regresses however writes are reordered;
5. a KV failure means no metadata write; a metadata failure raises ``SyncError`` with the object
   safe in KV, where ``nimbus_sync --repair`` finds it;
6. ``after_*`` hooks, whose errors are logged, never raised.

A save costs one KV round trip and one SQL round trip. Where the KV store pipelines (Redis),
step 4 runs while step 3's write is in flight, inside a SQL transaction that commits only
once the KV write has succeeded: the same outcome as one after the other, in less time. Where
the store combines requests with the database (the gateway: ``Pending.join``), steps 3 and 4
are one request that runs the rows only if the write landed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from datastore import Conflict, DatastoreError, Pending, ScopedDatastore, SQLDatabase
from datastore.contract import Statement
from datastore.sqlbuild import in_list, insert_rows, quote_identifier

from . import reservations
from .clock import now_iso
from .errors import SyncError, ValidationError

if TYPE_CHECKING:
    from .instance import ModelBase as DataModel
    from .options import Options
    from .scope import Scope

__all__ = [
    "DELETION_KEY",
    "bulk_save",
    "hard_delete_many",
    "project_row",
    "restore_many",
    "save",
    "soft_delete_many",
    "upsert_statements",
    "write_batch_size",
]

logger = logging.getLogger("datamodel")
T = TypeVar("T")


class timed:
    """Log one operation: model, id, duration and round trips to each store."""

    __slots__ = (
        "kv_counter",
        "kv_start",
        "meta",
        "object_id",
        "operation",
        "sql_counter",
        "sql_start",
        "started",
    )

    def __init__(self, operation: str, meta: Options, scope: Scope, object_id: Any) -> None:
        self.operation, self.meta, self.object_id = operation, meta, object_id
        self.kv_counter = scope.connection.datastore.round_trips
        self.sql_counter = scope.connection.sql.round_trips

    def __enter__(self) -> None:
        self.kv_start, self.sql_start = self.kv_counter.value, self.sql_counter.value
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        logger.info(
            "%s %s %s in %.1f ms (kv %d, sql %d round trips)",
            self.operation,
            self.meta.name,
            self.object_id,
            (time.perf_counter() - self.started) * 1000,
            self.kv_counter.value - self.kv_start,
            self.sql_counter.value - self.sql_start,
        )


def project_row(meta: Options, values: dict[str, Any]) -> list[Any]:
    """The metadata row of an object: its sync fields as column values (a primary key left
    out of the key pattern is the KV id, also for objects stored before it was declared)."""
    if meta.pk_is_kv_id and values.get(meta.pk_name) is None:
        values = {**values, meta.pk_name: meta.kv_id(values)}
    return [to_sql(values.get(column)) for column, to_sql in meta.row_converters]


def _set_kv_id_pk(instance: DataModel) -> None:
    """A primary key left out of the key pattern is the object's KV id."""
    meta = instance._meta
    if meta.pk_is_kv_id:
        instance._values[meta.pk_name] = instance.kv_id


def upsert_statements(meta: Options, rows: Sequence[Sequence[Any]], max_parameters: int | None):
    """Version-guarded upserts of metadata rows, split to the backend's parameter limit."""
    suffix = _upsert_suffix(meta.table, meta.pk_name, tuple(meta.sync_fields))
    return insert_rows(
        meta.table, meta.sync_fields, rows, suffix=suffix, max_parameters=max_parameters
    )


@functools.lru_cache(maxsize=256)  # built once per table, not on every save
def _upsert_suffix(table_name: str, pk_name: str, columns: tuple[str, ...]) -> str:
    table = quote_identifier(table_name)
    updates = ", ".join(
        f"{quote_identifier(column)} = excluded.{quote_identifier(column)}"
        for column in columns
        if column != pk_name
    )
    return (
        f"ON CONFLICT ({quote_identifier(pk_name)}) DO UPDATE SET {updates} "
        f'WHERE excluded."_version" >= {table}."_version"'
    )


def _owner_checks(instance: DataModel, scope: Scope, adding: bool) -> None:
    meta = instance._meta
    if not meta.user_tracking:
        return
    owner = instance._values.get("user_id")
    if adding:
        if owner is None and scope.user_id is not None:
            instance._values["user_id"] = scope.user_id
        elif scope.user_id is not None and owner != scope.user_id:
            raise ValidationError({"user_id": ["must be the current user"]})
    elif instance.saved_value("user_id") != owner and scope.user_id is not None:
        raise ValidationError({"user_id": ["the owner cannot be changed"]})


def _new_owners(instance: DataModel, scope: Scope) -> list[str]:
    """Who owns a new object: the acting user, else its ``user_id`` field (the built-in, or a
    model's own key such as USER's)."""
    if scope.user_id:
        return [scope.user_id]
    owner = instance._values.get("user_id")
    return [owner] if owner else []


def _stored_data(instance: DataModel) -> dict[str, Any]:
    data = {**instance._extra, **instance._values}
    for name in instance._meta.omitted_when_none:
        if data.get(name) is None:
            data.pop(name, None)
    return data


def _stamp(instance: DataModel, scope: Scope, adding: bool, stamp: str) -> None:
    """Step 2: timestamps, ``_version`` + 1, and the owners (``_auth``) the KV write carries."""
    meta = instance._meta
    for name in meta.auto_now_add if adding else ():
        instance._values[name] = stamp  # created_at, and any auto_now_add field
    for name in meta.auto_now:
        instance._values[name] = stamp  # updated_at, and any auto_now field
    instance._values["_version"] = (instance._values.get("_version") or 0) + 1
    if meta.auth:
        owners = _new_owners(instance, scope) if adding else instance._values.get("_auth")
        instance._values["_auth"] = list(owners or [])


def _stored_values(instance: DataModel) -> dict[str, Any] | None:
    """The values as last stored (``None`` for a new object), taken before they change."""
    if instance._state.adding:
        return None
    saved = instance._state.saved
    return dict(saved if saved is not None else instance._values)


def _write(instance: DataModel, scope: Scope, adding: bool, before: dict[str, Any] | None) -> None:
    """Steps 2-5 for one object; on a KV failure the instance is left as it was. ``before``
    (the values as last stored) says which unique values the write moves."""
    meta = instance._meta
    previous = dict(instance._values)
    _stamp(instance, scope, adding, now_iso())
    data = _stored_data(instance)
    sql = scope.connection.sql
    store = scope.store(meta)
    try:
        kv_id = instance.kv_id
        found = reservations.moves(meta, [(kv_id, before, data)])
        # The row is built first: nothing is sent if it cannot be.
        statements = upsert_statements(meta, [project_row(meta, data)], sql.max_bound_parameters)
        pending = store.start_put(
            meta.kv_class,
            kv_id,
            data,
            if_version=0 if adding else instance._state.kv_version,
            claims=found.claims or None,
            releases=found.releases,
        )
    except Conflict as exc:  # a store that checks claims before sending (Cloudflare KV)
        instance._values = previous
        raise reservations.to_integrity_error(meta, found, exc, store) or exc from exc
    except BaseException:
        instance._values = previous
        raise
    try:
        version, sql_error = _write_rows(statements, sql, pending, [(instance, previous)])
    except Conflict as exc:
        raise reservations.to_integrity_error(meta, found, exc, store) or exc from exc
    _mark_stored(instance, version)
    if sql_error is not None:
        raise SyncError(
            f"{meta.name} {instance.pk!r} was saved to KV but its metadata row in "
            f"{meta.table!r} was not written ({sql_error}); run `manage.py nimbus_sync "
            "--repair` to rebuild it from KV"
        ) from sql_error


def _mark_stored(instance: DataModel, version: int) -> None:
    instance._state.adding = False
    instance._state.saved = None  # the values are what was stored
    instance._state.kv_version = version


def _write_rows(
    statements: list[Statement],
    sql: SQLDatabase,
    pending: Pending[T],
    previous: Sequence[tuple[DataModel, dict[str, Any]]] = (),
) -> tuple[T, DatastoreError | None]:
    """Step 4 while step 3's KV write is in flight (on Redis): the rows are written meanwhile
    and committed only once that write has succeeded.

    Returns the KV write's answer and the SQL error, if any, for the caller to raise as
    ``SyncError`` once the instances reflect what KV holds. If the KV write failed, every
    instance gets its ``previous`` values back and the KV error propagates.
    """

    def kv_answer() -> T:
        try:
            return pending.result()
        except BaseException:
            for instance, values in previous:
                instance._values = values
            raise

    answered = pending.done()
    if answered:
        kv_answer()  # the store has answered already: no SQL write after a failed KV write
    else:
        joined = pending.join(sql, statements, idempotent=True)  # version-guarded upserts
        if joined is not None:  # one request: the KV write, then the rows if it landed
            answer = kv_answer()
            try:
                joined.result()
            except DatastoreError as exc:
                return answer, exc
            return answer, None
    sql_error: DatastoreError | None = None
    try:
        sql.batch(
            statements,
            idempotent=True,
            before_commit=None if answered else pending.result,
        )
    except DatastoreError as exc:
        sql_error = exc
    finally:
        answer = kv_answer()  # in hand by now, unless the SQL write failed first
    return answer, sql_error


def save(instance: DataModel, scope: Scope) -> None:
    meta = instance._meta
    adding = instance._state.adding
    with timed("create" if adding else "update", meta, scope, instance.pk):
        if adding:
            pk_field = meta.pk
            if instance._values.get(meta.pk_name) is None and pk_field.generator is not None:
                instance._values[meta.pk_name] = pk_field.generator()
            _owner_checks(instance, scope, adding)
            instance.hooks.run_before("before_create", instance)
            _set_kv_id_pk(instance)
            instance.full_clean()
            _write(instance, scope, adding=True, before=None)
            instance.hooks.run_after("after_create", instance)
            return
        changes = instance.changes()
        if not changes:
            return
        before = _stored_values(instance)
        _owner_checks(instance, scope, adding)
        instance.hooks.run_before("before_update", instance, changes)
        _set_kv_id_pk(instance)  # objects stored before such a key was declared lack it
        instance.full_clean()
        changes = instance.changes()
        _write(instance, scope, adding=False, before=before)
        instance.hooks.run_after("after_update", instance, changes)


def write_batch_size(scope: Scope, meta: Options) -> int:
    """How many objects of ``meta``'s model one KV write batch may hold on this connection:
    each may carry a claim and a release per unique constraint besides itself."""
    kv = scope.connection.datastore.kv
    limit = kv.limits.max_batch_write if kv is not None else 1000
    return max(1, limit // (1 + 2 * len(meta.unique_constraints)))


# -- deleting and restoring ----------------------------------------------------------------
#
# ``datamodel.deletion`` plans a delete (what references what) and runs the hooks; these write
# one chunk of one model each, up to ``write_batch_size`` objects, with system access: the
# objects were read through the acting scope already, or found through a reference to one
# that was.


DELETION_KEY = "_deletion"  # stored with a soft-deleted object: the id of the delete that did it


def soft_delete_many(
    instances: Sequence[DataModel], scope: Scope, stamp: str, deletion: str
) -> None:
    """Set ``deleted_at`` to ``stamp`` on every instance, and ``_deletion`` (stored beside
    the fields) to ``deletion``, the id of this delete, so that a restore can tell what one
    delete cascaded to (a stamp alone cannot: two deletes may share a millisecond). Steps 2-5
    of the save protocol as one KV compare-and-set batch (all-or-nothing: a ``Conflict``
    leaves the instances as they were) and one SQL batch."""
    _rewrite(instances, scope, "soft_delete", stamp, {"deleted_at": stamp}, deletion)


def restore_many(instances: Sequence[DataModel], scope: Scope) -> None:
    """Clear ``deleted_at`` and ``_deletion`` on every instance, as ``soft_delete_many``
    sets them."""
    _rewrite(instances, scope, "restore", now_iso(), {"deleted_at": None}, None)


def _rewrite(
    instances: Sequence[DataModel],
    scope: Scope,
    operation: str,
    stamp: str,
    values: dict[str, Any],
    deletion: str | None,
) -> None:
    if not instances:
        return
    meta = instances[0]._meta
    if not meta.soft_delete:
        raise ValidationError(f"{meta.name} has no soft delete")
    previous = [dict(instance._values) for instance in instances]
    extras = [dict(instance._extra) for instance in instances]
    before = [_stored_values(instance) for instance in instances]
    with timed(operation, meta, scope, f"{len(instances)} objects"):
        try:
            for instance in instances:
                instance._values.update(values)
                instance._extra.pop(DELETION_KEY, None)
                if deletion is not None:
                    instance._extra[DELETION_KEY] = deletion
                _stamp(instance, scope, False, stamp)
            # A soft delete releases the values of fields that say so; a restore claims them.
            _send(
                instances, scope, scope.connection.datastore.system(), before, previous, operation
            )
        except SyncError:
            raise  # in KV: the instances are what was stored
        except BaseException:
            for instance, old, extra in zip(instances, previous, extras, strict=True):
                instance._values, instance._extra = old, extra
            raise


def _send(
    chunk: Sequence[DataModel],
    scope: Scope,
    store: ScopedDatastore,
    before: Sequence[dict[str, Any] | None],
    previous: Sequence[dict[str, Any]],
    operation: str,
) -> None:
    """Steps 3-5 for stamped instances of one model: one KV compare-and-set batch (create-only
    for new objects) carrying the moves of their unique values, and one SQL batch of their
    rows. ``before`` holds each one's values as last stored; on a KV failure each gets its
    ``previous`` values back. ``SyncError`` once KV holds them but their rows failed."""
    meta = chunk[0]._meta
    sql = scope.connection.sql
    stored = {instance.kv_id: _stored_data(instance) for instance in chunk}
    found = reservations.moves(
        meta,
        [(kv_id, old, data) for (kv_id, data), old in zip(stored.items(), before, strict=True)],
    )
    rows = [project_row(meta, data) for data in stored.values()]
    statements = upsert_statements(meta, rows, sql.max_bound_parameters)
    try:
        pending = store.start_put_many(
            meta.kv_class,
            stored,
            if_versions={
                instance.kv_id: 0 if instance._state.adding else instance._state.kv_version
                for instance in chunk
            },
            claims=found.claims or None,
            releases=found.releases,
        )
        versions, sql_error = _write_rows(
            statements, sql, pending, list(zip(chunk, previous, strict=True))
        )
    except Conflict as exc:
        for instance, values in zip(chunk, previous, strict=True):
            instance._values = values
        raise reservations.to_integrity_error(meta, found, exc, store) or exc from exc
    for instance in chunk:
        _mark_stored(instance, versions[instance.kv_id])
    if sql_error is not None:
        raise SyncError(
            f"{len(chunk)} {meta.name} objects were saved to KV ({operation}) but their metadata "
            f"rows were not written ({sql_error}); run `manage.py nimbus_sync --repair`"
        ) from sql_error


def hard_delete_many(instances: Sequence[DataModel], scope: Scope) -> None:
    """Remove the instances' objects: one KV bulk delete, then one SQL delete of their rows.

    A failed KV delete writes nothing; a failed SQL delete raises ``SyncError`` with the
    objects gone from KV, whose rows ``nimbus_sync --repair`` removes as orphans.
    """
    if not instances:
        return
    meta = instances[0]._meta
    sql = scope.connection.sql
    with timed("hard_delete", meta, scope, f"{len(instances)} objects"):
        condition, params = in_list(meta.pk_name, [meta.pk.to_sql(i.pk) for i in instances])
        released = [
            name
            for instance in instances
            for name in reservations.held(meta, _stored_values(instance))
        ]
        scope.connection.datastore.system().delete_many(
            meta.kv_class, [instance.kv_id for instance in instances], releases=released
        )
        for instance in instances:
            instance._state.adding = True  # no longer stored: a save would create it again
        try:
            sql.execute(
                f"DELETE FROM {quote_identifier(meta.table)} WHERE {condition}",
                params,
                idempotent=True,
            )
        except DatastoreError as exc:
            raise SyncError(
                f"{len(instances)} {meta.name} objects were removed from KV but their metadata "
                f"rows in {meta.table!r} were not ({exc}); run `manage.py nimbus_sync --repair`"
            ) from exc


def bulk_save(instances: Sequence[DataModel], scope: Scope) -> None:
    """Create and update many objects: one KV and one SQL round trip per store batch limit.

    Every object is validated and passes its ``before_create``/``before_update`` hooks before
    anything is written. Each batch's KV write is one compare-and-set: create-only for new
    objects, on the loaded version for stored ones; it is all-or-nothing.
    """
    if not instances:
        return
    meta = instances[0]._meta
    stamp = now_iso()
    changes: dict[int, dict[str, Any]] = {}
    before: dict[int, dict[str, Any] | None] = {}
    for instance in instances:
        if type(instance)._meta is not meta:
            raise ValidationError("bulk saves take instances of one model")
        adding = instance._state.adding
        before[id(instance)] = _stored_values(instance)
        if adding and instance._values.get(meta.pk_name) is None and meta.pk.generator:
            instance._values[meta.pk_name] = meta.pk.generator()
        _owner_checks(instance, scope, adding)
        if adding:
            instance.hooks.run_before("before_create", instance)
            _set_kv_id_pk(instance)
        else:
            changes[id(instance)] = instance.changes()
            instance.hooks.run_before("before_update", instance, changes[id(instance)])
            _set_kv_id_pk(instance)
        instance.full_clean()
    kv_ids = [instance.kv_id for instance in instances]
    if len(set(kv_ids)) != len(kv_ids):
        raise ValidationError("a bulk save has the same key more than once")
    # Two objects of the batch claiming one unique value: refused before anything is sent.
    reservations.moves(
        meta,
        [(kv_id, before[id(i)], i._values) for kv_id, i in zip(kv_ids, instances, strict=True)],
    )
    previous = {id(instance): dict(instance._values) for instance in instances}
    for instance in instances:
        _stamp(instance, scope, instance._state.adding, stamp)
    store = scope.store(meta)
    batch_size = write_batch_size(scope, meta)
    with timed("bulk_save", meta, scope, f"{len(instances)} objects"):
        for start in range(0, len(instances), batch_size):
            chunk = instances[start : start + batch_size]
            created = {id(instance) for instance in chunk if instance._state.adding}
            _send(
                chunk,
                scope,
                store,
                [before[id(instance)] for instance in chunk],
                [previous[id(instance)] for instance in chunk],
                "bulk_save",
            )
            for instance in chunk:
                if id(instance) in created:
                    instance.hooks.run_after("after_create", instance)
                else:
                    instance.hooks.run_after("after_update", instance, changes[id(instance)])
