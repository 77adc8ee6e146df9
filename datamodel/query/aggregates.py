"""Aggregates for ``aggregate()`` and ``values(...).annotate()``: declarative, as Django's.

::

    Page.objects.system().filter(project_id=p).aggregate(n=Count(), top=Max("priority"))
    Page.objects.system().values("status").annotate(n=Count()).order_by("status")
"""

from __future__ import annotations

from typing import Any, ClassVar

from datastore.sqlbuild import quote_identifier

from ..fields import Boolean, Field, Integer, Number

__all__ = ["Aggregate", "Avg", "Count", "Max", "Min", "Sum"]


class Aggregate:
    """``function(column)`` over the matching rows; ``empty_result_set_value`` with no rows."""

    function: ClassVar[str]
    numeric_only: ClassVar[bool] = False
    empty_result_set_value: ClassVar[Any] = None

    def __init__(self, field: str, *, distinct: bool = False) -> None:
        if not isinstance(field, str) or not field:
            raise TypeError(f"{type(self).__name__}() needs a field name")
        self.field = field
        self.distinct = distinct

    def check(self, fields: dict[str, Field], sync_fields: list[str]) -> str | None:
        """A message naming the problem if this aggregate cannot run on the model, else None."""
        if self.field not in sync_fields:
            return f"{self.field!r} is not a sync field"
        if self.numeric_only and not isinstance(fields[self.field], (Integer, Number, Boolean)):
            return f"{type(self).__name__} needs a number field; {self.field!r} is not one"
        return None

    def as_sql(self) -> str:
        distinct = "DISTINCT " if self.distinct else ""
        return f"{self.function}({distinct}{quote_identifier(self.field)})"

    def convert(self, value: Any, fields: dict[str, Field]) -> Any:
        """The Python value of the SQL result."""
        if value is None:
            return self.empty_result_set_value
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.field!r}{', distinct=True' if self.distinct else ''})"


class Count(Aggregate):
    """``Count()`` counts rows; ``Count("field")`` rows where the field is not NULL."""

    function = "COUNT"
    empty_result_set_value = 0

    def __init__(self, field: str = "*", *, distinct: bool = False) -> None:
        if field == "*" and distinct:
            raise TypeError("Count('*', distinct=True) is not a count of anything")
        super().__init__(field, distinct=distinct)

    def check(self, fields: dict[str, Field], sync_fields: list[str]) -> str | None:
        return None if self.field == "*" else super().check(fields, sync_fields)

    def as_sql(self) -> str:
        return "COUNT(*)" if self.field == "*" else super().as_sql()

    def convert(self, value: Any, fields: dict[str, Field]) -> Any:
        return int(value or 0)


class Sum(Aggregate):
    function = "SUM"
    numeric_only = True

    def convert(self, value: Any, fields: dict[str, Field]) -> Any:
        if value is None:
            return None
        return int(value) if isinstance(fields[self.field], (Integer, Boolean)) else value


class Avg(Aggregate):
    function = "AVG"
    numeric_only = True

    def convert(self, value: Any, fields: dict[str, Field]) -> Any:
        return None if value is None else float(value)


class Min(Aggregate):
    function = "MIN"

    def convert(self, value: Any, fields: dict[str, Field]) -> Any:
        return None if value is None else fields[self.field].from_sql(value)


class Max(Min):
    function = "MAX"
