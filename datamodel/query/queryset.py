"""``QuerySet``: a chainable, immutable query over a model's metadata table.

::

    pages = Page.objects.auth(user_id)
    page = (pages.filter(project_id="proj_1", status__in=["queued", "done"])
            .exclude(Q(priority__lt=2) | Q(title__isnull=True))
            .order_by("-priority", "created_at").limit(25).page(2)
            .list())
    page.data, page.pagination   # {total, limit, offset, page, pages, has_next, ...}
    pages.filter(project_id="proj_1")[20:40]                    # lazy, like Django's slicing
    pages.values("status").annotate(n=Count())                  # GROUP BY, one SQL round trip
    pages.aggregate(n=Count(), top=Max("priority"))             # one SQL round trip

Only sync fields (and the built-in columns) can be filtered, ordered or selected; lookups
come from a fixed table per field type, so neither a name nor a lookup can inject SQL, and
values are always bound parameters. A page (``list()``) is one SQL round trip (rows and total
in one batch); ``with_data()`` adds one bulk KV read returning model instances instead of
rows; ``values()``/``values_list()`` and ``aggregate()`` never read KV. Deep pages:
``after(cursor)`` (keyset pagination from ``pagination["next_cursor"]``); whole result sets:
``iterator()`` or plain iteration, which stream in keyset batches with bounded memory.

``Model.objects.auth(u).get(id)`` is the one-round-trip KV read by id;
``query.get(**lookups)`` is the SQL one. Query-level ``update()``/``delete()`` go through the
save path (KV read, change, bulk save) and are never proxied by the manager.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import DoesNotExist, ValidationError
from ..fields import MISSING
from ..related import reference_field
from . import writes
from .aggregates import Aggregate
from .compiler import Compiler, WhereNode, resolve, resolve_field
from .expressions import OrderBy, Q
from .iterables import (
    FlatValuesListIterable,
    ModelIterable,
    RowIterable,
    ValuesIterable,
    ValuesListIterable,
)
from .pagination import Page, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from ..instance import ModelBase
    from ..scope import Scope

__all__ = ["OPERATORS", "MultipleObjectsReturned", "QuerySet"]

M = TypeVar("M", bound="ModelBase")

# The operators of ``where(field, operator, value)``: lookups by their older names.
OPERATORS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "contains",
    "startswith",
    "iexact",
    "icontains",
    "istartswith",
    "endswith",
    "iendswith",
    "range",
    "isnull",
)
MAX_BATCH = 1000  # rows per iterator() batch


class MultipleObjectsReturned(LookupError):
    """``get(**lookups)`` matched more than one object."""


def _positive(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValidationError({name: [f"must be {wanted}"]})
    return value


class QuerySet(Generic[M]):
    """A chainable, immutable query: each method returns a new query set."""

    def __init__(self, model: type[M], scope: Scope) -> None:
        self.model = model
        self.scope = scope
        self.meta = model._meta
        self._where = WhereNode()
        self._order: tuple[OrderBy, ...] = tuple(OrderBy.parse(spec) for spec in self.meta.ordering)
        self._limit = self.meta.default_limit
        self._offset = 0
        self._page: int | None = None
        self._slice: tuple[int, int | None] | None = None
        self._iterable: type[RowIterable] = RowIterable
        self._fields: tuple[str, ...] | None = None
        self._annotations: dict[str, Aggregate] = {}
        self._distinct = False
        self._deleted = "exclude"
        self._after: list[Any] | None = None
        self._related: tuple[str, ...] = ()

    def _clone(self) -> QuerySet[M]:
        clone = copy.copy(self)
        clone._annotations = dict(self._annotations)
        return clone

    def _check_not_sliced(self, action: str) -> None:
        if self._slice is not None:
            raise ValidationError({"query": [f"cannot {action} once the query is sliced"]})

    # -- filtering -----------------------------------------------------------------------

    def filter(self, *conditions: Q, **lookups: Any) -> QuerySet[M]:
        """Rows matching every lookup: ``filter(status="done", priority__gte=3)``, or ``Q``
        objects combined with ``&``, ``|`` and ``~``."""
        return self._add(Q(*conditions, **lookups))

    def exclude(self, *conditions: Q, **lookups: Any) -> QuerySet[M]:
        """Rows not matching: ``exclude(**kw)`` is ``filter(~Q(**kw))``. A lookup on a NULL
        column counts as false, so ``exclude(title="x")`` keeps rows whose title is NULL."""
        return self._add(~Q(*conditions, **lookups))

    def _add(self, q: Q) -> QuerySet[M]:
        self._check_not_sliced("filter")
        node = resolve(self.meta, q)
        clone = self._clone()
        if not node.children:
            return clone
        children = node.children if (not node.negated and node.connector == Q.AND) else (node,)
        clone._where = WhereNode((*self._where.children, *children))
        return clone

    def where(self, field: str, operator: Any = MISSING, value: Any = MISSING) -> QuerySet[M]:
        """``where("status", "done")`` or ``where("n", "gte", 3)``: ``filter`` by operator name
        (``eq`` is ``exact``; ``ne`` also matches NULL)."""
        if value is MISSING:
            operator, value = "eq", operator
        if operator not in OPERATORS:
            raise ValidationError(
                {field: [f"unknown operator {operator!r}: use one of {', '.join(OPERATORS)}"]}
            )
        return self.filter(**{f"{field}__{'exact' if operator == 'eq' else operator}": value})

    def where_in(self, field: str, values: Any) -> QuerySet[M]:
        return self.filter(**{f"{field}__in": values})

    def search(self, text: str, fields: Sequence[str]) -> QuerySet[M]:
        """Rows where any of these text sync fields contains ``text`` (case-insensitive)."""
        if not isinstance(text, str):
            raise ValidationError({"search": ["must be a string"]})
        for name in fields:
            resolve_field(self.meta, name, "search")
        if not text or not fields:
            return self._clone()
        condition = Q()
        for name in fields:
            condition |= Q(**{f"{name}__icontains": text})
        return self.filter(condition)

    def include_deleted(self) -> QuerySet[M]:
        clone = self._clone()
        clone._deleted = "include"
        return clone

    def only_deleted(self) -> QuerySet[M]:
        clone = self._clone()
        clone._deleted = "only"
        return clone

    # -- ordering and pages --------------------------------------------------------------

    def order_by(self, *fields: str) -> QuerySet[M]:
        """``order_by("-priority", "created_at")``: any number of sync fields, ``-`` for
        descending; the primary key breaks the remaining ties. ``order_by("title", "desc")``
        (a field and a direction) is read as ``order_by("-title")``."""
        self._check_not_sliced("reorder")
        specs = list(fields)
        if len(specs) == 2 and specs[1] in ("asc", "desc") and specs[1] not in self.meta.fields:
            specs = [f"-{specs[0]}" if specs[1] == "desc" else specs[0]]
        ordering = []
        for spec in specs:
            if not isinstance(spec, str) or not spec or spec.startswith("--"):
                raise ValidationError({"order_by": [f"{spec!r} is not a field name"]})
            order = OrderBy.parse(spec)
            if order.field not in self._annotations:
                column = resolve_field(self.meta, order.field, "order by it")
                order = OrderBy(column, order.descending)
            ordering.append(order)
        if not ordering:
            ordering = [OrderBy.parse(spec) for spec in self.meta.ordering]
        clone = self._clone()
        clone._order = tuple(dict.fromkeys(ordering))
        clone._after = None
        return clone

    def reverse(self) -> QuerySet[M]:
        """The same rows in the opposite order (the tie-breakers reversed too)."""
        ordering = self._group_ordering() if self._grouped() else self._full_ordering()
        return self.order_by(*(order.reversed().spec for order in ordering))

    def _full_ordering(self) -> tuple[OrderBy, ...]:
        """The ordering with the primary key as the last tie-breaker (in the direction of the
        last field, so one index serves the whole ordering)."""
        pk = self.meta.pk_name
        if any(order.field == pk for order in self._order):
            return self._order
        descending = self._order[-1].descending if self._order else False
        return (*self._order, OrderBy(pk, descending))

    def _group_ordering(self) -> tuple[OrderBy, ...]:
        """A grouped or distinct query orders by its own columns: the fields it selects and
        its annotations (by the selected fields alone when ``order_by`` names anything else).
        The selected fields not named break the remaining ties (they tell its rows apart), so
        the order is total and ``reverse()``/``last()`` are exact."""
        fields = self._fields or ()
        chosen = tuple(
            order for order in self._order if order.field in {*fields, *self._annotations}
        )
        if len(chosen) != len(self._order):
            chosen = ()
        named = {order.field for order in chosen}
        return (*chosen, *(OrderBy(field) for field in fields if field not in named))

    def limit(self, count: int) -> QuerySet[M]:
        """At most ``count`` rows per page (up to ``Meta.max_limit``)."""
        _positive("limit", count, 1)
        if count > self.meta.max_limit:
            raise ValidationError({"limit": [f"must be at most {self.meta.max_limit}"]})
        clone = self._clone()
        clone._limit = count
        return clone

    def offset(self, count: int) -> QuerySet[M]:
        clone = self._clone()
        clone._offset = _positive("offset", count, 0)
        clone._page = None
        return clone

    def page(self, number: int) -> QuerySet[M]:
        """The 1-based page of ``limit`` rows; ``page(2).limit(25)`` and ``limit(25).page(2)``
        are the same page."""
        clone = self._clone()
        clone._page = _positive("page", number, 1)
        return clone

    def _page_offset(self) -> int:
        return (self._page - 1) * self._limit if self._page is not None else self._offset

    def after(self, cursor: str | None) -> QuerySet[M]:
        """Continue after the last row of a previous page (keyset pagination)."""
        clone = self._clone()
        if not cursor:
            clone._after = None
            return clone
        if self._grouped():
            raise ValidationError({"cursor": ["grouped or distinct queries page by offset"]})
        specs, values = decode_cursor(cursor)
        if specs != [order.spec for order in self._full_ordering()]:
            raise ValidationError({"cursor": ["belongs to another ordering"]})
        clone._after = values
        return clone

    def __getitem__(self, key: int | slice) -> Any:
        """``query[20:40]`` is a new, lazy query set of those rows; ``query[5]`` the row (or
        instance) at that position, ``IndexError`` if there is none."""
        if isinstance(key, bool) or not isinstance(key, (int, slice)):
            raise TypeError(f"query sets are indexed by int or slice, not {type(key).__name__}")
        start, stop = self._slice or (0, None)
        if isinstance(key, int):
            if key < 0:
                raise ValidationError({"index": ["negative indexing is not supported"]})
            if stop is not None and start + key >= stop:
                raise IndexError("query set index out of range")
            found = builtins.list(self._stream(start + key, start + key + 1))
            if not found:
                raise IndexError("query set index out of range")
            return found[0]
        if key.step not in (None, 1):
            raise ValidationError({"index": ["slicing with a step is not supported"]})
        low, high = key.start or 0, key.stop
        if low < 0 or (high is not None and high < 0):
            raise ValidationError({"index": ["negative indexing is not supported"]})
        new_start = start + low
        new_stop = start + high if high is not None else stop
        if stop is not None and new_stop is not None:
            new_stop = min(new_stop, stop)
        if new_stop is not None:
            new_stop = max(new_stop, new_start)
        clone = self._clone()
        clone._slice = (new_start, new_stop)
        return clone

    # -- what a row becomes --------------------------------------------------------------

    def with_data(self) -> QuerySet[M]:
        """Return full objects (model instances) read from KV in one bulk read per page."""
        if self._fields is not None:
            raise ValidationError({"with_data": ["a values() query returns rows, not objects"]})
        clone = self._clone()
        clone._iterable = ModelIterable
        return clone

    def _columns(self, fields: Sequence[str], purpose: str) -> tuple[str, ...]:
        return tuple(resolve_field(self.meta, name, purpose) for name in fields)

    def values(self, *fields: str) -> QuerySet[M]:
        """Dicts of these sync fields (all of them by default), read from the metadata row
        alone: zero KV round trips."""
        clone = self._clone()
        clone._fields = self._columns(fields, "select it") or tuple(self.meta.sync_fields)
        clone._iterable = ValuesIterable
        return clone

    def values_list(self, *fields: str, flat: bool = False) -> QuerySet[M]:
        """Tuples of these sync fields; with ``flat=True`` (one field) the bare values."""
        if flat and len(fields) != 1:
            raise ValidationError({"values_list": ["flat=True needs exactly one field"]})
        clone = self.values(*fields)
        clone._iterable = FlatValuesListIterable if flat else ValuesListIterable
        return clone

    def distinct(self) -> QuerySet[M]:
        """Distinct rows of a ``values()``/``values_list()`` query."""
        if self._fields is None:
            raise ValidationError(
                {"distinct": ["use it on values() or values_list(): rows differ by their key"]}
            )
        clone = self._clone()
        clone._distinct = True
        return clone

    def annotate(self, **aggregates: Aggregate) -> QuerySet[M]:
        """``values("status").annotate(n=Count())``: one row per distinct ``status`` with its
        aggregates (GROUP BY)."""
        if self._fields is None:
            raise ValidationError({"annotate": ["group with values(...) first"]})
        checked = self._check_aggregates(aggregates)
        clashing = set(checked) & set(self._fields)
        if clashing:
            raise ValidationError({name: ["clashes with a selected field"] for name in clashing})
        clone = self._clone()
        clone._annotations.update(checked)
        return clone

    def _check_aggregates(self, aggregates: dict[str, Any]) -> dict[str, Aggregate]:
        errors: dict[str, list[str]] = {}
        for alias, aggregate in aggregates.items():
            if not isinstance(aggregate, Aggregate):
                errors[alias] = [f"expected Count, Sum, Min, Max or Avg, got {aggregate!r}"]
                continue
            if alias.startswith("_") or not alias.isidentifier():
                errors[alias] = ["is not a valid result name"]
                continue
            if aggregate.field == "pk":
                aggregate.field = self.meta.pk_name
            problem = aggregate.check(self.meta.fields, self.meta.sync_fields)
            if problem:
                errors[alias] = [problem]
        if errors:
            raise ValidationError(errors)
        return aggregates

    def _grouped(self) -> bool:
        return bool(self._annotations) or self._distinct

    # -- related objects and deleting ----------------------------------------------------

    def with_related(self, *fields: str) -> QuerySet[M]:
        """Instances (as ``with_data()``) with the objects these ``Reference`` fields point
        at read along (every reference of the model when none is named): one bulk KV read per
        page per referenced model, after the page's own. ``instance.related("workspace")``
        then returns the object (``None`` if missing, deleted or not visible) without a
        read, as Django's ``select_related``."""
        names = fields or tuple(reference.name for reference in self.meta.references)
        for name in names:
            reference_field(self.model, name)
        clone = self.with_data()
        clone._related = tuple(dict.fromkeys((*self._related, *names)))
        return clone

    def delete(self, *, hard: bool = False) -> tuple[int, dict[str, int]]:
        """Delete every matching object through the delete path: soft where the model has
        soft delete, removed for good with ``hard=True`` (with ``include_deleted()``, the
        soft-deleted ones too); what references them follows its ``on_delete``. Returns
        ``(objects deleted, {model name: count})`` as Django's ``QuerySet.delete()``, the
        objects the delete cascaded to included.

        The matching objects are read first (one SQL round trip and one bulk KV read per
        1000) and held in memory while their references are planned, as Django does; then
        each KV batch limit's worth is one KV write and one SQL batch. A query set that is
        sliced, grouped or reads values cannot delete. ``DeleteConflict`` names the objects
        that kept changing while this ran.
        """
        from ..deletion import Collector

        self._check_not_sliced("delete")
        if self._fields is not None or self._grouped():
            raise ValidationError({"delete": ["a values() or grouped query cannot delete"]})
        collector = Collector(self.scope, hard=hard)
        collector.collect(self._clone().with_data().iterator(MAX_BATCH))
        return collector.delete()

    # -- running -------------------------------------------------------------------------

    @property
    def _sql(self) -> Any:
        return self.scope.connection.sql

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        fields = self.meta.fields
        decoded = {}
        for column, value in row.items():
            aggregate = self._annotations.get(column)
            if aggregate is not None:
                decoded[column] = aggregate.convert(value, fields)
            else:
                decoded[column] = fields[column].from_sql(value)
        return decoded

    def _select_columns(self, iterable: RowIterable) -> list[str]:
        """What to fetch: the iterable's columns plus those a keyset cursor needs."""
        ordering = [order.field for order in self._full_ordering()]
        key_fields = self.meta.key_fields if iterable.needs_kv else []
        return builtins.list(dict.fromkeys([*iterable.columns(), *ordering, *key_fields]))

    def count(self) -> int:
        """How many rows match (one SQL round trip)."""
        total = int(self._sql.execute(*Compiler(self).count())[0]["total"])
        if self._slice is None:
            return total
        start, stop = self._slice
        remaining = max(total - start, 0)
        return remaining if stop is None else min(remaining, stop - start)

    def exists(self) -> bool:
        """Whether any row matches (one SQL round trip, stops at the first row); after a
        cursor, whether any row follows it, as ``first()`` would find."""
        if self._slice is not None or self._after is not None:
            return bool(builtins.list(self._stream(*self._bounds(0, 1))))
        return bool(self._sql.execute(*Compiler(self).exists()))

    def aggregate(self, **aggregates: Aggregate) -> dict[str, Any]:
        """``aggregate(n=Count(), top=Max("priority"))`` over the matching rows: one SQL round
        trip, no KV read. With no rows ``Count`` gives 0, the others ``None``."""
        self._check_not_sliced("aggregate")
        if not aggregates:
            raise ValidationError({"aggregate": ["name at least one aggregate"]})
        checked = self._check_aggregates(aggregates)
        rows = self._sql.execute(*Compiler(self).aggregate(checked))
        row = rows[0] if rows else {}
        return {
            alias: aggregate.convert(row.get(alias), self.meta.fields)
            for alias, aggregate in checked.items()
        }

    def list(self) -> Page[M]:
        """One page with its pagination (one SQL round trip; +1 KV read with ``with_data``)."""
        self._check_not_sliced("page (iterate a slice, or page with limit() and page())")
        if self._grouped():
            return self._grouped_page()
        offset = 0 if self._after is not None else self._page_offset()
        iterable = self._iterable(self)
        compiler = Compiler(self)
        selects = compiler.selects(
            self._select_columns(iterable), self._limit + 1, offset, self._after
        )
        statements = [*selects, compiler.count()]
        stored = None
        if isinstance(iterable, ModelIterable) and len(selects) == 1:
            # the rows and their objects: one round trip where the store combines requests
            meta = self.meta
            results, stored = self.scope.store(meta).select_objects(
                self._sql,
                statements,
                statement=0,
                class_name=meta.kv_class,
                id_columns=meta.key_fields,
            )
            *row_results, count_result = results
        else:
            *row_results, count_result = self._sql.batch(statements)
        rows, next_cursor = self._page_rows(row_results, self._limit)
        total = int(count_result[0]["total"])
        pagination = self._pagination(total, offset, next_cursor is not None)
        pagination["next_cursor"] = next_cursor
        if stored is not None:
            assert isinstance(iterable, ModelIterable)
            return Page(iterable.build(rows, stored), pagination)
        return Page(iterable.convert(rows), pagination)

    def _pagination(self, total: int, offset: int, has_next: bool) -> dict[str, Any]:
        keyset = self._after is not None
        return {
            "total": total,
            "limit": self._limit,
            "offset": None if keyset else offset,
            "page": None if keyset else offset // self._limit + 1,
            "pages": math.ceil(total / self._limit) if total else 0,
            "has_next": has_next,
            "has_prev": offset > 0 or keyset,
            "next_cursor": None,
        }

    def _grouped_page(self) -> Page[M]:
        offset = self._page_offset()
        compiler = Compiler(self)
        rows, count_result = self._sql.batch(
            [compiler.grouped(self._limit + 1, offset), compiler.count()]
        )
        decoded = [self._decode(row) for row in rows]
        total = int(count_result[0]["total"])
        pagination = self._pagination(total, offset, len(decoded) > self._limit)
        return Page(self._iterable(self).convert(decoded[: self._limit]), pagination)

    def first(self) -> Any:
        """The first row (or instance) in the query's order, or ``None``."""
        found = builtins.list(self._stream(*self._bounds(0, 1)))
        return found[0] if found else None

    def last(self) -> Any:
        """The last row (or instance) in the query's order, or ``None``."""
        if self._slice is not None:
            found = builtins.list(self._stream(*self._slice))
            return found[-1] if found else None
        return self.reverse().first()

    def _bounds(self, low: int, high: int) -> tuple[int, int]:
        start, stop = self._slice or (0, None)
        end = start + high if stop is None else min(start + high, stop)
        return start + low, end

    def get(self, *conditions: Q, **lookups: Any) -> Any:
        """The one row (or instance) matching: ``DoesNotExist`` if none,
        ``MultipleObjectsReturned`` if several (one SQL round trip)."""
        query = self.filter(*conditions, **lookups) if conditions or lookups else self
        found = builtins.list(query._stream(*query._bounds(0, 2)))
        if not found:
            raise DoesNotExist(f"no {self.meta.name} matches {lookups or conditions}")
        if len(found) > 1:
            raise MultipleObjectsReturned(f"more than one {self.meta.name} matches {lookups}")
        return found[0]

    def _page_rows(
        self, results: Sequence[Sequence[dict[str, Any]]], limit: int
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """The decoded rows of a page's selects, and the cursor after them (``None`` on the
        last page)."""
        rows = [self._decode(row) for result in results for row in result][: limit + 1]
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, self._cursor_after(rows[-1])

    def _cursor_after(self, row: dict[str, Any]) -> str:
        ordering = self._full_ordering()
        fields = self.meta.fields
        values = [fields[order.field].to_sql(row[order.field]) for order in ordering]
        return encode_cursor([order.spec for order in ordering], values)

    def iterator(self, batch_size: int = 500) -> Iterator[Any]:
        """Every matching row (or instance), streamed in keyset batches of up to
        ``batch_size`` (at most 1000): bounded memory, one SQL round trip per batch (+1 KV
        read with ``with_data``), no totals counted."""
        _positive("batch_size", batch_size, 1)
        start, stop = self._slice or (0, None)
        yield from self._stream(start, stop, min(batch_size, MAX_BATCH))

    def _stream(self, start: int, stop: int | None, batch_size: int = MAX_BATCH) -> Iterator[Any]:
        """Rows ``start`` to ``stop`` (``None``: all): the first batch by offset, the next
        ones by keyset cursor."""
        if stop is not None and stop <= start:
            return
        iterable = self._iterable(self)
        if self._grouped():
            limit = None if stop is None else stop - start
            rows = self._sql.execute(*Compiler(self).grouped(limit, start))
            yield from iterable.convert([self._decode(row) for row in rows])
            return
        if self._after is not None and start:
            # The keyset segments after a cursor take no OFFSET: skip to the start instead.
            yield from itertools.islice(self._stream(0, stop, batch_size), start, None)
            return
        columns = self._select_columns(iterable)
        after, offset, remaining = self._after, start, stop - start if stop is not None else None
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            query = self._clone()
            query._after = after
            compiler = Compiler(query)
            # One row more tells whether another batch follows, unless this one is the last.
            probe = 0 if remaining is not None and remaining <= batch_size else 1
            results = self._sql.batch(compiler.selects(columns, size + probe, offset, after))
            rows, cursor = query._page_rows(results, size)
            yield from iterable.convert(rows)
            if remaining is not None:
                remaining -= len(rows)
            if cursor is None:
                return
            after, offset = decode_cursor(cursor)[1], 0

    def __iter__(self) -> Iterator[Any]:
        """Every matching row (the slice's rows once sliced), streamed in batches."""
        start, stop = self._slice or (0, None)
        return self._stream(start, stop)

    # -- writing (every object through the save path) -------------------------------------

    def update(self, **values: Any) -> int:
        """Set these fields on every matching object, each through the save path (hooks,
        versions, metadata row) in chunks of the backend's batch limit; the number updated.
        ``PartialWrite`` names the objects that kept changing (each retried once)."""
        return writes.update(self, values)

    def get_or_create(
        self, defaults: dict[str, Any] | None = None, **lookups: Any
    ) -> tuple[M, bool]:
        """``(object, created)``, safe under concurrency: the lookup must fix the key or a
        unique constraint, so of two racing creates one wins and the other reads it."""
        return writes.get_or_create(self, defaults, lookups)

    def update_or_create(
        self, defaults: dict[str, Any] | None = None, **lookups: Any
    ) -> tuple[M, bool]:
        """``(object, created)``: the matching object updated with ``defaults``, or a new one
        made of the lookups and ``defaults``."""
        return writes.update_or_create(self, defaults, lookups)

    def explain(self) -> builtins.list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` for this query's page select (each of them, after a
        cursor that needs several)."""
        details: builtins.list[str] = []
        compiler = Compiler(self)
        iterable = self._iterable(self)
        selects = compiler.selects(
            self._select_columns(iterable), self._limit, self._page_offset(), self._after
        )
        for sql, params in selects:
            rows = self._sql.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            details.extend(row["detail"] for row in rows)
        return details

    def __repr__(self) -> str:
        return f"<QuerySet {self.meta.name} where {self._where.as_sql()[0]!r}>"
