"""Pages of results and the opaque keyset cursor that continues after one."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import ValidationError

__all__ = ["Page", "decode_cursor", "encode_cursor"]

M = TypeVar("M")

# A cursor's values go to the database as bound parameters: SQL integers are signed 64-bit.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


@dataclass
class Page(Generic[M]):
    """One page of results: ``data`` (metadata rows, instances with ``with_data()``, or
    ``values()`` dicts) and ``pagination``."""

    data: list[Any]
    pagination: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        rows = [item.get_data() if hasattr(item, "get_data") else item for item in self.data]
        return {"data": rows, "pagination": self.pagination}


def encode_cursor(ordering: list[str], values: list[Any]) -> str:
    """The cursor after a row: its ordering (``["-priority", "page_id"]``) and its values."""
    raw = json.dumps([ordering, values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[list[str], list[Any]]:
    """The ordering and values a cursor carries; ``ValidationError`` if it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeError, TypeError) as exc:
        raise ValidationError({"cursor": ["is not a valid cursor"]}) from exc
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not all(isinstance(part, list) for part in decoded)
        or len(decoded[0]) != len(decoded[1])
        or not all(isinstance(spec, str) for spec in decoded[0])
        or not all(_bindable(value) for value in decoded[1])
    ):
        raise ValidationError({"cursor": ["is not a valid cursor"]})
    return decoded[0], decoded[1]


def _bindable(value: Any) -> bool:
    """Whether ``value`` is one a cursor can carry: a column value every backend binds (no
    dict or list, no integer beyond 64 bits, no infinity, no lone surrogate in a string)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT_MIN <= value <= _INT_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False
