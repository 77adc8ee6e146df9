"""What a fetched metadata row becomes: a dict row, a model instance, a values dict or tuple.

Each query set carries one of these (``with_data()``, ``values()``, ``values_list()`` choose
it), so pages, ``first()`` and ``iterator()`` never branch on flags.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..related import load_related

if TYPE_CHECKING:
    from ..options import Options
    from ..scope import Scope


class _Query(Protocol):
    """What an iterable reads of its query set (``QuerySet`` sits above this module)."""

    model: Any
    meta: Options
    scope: Scope
    _fields: tuple[str, ...] | None
    _annotations: dict[str, Any]
    _related: tuple[str, ...]


__all__ = [
    "FlatValuesListIterable",
    "ModelIterable",
    "RowIterable",
    "ValuesIterable",
    "ValuesListIterable",
]

logger = logging.getLogger("datamodel.query")


class RowIterable:
    """The metadata row as a dict of every sync field (the default)."""

    needs_kv = False

    def __init__(self, query: _Query) -> None:
        self.query = query

    def columns(self) -> list[str]:
        return list(self.query.meta.sync_fields)

    def convert(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        return list(rows)


class ModelIterable(RowIterable):
    """Model instances, read from KV in one bulk read per batch of rows (``with_data()``),
    with the objects their references point at in one more per referenced model
    (``with_related()``)."""

    needs_kv = True

    def convert(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        if not rows:
            return []
        meta = self.query.meta
        ids = [meta.kv_id(row) for row in rows]
        return self.build(rows, self.query.scope.store(meta).read_many(meta.kv_class, ids))

    def build(self, rows: Sequence[dict[str, Any]], stored: Mapping[str, Any]) -> list[Any]:
        """The instances of ``rows`` from their objects, read already (``stored``: by KV id)."""
        query = self.query
        meta = query.meta
        ids = [meta.kv_id(row) for row in rows]
        instances = []
        for kv_id in ids:
            found = stored.get(kv_id)
            if found is None:
                logger.warning("%s %s has a metadata row but no KV object", meta.name, kv_id)
                continue
            instances.append(query.model._from_stored(found.data, found.version, query.scope))
        if query._related:
            load_related(instances, query._related, query.scope)
        return instances


class ValuesIterable(RowIterable):
    """``values(*fields)``: dicts of the chosen sync fields, straight from the row."""

    def columns(self) -> list[str]:
        fields = list(self.query._fields or self.query.meta.sync_fields)
        return [*fields, *self.query._annotations]

    def convert(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        columns = self.columns()
        return [{column: row[column] for column in columns} for row in rows]


class ValuesListIterable(ValuesIterable):
    """``values_list(*fields)``: tuples in the order of the fields."""

    def convert(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        columns = self.columns()
        return [tuple(row[column] for column in columns) for row in rows]


class FlatValuesListIterable(ValuesIterable):
    """``values_list(field, flat=True)``: the single field's values."""

    def convert(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        column = self.columns()[0]
        return [row[column] for row in rows]
