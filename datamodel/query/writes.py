"""Query-level writes: ``update()``, ``get_or_create()``, ``update_or_create()``.

None of them writes to the metadata table directly: every object goes through the save
protocol (hooks, versions, compare-and-set, the metadata row), read from KV and saved in bulk,
so the table stays an index of KV. ``update()`` works in chunks no larger than one bulk KV read
or write allows; per chunk: 1 SQL select (ids, by keyset), 1 KV read, 1 KV write, 1 SQL write.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from datastore import Conflict
from datastore.keys import object_key

from ..errors import DoesNotExist, IntegrityError, PartialWrite, ValidationError
from ..instance import MANAGED

if TYPE_CHECKING:
    from ..instance import ModelBase
    from ..options import Options
    from ..scope import Scope
    from .expressions import Q

__all__ = ["get_or_create", "update", "update_or_create"]

MAX_CHUNK = 1000  # ids per SQL select; the KV limits may make a chunk smaller


class _Query(Protocol):
    """What the writes use of a query set (``QuerySet`` sits above this module)."""

    model: Any
    meta: Options
    scope: Scope
    _slice: tuple[int, int | None] | None

    def filter(self, *conditions: Q, **lookups: Any) -> Any: ...
    def order_by(self, *fields: str) -> Any: ...
    def with_data(self) -> Any: ...
    def values_list(self, *fields: str, flat: bool = False) -> Any: ...


def chunk_size(scope: Scope) -> int:
    """Objects per chunk: what one bulk KV read and one bulk KV write can carry."""
    kv = scope.connection.datastore.kv
    if kv is None:
        return MAX_CHUNK
    return max(1, min(MAX_CHUNK, kv.limits.max_batch_write, kv.limits.max_batch_get))


def _check_fields(meta: Options, values: Mapping[str, Any]) -> None:
    """Only plain fields can be changed in bulk: not the key, not the managed columns."""
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        field = meta.fields.get(name)
        if field is None:
            errors[name] = [f"unknown field for {meta.name}"]
        elif name in MANAGED or name in meta.key_fields:
            errors[name] = ["cannot be changed by update(): it is part of the key or managed"]
        else:
            try:
                field.clean(value)
            except ValueError as exc:
                errors[name] = [str(exc)]
    if errors:
        raise ValidationError(errors)


def _kv_ids(query: _Query, size: int) -> Iterator[list[str]]:
    """The matching objects' KV ids, a chunk at a time, by keyset on the primary key (so a
    change to a filtered or ordering field cannot make the walk skip or repeat rows)."""
    meta = query.meta
    rows = query.order_by("pk").values_list(*meta.key_fields).iterator(batch_size=size)
    while chunk := list(itertools.islice(rows, size)):
        yield [meta.kv_id(dict(zip(meta.key_fields, row, strict=True))) for row in chunk]


def _conflicting(meta: Options, exc: Conflict, pending: list[str]) -> set[str]:
    keys = set(exc.keys)
    return {kv_id for kv_id in pending if object_key(meta.kv_class, kv_id) in keys}


def update(query: _Query, values: Mapping[str, Any]) -> int:
    """Set ``values`` on every matching object through the save path; the number changed.

    A ``Conflict`` (the object changed since it was read) is retried once from a fresh read;
    objects still conflicting are left as they are and reported with ``PartialWrite`` once
    every other object is written.
    """
    if query._slice is not None:
        raise ValidationError({"update": ["cannot update a sliced query"]})
    if not values:
        raise ValidationError({"update": ["name at least one field to set"]})
    meta, scope = query.meta, query.scope
    _check_fields(meta, values)
    store = scope.store(meta)
    done, failed = 0, []
    for chunk in _kv_ids(query, chunk_size(scope)):
        pending, retried = chunk, set[str]()
        while pending:
            stored = store.read_many(meta.kv_class, pending)
            instances = []
            for kv_id in pending:
                found = stored.get(kv_id)
                if found is None:
                    continue  # deleted meanwhile: nothing left to update
                instance = query.model._from_stored(found.data, found.version, scope)
                instance.set(dict(values))
                instances.append(instance)
            try:
                query.model._save_many(instances, scope)
            except PartialWrite:
                raise
            except Conflict as exc:
                bad = _conflicting(meta, exc, pending)
                if not bad:
                    raise
                given_up = bad & retried
                failed.extend(sorted(given_up))
                retried |= bad
                pending = [kv_id for kv_id in pending if kv_id not in given_up]
                continue
            done += len(instances)
            break
    if failed:
        raise PartialWrite(
            f"{meta.name}: updated {done} objects; {len(failed)} kept changing and were left "
            f"as they are: {', '.join(failed[:10])}",
            done=done,
            failed_ids=failed,
        )
    return done


def _create_values(lookups: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> dict:
    """The values of a new object: the exact lookups, then the defaults (callables called)."""
    values = {}
    for key, value in lookups.items():
        name, _, lookup = key.partition("__")
        if lookup in ("", "exact"):
            values["pk" if name == "pk" else name] = value
    for name, value in (defaults or {}).items():
        values[name] = value() if callable(value) else value
    return values


def _resolved(meta: Options, values: dict[str, Any]) -> dict[str, Any]:
    if "pk" in values:
        values[meta.pk_name] = values.pop("pk")
    return values


def _race_safe_by(meta: Options, lookups: Mapping[str, Any]) -> str:
    """Why two concurrent creates cannot both succeed: the lookup fixes the object's key or
    every field of a unique constraint. ``ValidationError`` when it fixes neither."""
    fixed = set(_resolved(meta, _create_values(lookups, None)))
    if set(meta.key_fields) <= fixed:
        return "key"
    for constraint in meta.unique_constraints:
        if set(constraint.fields) <= fixed:
            return "unique"
    uniques = [constraint.name for constraint in meta.unique_constraints]
    raise ValidationError(
        {
            "get_or_create": [
                f"{meta.name}: the lookup must fix the key ({', '.join(meta.key_fields)}) or a "
                f"unique constraint ({', '.join(uniques) or 'none declared'}), or two "
                "concurrent calls could both create: declare unique=True or unique_together"
            ]
        }
    )


def _holder(query: _Query, values: dict[str, Any], exc: Exception) -> Any:
    """The object that won a create race, read from KV (the truth; its row may lag)."""
    meta = query.meta
    if isinstance(exc, IntegrityError):
        kv_id = exc.holder
    else:
        try:
            kv_id = meta.kv_id(values)
        except KeyError:
            return None
    if kv_id is None:
        return None
    found = query.scope.store(meta).read(meta.kv_class, kv_id)
    if found is None:
        return None
    return query.model._from_stored(found.data, found.version, query.scope)


def _matches(instance: ModelBase, values: Mapping[str, Any]) -> bool:
    fields = instance._meta.fields
    return all(
        instance._values.get(name) == fields[name].clean(value) for name, value in values.items()
    )


def get_or_create(
    query: _Query, defaults: Mapping[str, Any] | None, lookups: Mapping[str, Any]
) -> tuple[Any, bool]:
    """``(object, created)``: the object matching ``lookups``, else a new one made of the
    exact lookups and ``defaults``. Two processes racing create exactly one object: the
    create is create-only on the key or on a unique value, and the loser reads the winner."""
    meta = query.meta
    _race_safe_by(meta, lookups)
    try:
        return query.with_data().filter(**lookups).get(), False
    except DoesNotExist:
        pass
    values = _resolved(meta, _create_values(lookups, defaults))
    instance = query.model(**values)
    instance._scope = query.scope
    try:
        instance.save()
    except (Conflict, IntegrityError) as exc:
        winner = _holder(query, values, exc)
        exact = _resolved(meta, _create_values(lookups, None))
        if (
            winner is None
            or winner._values.get("deleted_at") is not None
            or not _matches(winner, exact)
        ):
            raise
        return winner, False
    return instance, True


def update_or_create(
    query: _Query, defaults: Mapping[str, Any] | None, lookups: Mapping[str, Any]
) -> tuple[Any, bool]:
    """``(object, created)``: the object matching ``lookups`` updated with ``defaults``, or a
    new one. An update that meets a concurrent change is retried once from a fresh read."""
    changes = {
        name: value() if callable(value) else value for name, value in (defaults or {}).items()
    }
    instance, created = get_or_create(query, changes, lookups)
    if created:
        return instance, True
    for attempt in (1, 2):
        instance.set(changes)
        try:
            instance.save()
        except Conflict:
            if attempt == 2:
                raise
            instance = _holder(query, dict(instance._values), Conflict("changed"))
            if instance is None:
                raise
            continue
        break
    return instance, False
