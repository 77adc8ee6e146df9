"""``Q`` objects and orderings: the small immutable trees a query is built from.

``Q(status="done") | ~Q(priority__gte=3)`` combines lookups with ``&``, ``|`` and ``~`` into
new nodes, never changing the operands (as Django's ``Q``). A ``Q`` cannot be used as a
boolean: ``if Q(...)`` raises instead of being silently true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["OrderBy", "Q"]


class Q:
    """Lookups joined by AND (keyword arguments) or by the connector of a combination."""

    AND = "AND"
    OR = "OR"
    __slots__ = ("children", "connector", "negated")

    def __init__(self, *args: Q, **kwargs: Any) -> None:
        _connector = kwargs.pop("_connector", self.AND)
        _negated = bool(kwargs.pop("_negated", False))
        for arg in args:
            if not isinstance(arg, Q):
                raise TypeError(f"Q() takes Q objects and keyword lookups, not {arg!r}")
        if _connector not in (self.AND, self.OR):
            raise TypeError(f"unknown connector {_connector!r}")
        self.children: tuple[Q | tuple[str, Any], ...] = (*args, *kwargs.items())
        self.connector = _connector
        self.negated = _negated

    def _combine(self, other: Any, connector: str) -> Q:
        if not isinstance(other, Q):
            raise TypeError(f"cannot combine Q with {type(other).__name__}")
        if not other.children:
            return self
        if not self.children:
            return other
        return Q(self, other, _connector=connector)

    def __and__(self, other: Any) -> Q:
        return self._combine(other, self.AND)

    def __or__(self, other: Any) -> Q:
        return self._combine(other, self.OR)

    def __invert__(self) -> Q:
        return Q(self, _negated=True)

    def __bool__(self) -> bool:
        raise TypeError("a Q object has no truth value: combine it with & | ~, or filter() by it")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Q):
            return NotImplemented
        return (self.children, self.connector, self.negated) == (
            other.children,
            other.connector,
            other.negated,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [
            repr(child) if isinstance(child, Q) else f"{child[0]}={child[1]!r}"
            for child in self.children
        ]
        body = f" {self.connector} ".join(parts)
        return f"<Q: {'NOT ' if self.negated else ''}({body})>"


@dataclass(frozen=True)
class OrderBy:
    """One ordering column: ``OrderBy("priority", descending=True)`` is ``"-priority"``."""

    field: str
    descending: bool = False

    @classmethod
    def parse(cls, spec: str) -> OrderBy:
        """``"-priority"`` -> descending ``priority``; ``"priority"`` -> ascending."""
        return cls(spec[1:], True) if spec.startswith("-") else cls(spec, False)

    @property
    def spec(self) -> str:
        return f"-{self.field}" if self.descending else self.field

    def reversed(self) -> OrderBy:
        return OrderBy(self.field, not self.descending)
