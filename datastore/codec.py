"""JSON encoding of stored objects: the one place that decides how values look in the store.

* compact UTF-8 JSON, readable by ``JSON.parse`` in a Worker;
* ``datetime`` becomes ISO-8601 UTC with a ``Z`` suffix (naive datetimes are taken as UTC),
  ``date`` becomes ``YYYY-MM-DD``;
* ``bytes`` become base64 text (one way: decoding gives the string back);
* sets and tuples become arrays, ``Decimal`` a number;
* ``NaN`` and infinities are refused (they are not JSON and ``JSON.parse`` rejects them).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from .errors import InvalidValue

__all__ = ["MAX_DEPTH", "check_depth", "dumps", "isoformat", "loads"]

MAX_DEPTH = 64


def isoformat(value: dt.datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and ``Z``, like JavaScript's ``toISOString``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return isoformat(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidValue(f"cannot store {value}: not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    raise InvalidValue(f"cannot store a value of type {type(value).__name__} as JSON")


_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
)


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON bytes."""
    try:
        return _encoder.encode(value).encode("utf-8")
    except ValueError as exc:  # NaN/Infinity, circular references
        if isinstance(exc, InvalidValue):
            raise
        raise InvalidValue(f"cannot encode value as JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidValue("cannot encode value as JSON: nested too deeply") from exc


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """``InvalidValue`` if ``value`` nests dicts/lists deeper than ``max_depth`` levels."""
    if isinstance(value, (dict, list)) and _depth(value, max_depth) > max_depth:
        raise InvalidValue(f"value nests deeper than {max_depth} levels")


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes; ``InvalidValue`` if they are not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidValue(f"stored value is not valid JSON: {exc}") from exc
