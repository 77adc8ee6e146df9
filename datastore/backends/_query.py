"""``query`` and ``count`` over JSON values: filters, their Python evaluation (the streaming
scan every backend can do) and their SQLite translation (the push-down).

A filter is ``{"field": "a.b", "operator": "gte", "value": 3}`` (or ``Filter(...)``); several
filters all apply. Values that are not JSON objects never match. Comparisons are between values
of the same kind only: numbers with numbers (booleans are not numbers), strings with strings,
``true``/``false``/``null`` by equality. A missing field matches only ``ne``. ``contains`` is a
substring test on strings and a membership test on arrays; ``startswith``/``endswith`` take
strings. Sorting orders missing/null first, then booleans and numbers, then strings, then
arrays and objects, and breaks ties by key.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..contract import Filter, QueryHit
from ..errors import InvalidValue

__all__ = [
    "OPERATORS",
    "Filter",
    "QueryHit",
    "Rules",
    "matches",
    "parse_filters",
    "parse_sort",
    "select",
    "sort_key",
    "sqlite_filter",
    "sqlite_order",
]

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "startswith", "endswith")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MISSING: Any = object()


Rules = list[Filter]  # for signatures inside classes that have a ``list`` method


def _path(field: Any) -> list[str]:
    if not isinstance(field, str) or not field:
        raise InvalidValue(f"filter field must be a dotted path like 'a.b', not {field!r}")
    segments = field.split(".")
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise InvalidValue(f"invalid field path {field!r}: use letters, digits, '_', '-' and '.'")
    return segments


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def parse_filters(filters: Any) -> list[Filter]:
    """Normalise ``None``, one filter or a list of filters (dicts or ``Filter``)."""
    if filters is None:
        return []
    if isinstance(filters, (Filter, Mapping)):
        filters = [filters]
    parsed = []
    for item in filters:
        if isinstance(item, Mapping):
            unknown = set(item) - {"field", "operator", "value"}
            if unknown:
                raise InvalidValue(f"unknown filter key(s): {', '.join(sorted(unknown))}")
            item = Filter(
                str(item.get("field") or ""), str(item.get("operator", "eq")), item.get("value")
            )
        if not isinstance(item, Filter):
            raise InvalidValue(f"a filter is a dict or Filter, not {type(item).__name__}")
        _path(item.field)
        if item.operator not in OPERATORS:
            raise InvalidValue(f"unknown operator {item.operator!r}: use {', '.join(OPERATORS)}")
        if not _scalar(item.value):
            raise InvalidValue("filter values are JSON scalars (string, number, bool, null)")
        if item.operator in ("startswith", "endswith") and not isinstance(item.value, str):
            raise InvalidValue(f"{item.operator!r} needs a string")
        if item.operator in ("gt", "gte", "lt", "lte") and (
            item.value is None or isinstance(item.value, bool)
        ):
            raise InvalidValue(f"{item.operator!r} compares numbers or strings")
        parsed.append(item)
    return parsed


def parse_sort(sort: Any) -> tuple[str, bool] | None:
    """``"field"``, ``"-field"`` or ``{"field": ..., "order": "asc"|"desc"}`` -> (path, desc)."""
    if sort is None:
        return None
    if isinstance(sort, str):
        field, descending = sort.lstrip("-"), sort.startswith("-")
    elif isinstance(sort, Mapping):
        order = sort.get("order", "asc")
        if order not in ("asc", "desc"):
            raise InvalidValue(f"sort order must be 'asc' or 'desc', not {order!r}")
        field, descending = str(sort.get("field") or ""), order == "desc"
    else:
        raise InvalidValue("sort is a field name ('-' for descending) or {field, order}")
    _path(field)
    return field, descending


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def extract(document: Any, field: str) -> Any:
    for segment in field.split("."):
        if not isinstance(document, dict) or segment not in document:
            return _MISSING
        document = document[segment]
    return document


def _test(found: Any, rule: Filter) -> bool:
    operator, expected = rule.operator, rule.value
    if operator == "ne":
        return not _test(found, Filter(rule.field, "eq", expected))
    if found is _MISSING:
        return False
    if operator == "contains":
        if isinstance(found, str):
            return isinstance(expected, str) and expected in found
        if isinstance(found, list):
            return any(_kind(item) == _kind(expected) and item == expected for item in found)
        return False
    if _kind(found) != _kind(expected):
        return False
    if operator == "eq":
        return bool(found == expected)
    if operator == "startswith":
        return bool(found.startswith(expected))
    if operator == "endswith":
        return bool(found.endswith(expected))
    return {
        "gt": found > expected,
        "gte": found >= expected,
        "lt": found < expected,
        "lte": found <= expected,
    }[operator]


def matches(document: Any, filters: list[Filter]) -> bool:
    return isinstance(document, dict) and all(
        _test(extract(document, rule.field), rule) for rule in filters
    )


def sort_key(document: Any, field: str, key: str) -> tuple[Any, ...]:
    value = extract(document, field)
    if value is _MISSING or value is None:
        return (0, 0, key)
    if isinstance(value, (bool, int, float)):
        return (1, float(value), key)
    if isinstance(value, str):
        return (2, value, key)
    return (3, json.dumps(value, separators=(",", ":")), key)


def select(
    hits: Iterable[QueryHit],
    filters: list[Filter],
    sort: tuple[str, bool] | None,
    limit: int,
    offset: int,
) -> list[QueryHit]:
    """Filter, sort and page a stream, keeping at most ``offset + limit`` hits in memory."""
    wanted = offset + limit
    matching: Iterator[QueryHit] = (hit for hit in hits if matches(hit.value, filters))
    if sort is None:
        page: list[QueryHit] = []
        for hit in matching:
            page.append(hit)
            if len(page) >= wanted:
                break
        return page[offset:]
    field, descending = sort
    pick = heapq.nlargest if descending else heapq.nsmallest
    best = pick(wanted, matching, key=lambda hit: sort_key(hit.value, field, hit.key))
    return best[offset:]


# -- SQLite push-down ------------------------------------------------------------------------

DOCUMENT = "CAST(nimbus_kv.value AS TEXT)"  # qualified: json_each has a "value" too
_KIND_SQL = {
    "string": "= 'text'",
    "number": "IN ('integer', 'real')",
    "null": "= 'null'",
}


def _json_path(field: str) -> str:
    return "$" + "".join(f'."{segment}"' for segment in field.split("."))


def sqlite_filter(rule: Filter) -> tuple[str, list[Any]]:
    """One filter as a SQL condition over the JSON text in ``value`` (same rules as ``_test``)."""
    path = _json_path(rule.field)
    kind = f"json_type({DOCUMENT}, ?)"
    extracted = f"json_extract({DOCUMENT}, ?)"
    expected, operator = rule.value, rule.operator
    if operator == "ne":
        inner, params = sqlite_filter(Filter(rule.field, "eq", expected))
        return f"NOT COALESCE(({inner}), 0)", params
    if operator == "contains":
        element_kind = {
            "string": "item.type = 'text'",
            "number": "item.type IN ('integer', 'real')",
            "null": "item.type = 'null'",
            "bool": "item.type = " + ("'true'" if expected else "'false'"),
        }[_kind(expected)]
        element_value = "" if _kind(expected) in ("null", "bool") else " AND item.value = ?"
        in_array = (
            f"({kind} = 'array' AND EXISTS (SELECT 1 FROM json_each({DOCUMENT}, ?) AS item "
            f"WHERE {element_kind}{element_value}))"
        )
        array_params: list[Any] = [path, path, *([expected] if element_value else [])]
        if isinstance(expected, str):
            in_text = f"({kind} = 'text' AND instr({extracted}, ?) > 0)"
            return f"({in_text} OR {in_array})", [path, path, expected, *array_params]
        return in_array, array_params
    if isinstance(expected, bool):
        return f"{kind} = '{'true' if expected else 'false'}'", [path]
    type_test = f"{kind} {_KIND_SQL[_kind(expected)]}"
    if expected is None:
        return type_test, [path]
    if operator == "startswith":
        return (
            f"({type_test} AND substr({extracted}, 1, length(?)) = ?)",
            [path, path, expected, expected],
        )
    if operator == "endswith":
        return (
            f"({type_test} AND (? = '' OR substr({extracted}, -length(?)) = ?))",
            [path, expected, path, expected, expected],
        )
    comparison = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
    return f"({type_test} AND {extracted} {comparison} ?)", [path, path, expected]


def sqlite_order(sort: tuple[str, bool]) -> tuple[str, list[Any]]:
    field, descending = sort
    path = _json_path(field)
    direction = "DESC" if descending else "ASC"
    rank = (
        f"CASE json_type({DOCUMENT}, ?) WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1 "
        "WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'array' THEN 3 "
        "WHEN 'object' THEN 3 ELSE 0 END"
    )
    return (
        f"{rank} {direction}, json_extract({DOCUMENT}, ?) {direction}, key {direction}",
        [path, path],
    )
