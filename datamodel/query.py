"""Queries over a model's metadata table.

::

    page = (Page.objects.auth(user_id).query()
            .where("project_id", "proj_1").where("status", "in", ["queued", "done"])
            .order_by("created_at", "desc").limit(25).page(2)
            .list())
    page.data, page.pagination   # {total, limit, offset, page, pages, has_next, has_prev, ...}

Only sync fields can be filtered or ordered, and operators come from a fixed list, so neither a
field name nor an operator can inject SQL; values are always bound parameters. A ``list()`` is
one SQL round trip (rows and total in one batch); ``with_data()`` adds one bulk KV read that
returns full model instances instead of metadata rows. Deep pages: ``after(cursor)`` (keyset
pagination from ``pagination["next_cursor"]``); whole result sets: ``iterator()``, which
streams with bounded memory.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from datastore.sqlbuild import quote_identifier

from .errors import ValidationError
from .fields import MISSING, Array

if TYPE_CHECKING:
    from .instance import ModelBase
    from .scope import Scope

__all__ = ["OPERATORS", "Page", "Query"]

M = TypeVar("M", bound="ModelBase")
logger = logging.getLogger("datamodel.query")

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "startswith")
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
MAX_BATCH = 1000  # rows per iterator() batch


@dataclass
class Page(Generic[M]):
    """One page of results: ``data`` (metadata rows, or instances with ``with_data()``) and
    ``pagination``."""

    data: list[Any]
    pagination: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        rows = [item.get_data() if hasattr(item, "get_data") else item for item in self.data]
        return {"data": rows, "pagination": self.pagination}


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ValidationError({"cursor": ["is not a valid cursor"]}) from exc
    if not isinstance(values, list) or len(values) != 3:
        raise ValidationError({"cursor": ["is not a valid cursor"]})
    return values


class Query(Generic[M]):
    """A chainable, immutable query: each method returns a new query."""

    def __init__(self, model: type[M], scope: Scope) -> None:
        self.model = model
        self.scope = scope
        self.meta = model._meta
        self._conditions: list[tuple[str, str, Any]] = []
        self._order = self.meta.ordering
        self._limit = self.meta.default_limit
        self._offset = 0
        self._with_data = False
        self._deleted = "exclude"
        self._after: list[Any] | None = None

    def _clone(self) -> Query[M]:
        clone = copy.copy(self)
        clone._conditions = list(self._conditions)
        return clone

    # -- building ------------------------------------------------------------------------

    def _sync_field(self, name: str, purpose: str) -> Any:
        if name not in self.meta.sync_fields:
            raise ValidationError(
                {
                    name: [
                        f"cannot {purpose}: not a sync field of {self.meta.name} "
                        f"(sync fields: {', '.join(self.meta.sync_fields)})"
                    ]
                }
            )
        return self.meta.fields[name]

    def _clean(self, name: str, value: Any) -> Any:
        model_field = self.meta.fields[name]
        try:
            return model_field.to_sql(model_field.clean(value))
        except ValueError as exc:
            raise ValidationError({name: [str(exc)]}) from None

    def where(self, field: str, operator: Any = MISSING, value: Any = MISSING) -> Query[M]:
        """``where("status", "done")`` or ``where("n", "gte", 3)``."""
        if value is MISSING:
            operator, value = "eq", operator
        if operator not in OPERATORS:
            raise ValidationError(
                {field: [f"unknown operator {operator!r}: use one of {', '.join(OPERATORS)}"]}
            )
        model_field = self._sync_field(field, "filter")
        if operator == "in":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValidationError({field: ["'in' needs a list of values"]})
            cleaned: Any = [self._clean(field, item) for item in value]
        elif operator == "contains" and isinstance(model_field, Array):
            item_field = model_field.of
            try:
                cleaned = item_field.clean(value) if item_field is not None else value
            except ValueError as exc:
                raise ValidationError({field: [str(exc)]}) from None
        elif operator in ("contains", "startswith"):
            if not isinstance(value, str):
                raise ValidationError({field: [f"'{operator}' needs a string"]})
            cleaned = value
        elif value is None:
            if operator not in ("eq", "ne"):
                raise ValidationError({field: [f"'{operator}' cannot compare with null"]})
            cleaned = None
        else:
            cleaned = self._clean(field, value)
        clone = self._clone()
        clone._conditions.append((field, operator, cleaned))
        return clone

    def search(self, text: str, fields: Sequence[str]) -> Query[M]:
        """Rows where any of these text sync fields contains ``text`` (case-insensitive)."""
        if not isinstance(text, str):
            raise ValidationError({"search": ["must be a string"]})
        for name in fields:
            self._sync_field(name, "search")
        clone = self._clone()
        if text and fields:
            clone._conditions.append((",".join(fields), "search", text.lower()))
        return clone

    def where_in(self, field: str, values: Any) -> Query[M]:
        return self.where(field, "in", values)

    def filter(self, **lookups: Any) -> Query[M]:
        """Django-style lookups: ``filter(status="done", created_at__gte="2024-01-01T...")``."""
        query = self
        for lookup, value in lookups.items():
            field, _, operator = lookup.partition("__")
            query = query.where(field, operator or "eq", value)
        return query

    def order_by(self, field: str, direction: str = "asc") -> Query[M]:
        self._sync_field(field, "order by it")
        if direction not in ("asc", "desc"):
            raise ValidationError(
                {field: [f"direction must be 'asc' or 'desc', not {direction!r}"]}
            )
        clone = self._clone()
        clone._order = (field, direction)
        clone._after = None
        return clone

    def limit(self, count: int) -> Query[M]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValidationError({"limit": ["must be a positive integer"]})
        if count > self.meta.max_limit:
            raise ValidationError({"limit": [f"must be at most {self.meta.max_limit}"]})
        clone = self._clone()
        clone._limit = count
        return clone

    def offset(self, count: int) -> Query[M]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValidationError({"offset": ["must be a non-negative integer"]})
        clone = self._clone()
        clone._offset = count
        return clone

    def page(self, number: int) -> Query[M]:
        """1-based page of ``limit`` items (sets the offset)."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValidationError({"page": ["must be an integer >= 1"]})
        return self.offset((number - 1) * self._limit)

    def after(self, cursor: str | None) -> Query[M]:
        """Continue after the last row of a previous page (keyset pagination)."""
        clone = self._clone()
        if cursor:
            field, last_value, last_pk = _decode_cursor(cursor)
            if field != self._order[0]:
                raise ValidationError({"cursor": ["belongs to another ordering"]})
            clone._after = [last_value, last_pk]
        else:
            clone._after = None
        return clone

    def with_data(self) -> Query[M]:
        """Return full objects (model instances) read from KV in one bulk read per page."""
        clone = self._clone()
        clone._with_data = True
        return clone

    def include_deleted(self) -> Query[M]:
        clone = self._clone()
        clone._deleted = "include"
        return clone

    def only_deleted(self) -> Query[M]:
        clone = self._clone()
        clone._deleted = "only"
        return clone

    # -- SQL -----------------------------------------------------------------------------

    def _where(self, segment: tuple[str, list[Any]] | None = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        meta = self.meta
        user_id = self.scope.user_id
        if user_id is not None:
            if meta.user_tracking:
                # "+" keeps SQLite off the owner's index where a declared index leads with
                # this query's other equalities: that one seeks straight to the rows.
                clauses.append('+"user_id" = ?' if self._served_by_index() else '"user_id" = ?')
                params.append(user_id)
            elif meta.auth:
                clauses.append('EXISTS (SELECT 1 FROM json_each("_auth") WHERE value = ?)')
                params.append(user_id)
        if meta.soft_delete and self._deleted != "include":
            clauses.append(
                '"deleted_at" IS NULL' if self._deleted == "exclude" else '"deleted_at" IS NOT NULL'
            )
        for field, operator, value in self._conditions:
            if operator == "search":
                columns = [quote_identifier(name) for name in field.split(",")]
                matches = [f"instr(lower({column}), ?) > 0" for column in columns]
                clauses.append("(" + " OR ".join(matches) + ")")
                params.extend([value] * len(columns))
                continue
            column = quote_identifier(field)
            if operator == "eq":
                clauses.append(f"{column} IS NULL" if value is None else f"{column} = ?")
            elif operator == "ne":
                clauses.append(
                    f"{column} IS NOT NULL"
                    if value is None
                    else f"({column} != ? OR {column} IS NULL)"
                )
            elif operator in _COMPARISONS:
                clauses.append(f"{column} {_COMPARISONS[operator]} ?")
            elif operator == "in":
                clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
                value = json.dumps(value)
            elif operator == "contains":
                if isinstance(meta.fields[field], Array):
                    clauses.append(f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)")
                else:
                    clauses.append(f"instr({column}, ?) > 0")
            elif operator == "startswith":
                clauses.append(f"substr({column}, 1, ?) = ?")
                params.append(len(value))
            if value is not None:
                params.append(value)
        if segment is not None:
            clauses.append(segment[0])
            params.extend(segment[1])
        return (" AND ".join(clauses) or "1"), params

    def _served_by_index(self) -> bool:
        """Whether an index of the model starts with exactly the columns this query compares
        for equality (``deleted_at IS NULL`` included), besides the owner."""
        equal = {
            field
            for field, operator, _ in self._conditions
            if operator == "eq" and field != "user_id"
        }
        if not equal:
            return False
        if self.meta.soft_delete and self._deleted == "exclude":
            equal.add("deleted_at")
        return any(set(index[: len(equal)]) == equal for index in self.meta.indexes)

    def _keyset(self) -> list[tuple[str, list[Any]]]:
        """The rows after the cursor, as one or two conditions whose rows follow each other in
        the query's order. Each is a plain range an index can seek to (a row-value comparison,
        never an OR), so a deep cursor page costs what the first page costs. NULLs sort first
        ascending and last descending, as SQLite orders them."""
        assert self._after is not None
        field, direction = self._order
        column, pk = quote_identifier(field), quote_identifier(self.meta.pk_name)
        last_value, last_pk = self._after
        if field == self.meta.pk_name:
            return [(f"{pk} {'>' if direction == 'asc' else '<'} ?", [last_pk])]
        if direction == "asc":
            if last_value is None:
                return [
                    (f"{column} IS NULL AND {pk} > ?", [last_pk]),
                    (f"{column} IS NOT NULL", []),
                ]
            return [(f"({column}, {pk}) > (?, ?)", [last_value, last_pk])]
        if last_value is None:
            return [(f"{column} IS NULL AND {pk} < ?", [last_pk])]
        return [(f"({column}, {pk}) < (?, ?)", [last_value, last_pk]), (f"{column} IS NULL", [])]

    def _selects(self, limit: int) -> list[tuple[str, list[Any]]]:
        """The statements whose rows, in order, make this page (plus one row to tell whether
        there is a next page): one select, or one per keyset condition after a cursor."""
        if self._after is None:
            return [self._select(limit, self._offset)]
        return [self._select(limit, 0, segment) for segment in self._keyset()]

    def _select(
        self, limit: int, offset: int, segment: tuple[str, list[Any]] | None = None
    ) -> tuple[str, list[Any]]:
        where, params = self._where(segment)
        field, direction = self._order
        order = f"{quote_identifier(field)} {direction.upper()}"
        if field != self.meta.pk_name:
            order += f", {quote_identifier(self.meta.pk_name)} {direction.upper()}"
        columns = ", ".join(quote_identifier(column) for column in self.meta.sync_fields)
        sql = (
            f"SELECT {columns} FROM {quote_identifier(self.meta.table)} WHERE {where} "
            f"ORDER BY {order} LIMIT ? OFFSET ?"
        )
        return sql, [*params, limit, offset]

    def _count_sql(self) -> tuple[str, list[Any]]:
        where, params = self._where()
        return (
            f"SELECT count(*) AS total FROM {quote_identifier(self.meta.table)} WHERE {where}",
            params,
        )

    def explain(self) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` for this query's page select (each of them, after a
        cursor that needs two)."""
        details: builtins.list[str] = []
        for sql, params in self._selects(self._limit):
            rows = self.scope.connection.sql.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            details.extend(row["detail"] for row in rows)
        return details

    # -- running -------------------------------------------------------------------------

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        fields = self.meta.fields
        return {column: fields[column].from_sql(value) for column, value in row.items()}

    def _hydrate(self, rows: list[dict[str, Any]]) -> list[Any]:
        if not self._with_data or not rows:
            return rows
        meta = self.meta
        from datastore.keys import composite_key

        ids = [composite_key(*(str(row[name]) for name in meta.key_fields)) for row in rows]
        stored = self.scope.store(meta).read_many(meta.kv_class, ids)
        instances = []
        for kv_id in ids:
            found = stored.get(kv_id)
            if found is None:
                logger.warning("%s %s has a metadata row but no KV object", meta.name, kv_id)
                continue
            instances.append(self.model._from_stored(found.data, found.version, self.scope))
        return instances

    def count(self) -> int:
        """How many rows match (one SQL round trip)."""
        sql, params = self._count_sql()
        return int(self.scope.connection.sql.execute(sql, params)[0]["total"])

    def list(self) -> Page[M]:
        """One page with its pagination (one SQL round trip; +1 KV read with ``with_data``)."""
        offset = 0 if self._after is not None else self._offset
        selects = self._selects(self._limit + 1)
        *row_results, count_result = self.scope.connection.sql.batch([*selects, self._count_sql()])
        rows, next_cursor = self._page_rows(row_results)
        has_more = next_cursor is not None
        total = int(count_result[0]["total"])
        pagination: dict[str, Any] = {
            "total": total,
            "limit": self._limit,
            "offset": offset,
            "page": offset // self._limit + 1,
            "pages": math.ceil(total / self._limit) if total else 0,
            "has_next": has_more,
            "has_prev": offset > 0 or self._after is not None,
            "next_cursor": next_cursor,
        }
        if self._after is not None:
            pagination["offset"] = pagination["page"] = None
        return Page(self._hydrate(rows), pagination)

    def first(self) -> Any:
        page = self.limit(1).list()
        return page.data[0] if page.data else None

    def _page_rows(
        self, results: Sequence[Sequence[dict[str, Any]]]
    ) -> tuple[builtins.list[Any], str | None]:
        """The page's decoded rows from its selects' results, and the cursor after them
        (``None`` on the last page)."""
        rows = [self._decode(row) for result in results for row in result][: self._limit + 1]
        if len(rows) <= self._limit:
            return rows, None
        rows = rows[: self._limit]
        last = rows[-1]
        field = self._order[0]
        last_value = self.meta.fields[field].to_sql(last[field])
        return rows, _encode_cursor([field, last_value, last[self.meta.pk_name]])

    def iterator(self, batch_size: int = 500) -> Iterator[Any]:
        """Every matching row (or instance), streamed in keyset batches of up to
        ``batch_size`` (at most 1000): bounded memory, one SQL round trip per batch (+1 KV
        read with ``with_data``), no totals counted."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError({"batch_size": ["must be a positive integer"]})
        query = self._clone()
        query._limit, query._offset, query._after = min(batch_size, MAX_BATCH), 0, None
        while True:
            results = self.scope.connection.sql.batch(query._selects(query._limit + 1))
            rows, cursor = query._page_rows(results)
            yield from query._hydrate(rows)
            if cursor is None:
                return
            query = query.after(cursor)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.list().data)
