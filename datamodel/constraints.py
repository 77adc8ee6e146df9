"""Unique constraints: ``fields.X(unique=True)`` and ``Meta.unique_together``.

A constraint is enforced where the truth is, in KV: each unique value (or combination) has a
*reservation* in the model's namespace, named ``{constraint}:{digest of the values}`` and holding
the id of the object that owns it. A save claims its reservations create-only in the same atomic
KV batch as the object, moves them when the values change, and releases them on hard delete;
a soft-deleted object keeps them unless the field says ``release_on_delete=True``. A ``None``
in any of the values reserves nothing (as SQL's UNIQUE lets NULLs repeat).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["UniqueConstraint"]


@dataclass(frozen=True)
class UniqueConstraint:
    """The values of ``fields`` are unique among a model's objects."""

    fields: tuple[str, ...]
    release_on_delete: bool = False

    @property
    def name(self) -> str:
        """``email``, or ``project_id+batch_id`` for several fields."""
        return "+".join(self.fields)

    def values(self, data: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The constrained values of an object, or ``None`` if one of them is ``None``."""
        values = tuple(data.get(name) for name in self.fields)
        return None if any(value is None for value in values) else values

    def reservation(
        self, values: tuple[Any, ...], to_sql: Mapping[str, Callable[[Any], Any]]
    ) -> str:
        """The reservation name of these values: the same values always give the same name."""
        column_values = [
            to_sql[name](value) for name, value in zip(self.fields, values, strict=True)
        ]
        encoded = json.dumps(column_values, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(encoded.encode()).hexdigest()[:40]
        return f"{self.name}:{digest}"

    def describe(self, values: tuple[Any, ...]) -> str:
        """``email='a@example.com'`` or ``(project_id, batch_id)=('p1', 'b1')``, for errors."""
        if len(self.fields) == 1:
            return f"{self.fields[0]}={values[0]!r}"
        return f"({', '.join(self.fields)})={values!r}"
