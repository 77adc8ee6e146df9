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
import copy
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from .errors import InvalidValue

__all__ = [
    "MAX_DEPTH",
    "check_depth",
    "copy_value",
    "dumps",
    "isoformat",
    "loads",
    "normalize",
]

MAX_DEPTH = 64


def isoformat(value: dt.datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and ``Z``, like JavaScript's ``toISOString``."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(dt.UTC)
    # "YYYY-MM-DDTHH:MM:SS.mmm" is the first 23 characters, whatever the offset suffix.
    return value.isoformat(timespec="milliseconds")[:23] + "Z"


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


# The immutable JSON types: nothing to descend into, nothing to copy.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _depth(value: Any, limit: int) -> int:
    """The nesting depth of ``value``, leaves included (``[1]`` is 2), stopping past
    ``limit``. Only containers are pushed: most values are scalars."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        reached = depth
        for child in children:
            kind = type(child)
            if kind in _SCALARS:
                reached = depth + 1
            elif kind is dict or kind is list or isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            else:
                reached = depth + 1
        if reached > deepest:
            deepest = reached
            if deepest > limit:
                return deepest
    return deepest


def copy_value(value: Any) -> Any:
    """A deep copy of a decoded JSON value (dicts, lists, scalars): what ``copy.deepcopy``
    gives, several times faster. Anything else is handed to ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {
            key: item if type(item) in _SCALARS else copy_value(item) for key, item in value.items()
        }
    if kind is list:
        return [item if type(item) in _SCALARS else copy_value(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


class _NotPlain(Exception):
    """A value the fast copy leaves to the encoder (another type, or a limit reached)."""


def _plain_copy(value: Any, depth: int, limit: int) -> Any:
    kind = type(value)
    if kind is dict:
        items = value.items()
    elif kind is list:
        items = enumerate(value)
    else:
        raise _NotPlain
    if depth > limit:
        raise _NotPlain
    leaves_fit = depth < limit
    copied: Any = {} if kind is dict else [None] * len(value)
    for key, item in items:
        if kind is dict and type(key) is not str:
            raise _NotPlain
        item_kind = type(item)
        if item_kind is str or item_kind is int or item_kind is bool or item is None:
            if not leaves_fit:
                raise _NotPlain
            copied[key] = item
        elif item_kind is float:
            if not leaves_fit or item != item or item in (_INFINITY, -_INFINITY):
                raise _NotPlain
            copied[key] = item
        else:
            copied[key] = _plain_copy(item, depth + 1, limit)
    return copied


_INFINITY = float("inf")


def normalize(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` exactly as it reads back once stored (tuples become lists, dates text, ...), as
    a fresh copy; ``InvalidValue`` if it cannot be stored or nests deeper than ``max_depth``.
    Plain JSON (dicts with string keys, lists, strings, numbers, booleans, None) takes a fast
    copy; anything else goes through the encoder and back."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    try:
        return _plain_copy(value, 1, max_depth)
    except (_NotPlain, RecursionError):
        check_depth(value, max_depth)
        return loads(dumps(value))


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
