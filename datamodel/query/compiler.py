"""The SQL compiler: a query's state -> parameterized SQLite/D1 statements.

Field names and lookups are resolved against the model when a filter is added
(``resolve``), so a statement only ever holds quoted known identifiers and bound values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from datastore.contract import Statement
from datastore.sqlbuild import quote_identifier

from ..errors import ValidationError
from .expressions import OrderBy, Q
from .lookups import Lookup, lookups_for

if TYPE_CHECKING:
    from ..options import Options
    from ..scope import Scope
    from .aggregates import Aggregate

__all__ = ["Compiler", "WhereNode", "resolve", "resolve_field"]


@dataclass(frozen=True)
class WhereNode:
    """Resolved conditions: lookups and nested nodes joined by ``connector``."""

    children: tuple[WhereNode | Lookup, ...] = ()
    connector: str = Q.AND
    negated: bool = False

    def as_sql(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        for child in self.children:
            sql, child_params = child.as_sql()
            parts.append(f"({sql})" if isinstance(child, WhereNode) else sql)
            params.extend(child_params)
        if not parts:
            sql = "1" if self.connector == Q.AND else "0"
        else:
            sql = f" {self.connector} ".join(parts)
        if self.negated:
            # NOT over a NULL comparison is NULL (false): "IS NOT 1" keeps a NULL column's
            # row in an exclude(), as a lookup on NULL counts as false.
            return f"({sql}) IS NOT 1", params
        return sql, params

    def equalities(self) -> set[str]:
        """Columns this node pins with ``=`` for every row it matches (its top-level AND)."""
        if self.negated or (self.connector != Q.AND and len(self.children) > 1):
            return set()
        found: set[str] = set()
        for child in self.children:
            if isinstance(child, WhereNode):
                found |= child.equalities()
            elif child.is_equality:
                found.add(child.column)
        return found


def resolve_field(meta: Options, name: str, purpose: str) -> str:
    """The column for ``name`` (``pk`` is the primary key); only sync fields have columns."""
    if name == "pk":
        return meta.pk_name
    if name not in meta.sync_fields:
        if name in meta.fields:
            problem = f"cannot {purpose}: {name!r} is not a sync field of {meta.name}"
        else:
            problem = f"cannot {purpose}: {meta.name} has no field {name!r}"
        raise ValidationError({name: [f"{problem} (sync fields: {', '.join(meta.sync_fields)})"]})
    return name


def _lookup(meta: Options, key: str, value: Any) -> Lookup:
    name, _, lookup_name = key.partition("__")
    column = resolve_field(meta, name, "filter")
    model_field = meta.fields[column]
    available = lookups_for(model_field)
    lookup_class = available.get(lookup_name or "exact")
    if lookup_class is None:
        raise ValidationError(
            {
                key: [
                    f"unknown lookup {lookup_name!r} for {model_field.type_name} field "
                    f"{column!r}: use one of {', '.join(available)}"
                ]
            }
        )
    try:
        return lookup_class(column, model_field, value)
    except ValueError as exc:
        raise ValidationError({key: [str(exc)]}) from None


def resolve(meta: Options, q: Q) -> WhereNode:
    """Check every lookup of ``q`` against the model; the resolved tree."""
    children: list[WhereNode | Lookup] = []
    for child in q.children:
        if isinstance(child, Q):
            node = resolve(meta, child)
            if node.children:
                children.append(node)
        else:
            key, value = child
            children.append(_lookup(meta, key, value))
    if not children:
        # An empty Q() is no condition, negated or not (as in Django): ~Q() and exclude()
        # keep every row, as filter(Q()) does.
        return WhereNode()
    return WhereNode(tuple(children), q.connector, q.negated)


def keyset_segments(
    ordering: Sequence[OrderBy], values: Sequence[Any], nullable: Mapping[str, bool]
) -> list[tuple[str, list[Any]]]:
    """The rows after a cursor row, as conditions whose rows follow each other in order.

    Rows after ``(v1, ..., vn)`` in the order ``c1, ..., cn`` (the last one the primary key) are
    those equal on ``c1..ci-1`` and after ``vi`` on ``ci``, deepest level first. Each segment
    is a plain range an index on the ordering can seek to (never an OR), so a deep cursor
    page costs what the first page costs. The deepest run of columns in one direction folds
    into one row-value comparison where NULLs cannot break it. NULLs sort first ascending and
    last descending, as SQLite orders them.
    """
    columns = [quote_identifier(order.field) for order in ordering]
    last = len(ordering) - 1
    # The deepest levels that one row-value comparison can cover.
    start = last
    while start > 0:
        previous = ordering[start - 1]
        if previous.descending != ordering[last].descending or values[start - 1] is None:
            break
        # Descending, a NULL inside the tuple would drop rows that follow: only non-nullable
        # columns may stand after the first one.
        if previous.descending and any(nullable[o.field] for o in ordering[start : last + 1]):
            break
        start -= 1

    def prefix(level: int) -> tuple[list[str], list[Any]]:
        clauses, params = [], []
        for column, value in zip(columns[:level], values[:level], strict=True):
            if value is None:
                clauses.append(f"{column} IS NULL")
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        return clauses, params

    segments: list[tuple[str, list[Any]]] = []
    clauses, params = prefix(start)
    operator = "<" if ordering[last].descending else ">"
    if start == last:
        run = f"{columns[last]} {operator} ?"
    else:
        marks = ", ".join("?" for _ in range(start, last + 1))
        run = f"({', '.join(columns[start:])}) {operator} ({marks})"
    segments.append((" AND ".join([*clauses, run]), [*params, *values[start:]]))
    if start < last and ordering[start].descending and nullable[ordering[start].field]:
        # Descending, NULLs come after every value of the run's first column.
        segments.append((" AND ".join([*clauses, f"{columns[start]} IS NULL"]), params))
    for level in range(start - 1, -1, -1):
        clauses, params = prefix(level)
        column, value = columns[level], values[level]
        parts: list[tuple[str, list[Any]]]
        if not ordering[level].descending:
            parts = (
                [(f"{column} IS NOT NULL", [])] if value is None else [(f"{column} > ?", [value])]
            )
        elif value is None:
            parts = []
        else:
            parts = [(f"{column} < ?", [value]), (f"{column} IS NULL", [])]
        for sql, part_params in parts:
            segments.append((" AND ".join([*clauses, sql]), [*params, *part_params]))
    return segments


class QueryState(Protocol):
    """What the compiler reads of a query set (``QuerySet`` sits above this module)."""

    meta: Options
    scope: Scope
    _where: WhereNode
    _deleted: str
    _fields: tuple[str, ...] | None
    _annotations: dict[str, Aggregate]
    _distinct: bool

    def _full_ordering(self) -> tuple[OrderBy, ...]: ...
    def _group_ordering(self) -> tuple[OrderBy, ...]: ...
    def _grouped(self) -> bool: ...


class Compiler:
    """Statements for one query set."""

    def __init__(self, query: QueryState) -> None:
        self.query = query
        self.meta = query.meta
        self.table = quote_identifier(self.meta.table)

    # -- WHERE -----------------------------------------------------------------------------

    def where(self, segment: tuple[str, list[Any]] | None = None) -> tuple[str, list[Any]]:
        query, meta = self.query, self.meta
        clauses: list[str] = []
        params: list[Any] = []
        user_id = query.scope.user_id
        if user_id is not None:
            if meta.user_tracking:
                # "+" keeps SQLite off the owner's index where a declared index leads with
                # this query's other equalities: that one seeks straight to the rows.
                clauses.append('+"user_id" = ?' if self.served_by_index() else '"user_id" = ?')
                params.append(user_id)
            elif meta.auth:
                clauses.append('EXISTS (SELECT 1 FROM json_each("_auth") WHERE value = ?)')
                params.append(user_id)
        if meta.soft_delete and query._deleted != "include":
            clauses.append(
                '"deleted_at" IS NULL'
                if query._deleted == "exclude"
                else '"deleted_at" IS NOT NULL'
            )
        if query._where.children:
            sql, where_params = query._where.as_sql()
            clauses.append(
                f"({sql})" if len(query._where.children) > 1 or query._where.negated else sql
            )
            params.extend(where_params)
        if segment is not None:
            clauses.append(segment[0])
            params.extend(segment[1])
        return (" AND ".join(clauses) or "1"), params

    def served_by_index(self) -> bool:
        """Whether an index of the model starts with exactly the columns this query compares
        for equality (``deleted_at IS NULL`` included), besides the owner."""
        equal = self.query._where.equalities() - {"user_id"}
        if not equal:
            return False
        if self.meta.soft_delete and self.query._deleted == "exclude":
            equal.add("deleted_at")
        return any(set(index[: len(equal)]) == equal for index in self.meta.indexes)

    # -- SELECT ----------------------------------------------------------------------------

    def order_sql(self, ordering: Sequence[OrderBy]) -> str:
        return ", ".join(
            f"{quote_identifier(order.field)} {'DESC' if order.descending else 'ASC'}"
            for order in ordering
        )

    def select(
        self,
        columns: Sequence[str],
        limit: int | None,
        offset: int,
        segment: tuple[str, list[Any]] | None = None,
    ) -> Statement:
        where, params = self.where(segment)
        ordering = self.query._full_ordering()
        selected = ", ".join(quote_identifier(column) for column in columns)
        sql = (
            f"SELECT {selected} FROM {self.table} WHERE {where} ORDER BY {self.order_sql(ordering)}"
        )
        return self._limited(sql, params, limit, offset)

    @staticmethod
    def _limited(sql: str, params: list[Any], limit: int | None, offset: int) -> Statement:
        if limit is None and not offset:
            return sql, params
        return f"{sql} LIMIT ? OFFSET ?", [*params, -1 if limit is None else limit, offset]

    def selects(
        self, columns: Sequence[str], limit: int, offset: int, after: list[Any] | None
    ) -> list[Statement]:
        """The statements whose rows, in order, make a page: one select, or one per keyset
        segment after a cursor."""
        if after is None:
            return [self.select(columns, limit, offset)]
        ordering = self.query._full_ordering()
        nullable = {order.field: order.field != self.meta.pk_name for order in ordering}
        return [
            self.select(columns, limit, 0, segment)
            for segment in keyset_segments(ordering, after, nullable)
        ]

    def count(self) -> Statement:
        if self.query._grouped():
            sql, params = self.grouped(None, 0)
            return f"SELECT count(*) AS total FROM ({sql})", list(params)
        where, params = self.where()
        return f"SELECT count(*) AS total FROM {self.table} WHERE {where}", params

    def exists(self) -> Statement:
        where, params = self.where()
        return f"SELECT 1 AS found FROM {self.table} WHERE {where} LIMIT 1", params

    def aggregate(self, aggregates: Mapping[str, Any]) -> Statement:
        where, params = self.where()
        selected = ", ".join(
            f"{aggregate.as_sql()} AS {quote_identifier(alias)}"
            for alias, aggregate in aggregates.items()
        )
        return f"SELECT {selected} FROM {self.table} WHERE {where}", params

    def grouped(self, limit: int | None, offset: int) -> Statement:
        """``values(...).annotate(...)`` (GROUP BY) or ``values(...).distinct()``."""
        query = self.query
        fields = list(query._fields or ())
        where, params = self.where()
        selected = [quote_identifier(field) for field in fields]
        selected += [
            f"{aggregate.as_sql()} AS {quote_identifier(alias)}"
            for alias, aggregate in query._annotations.items()
        ]
        distinct = "DISTINCT " if query._distinct and not query._annotations else ""
        sql = f"SELECT {distinct}{', '.join(selected)} FROM {self.table} WHERE {where}"
        if query._annotations and fields:
            sql += f" GROUP BY {', '.join(quote_identifier(field) for field in fields)}"
        ordering = query._group_ordering()
        if ordering:
            sql += f" ORDER BY {self.order_sql(ordering)}"
        return self._limited(sql, params, limit, offset)
