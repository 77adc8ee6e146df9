"""Lookups: one class per comparison, preparing its value and writing its SQL together.

``filter(priority__gte=3)`` resolves to ``GreaterThanOrEqual(column, field, 3)``. A lookup
checks its value against the field when it is built (a clear ``ValueError`` naming the
problem), keeps it as a bound parameter, and renders a condition that is never NULL for a NULL
column's sake in the way ``exclude()`` needs: every lookup except ``isnull`` and ``exact=None``
is false on a NULL column, and negation is rendered ``(...) IS NOT 1`` so that stays true.

Which lookups a field takes depends on its type (``LOOKUPS_BY_TYPE``): text fields take the
string lookups, an ``Array`` sync field takes ``contains`` (membership) and ``isnull``.

The ``i`` lookups (``iexact``, ``icontains``, ``istartswith``, ``iendswith``) fold ASCII
letters only, as SQLite's and D1's ``lower()`` does: ``title__iexact="CAFÉ"`` matches
``"cafÉ"`` but not ``"café"``. Text otherwise compares by code point.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from datastore.sqlbuild import quote_identifier

from ..fields import Array, Boolean, Field, Integer, Number, String

__all__ = ["LOOKUPS", "Lookup", "lookups_for"]


class Lookup:
    """``column <operator> value``; subclasses set ``lookup_name`` and ``template``."""

    lookup_name: ClassVar[str]
    template: ClassVar[str] = ""

    def __init__(self, column: str, field: Field, value: Any) -> None:
        self.column = column
        self.field = field
        self.value = self.prepare(value)

    def prepare(self, value: Any) -> Any:
        """The bound value: the field's column form of ``value``."""
        return _column_value(self.field, value)

    def params(self) -> list[Any]:
        return [self.value]

    def as_sql(self) -> tuple[str, list[Any]]:
        return self.template.format(column=quote_identifier(self.column)), self.params()

    @property
    def is_equality(self) -> bool:
        """Whether an index on the column serves this lookup as an equality (``=``)."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.column!r}, {self.value!r})"


def _column_value(field: Field, value: Any) -> Any:
    if value is None:
        raise ValueError("cannot compare with null: use __isnull=True")
    return field.to_sql(field.clean(value))


class Exact(Lookup):
    lookup_name = "exact"
    template = "{column} = ?"

    def prepare(self, value: Any) -> Any:
        return None if value is None else _column_value(self.field, value)

    def as_sql(self) -> tuple[str, list[Any]]:
        column = quote_identifier(self.column)
        if self.value is None:
            return f"{column} IS NULL", []
        return f"{column} = ?", [self.value]

    @property
    def is_equality(self) -> bool:
        return self.value is not None


class NotEqual(Exact):
    """``ne``: different, NULL included (``where(field, "ne", value)``)."""

    lookup_name = "ne"

    def as_sql(self) -> tuple[str, list[Any]]:
        column = quote_identifier(self.column)
        if self.value is None:
            return f"{column} IS NOT NULL", []
        return f"({column} != ? OR {column} IS NULL)", [self.value]

    @property
    def is_equality(self) -> bool:
        return False


class TextLookup(Lookup):
    """A lookup whose value is a string pattern, compared as text."""

    def prepare(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"'{self.lookup_name}' needs a string, got {type(value).__name__}")
        return value


class IExact(TextLookup):
    lookup_name = "iexact"
    template = "lower({column}) = lower(?)"


class GreaterThan(Lookup):
    lookup_name = "gt"
    template = "{column} > ?"


class GreaterThanOrEqual(Lookup):
    lookup_name = "gte"
    template = "{column} >= ?"


class LessThan(Lookup):
    lookup_name = "lt"
    template = "{column} < ?"


class LessThanOrEqual(Lookup):
    lookup_name = "lte"
    template = "{column} <= ?"


class In(Lookup):
    """``in``: one bound JSON array whatever its size (D1 binds at most 100 parameters)."""

    lookup_name = "in"
    template = "{column} IN (SELECT value FROM json_each(?))"

    def prepare(self, value: Any) -> Any:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset)):
            raise ValueError("'in' needs a list of values")
        return [_column_value(self.field, item) for item in value if item is not None]

    def params(self) -> list[Any]:
        return [json.dumps(self.value)]


class Range(Lookup):
    lookup_name = "range"
    template = "{column} BETWEEN ? AND ?"

    def prepare(self, value: Any) -> Any:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise ValueError("'range' needs two values: (low, high)")
        return [_column_value(self.field, value[0]), _column_value(self.field, value[1])]

    def params(self) -> list[Any]:
        return list(self.value)


class IsNull(Lookup):
    lookup_name = "isnull"

    def prepare(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError("'isnull' needs True or False")
        return value

    def as_sql(self) -> tuple[str, list[Any]]:
        return f"{quote_identifier(self.column)} IS {'' if self.value else 'NOT '}NULL", []


class Contains(TextLookup):
    lookup_name = "contains"
    template = "instr({column}, ?) > 0"


class IContains(Contains):
    lookup_name = "icontains"
    template = "instr(lower({column}), lower(?)) > 0"


class StartsWith(TextLookup):
    lookup_name = "startswith"
    template = "substr({column}, 1, length(?)) = ?"

    def params(self) -> list[Any]:
        return [self.value, self.value]


class IStartsWith(StartsWith):
    lookup_name = "istartswith"
    template = "lower(substr({column}, 1, length(?))) = lower(?)"


class EndsWith(StartsWith):
    lookup_name = "endswith"
    # substr(x, -0) is not the empty suffix, so the empty pattern is matched on its own.
    template = "(? = '' AND {column} IS NOT NULL OR substr({column}, -length(?)) = ?)"

    def params(self) -> list[Any]:
        return [self.value, self.value, self.value]


class IEndsWith(EndsWith):
    lookup_name = "iendswith"
    template = "(? = '' AND {column} IS NOT NULL OR lower(substr({column}, -length(?))) = lower(?))"


class ArrayContains(Lookup):
    """``tags__contains="seo"``: the array holds this item."""

    lookup_name = "contains"
    template = "EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)"

    def prepare(self, value: Any) -> Any:
        item_field = self.field.of if isinstance(self.field, Array) else None
        if value is None:
            raise ValueError("cannot look for null in an array")
        cleaned = item_field.clean(value) if item_field is not None else value
        return item_field.to_sql(cleaned) if item_field is not None else cleaned


_COMPARE = (Exact, NotEqual, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual, In)
_TEXT = (
    *_COMPARE,
    Range,
    IsNull,
    IExact,
    Contains,
    IContains,
    StartsWith,
    IStartsWith,
    EndsWith,
    IEndsWith,
)
_NUMBER = (*_COMPARE, Range, IsNull)


def _table(*classes: type[Lookup]) -> dict[str, type[Lookup]]:
    return {cls.lookup_name: cls for cls in classes}


LOOKUPS: dict[str, dict[str, type[Lookup]]] = {
    "text": _table(*_TEXT),
    "number": _table(*_NUMBER),
    "boolean": _table(Exact, NotEqual, In, IsNull),
    "array": _table(ArrayContains, IsNull),
}


def lookups_for(field: Field) -> dict[str, type[Lookup]]:
    """The lookups a field's type takes, by name."""
    if isinstance(field, Array):
        return LOOKUPS["array"]
    if isinstance(field, Boolean):
        return LOOKUPS["boolean"]
    if isinstance(field, (Integer, Number)):
        return LOOKUPS["number"]
    if isinstance(field, String) or field.sql_type == "TEXT":
        return LOOKUPS["text"]
    return LOOKUPS["number"]
