"""The query set agrees with the same query evaluated in plain Python over the same objects.

Each example stores a small random set of pages (NULLs in every nullable column, ties, a few
non-ASCII strings) for a user of its own, so examples never see each other's rows, then runs
random queries and compares every answer with a Python oracle: ``Q`` trees and
``filter``/``exclude`` chains; orderings with their pages, cursors and iterator batches;
slicing, ``first``/``last``/``count``/``exists``; ``values``, aggregates, ``GROUP BY`` and
``distinct``. On the memory and the sqlite backend (objects in a SQLite file, metadata in
another).

The oracle's semantics, as documented by the query package:

- a lookup on a NULL column is false, except ``isnull`` and ``exact=None`` (and ``ne``, which
  matches NULL); ``~`` is plain boolean negation, and ``exclude(x)`` is ``filter(~x)``;
- an empty ``Q()`` is no condition (as in Django): ``Q() & x`` and ``Q() | x`` are ``x``, and
  ``~Q()`` is no condition either;
- the i-lookups fold ASCII letters only (SQLite's ``lower()``): ``"É"`` does not match ``"é"``;
- text compares by code point (UTF-8 bytes under SQLite's BINARY collation);
- NULLs sort first ascending and last descending; the primary key breaks the remaining ties in
  the direction of the last field;
- a grouped or distinct query orders by its selected fields unless ``order_by`` names only
  selected fields and annotations.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datamodel import Avg, Connection, Count, Max, Min, Q, Sum, create_tables
from datastore import Datastore
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Page
from tests.support import make_kv, make_sql

FIELDS = Page._meta.fields
PK = Page._meta.pk_name
PROJECTS = ["proj_a", "proj_b", "Proj_A"]  # key parts are ASCII
URLS = ["https://a.example/x", "https://b.example/Y%", "http://a.example/é_"]
KEYS = ["a", "b", "c", "aa", "ab", "b0", "ba", "bb", "ca", "cab"]
STATUSES = ["pending", "processing", "completed", "failed"]
TAGS = ["seo", "blog", "SEO", "é"]
TIMESTAMPS = [
    "2024-01-01T00:00:00.000Z",
    "2024-01-01T00:00:00.500Z",
    "2024-06-30T12:00:00.000Z",
    "2025-02-03T04:05:06.007Z",
]
# ASCII letters in both cases, LIKE's wildcards, and letters SQLite's lower() leaves alone.
TEXT = st.text(alphabet="aAbBzZ _%\u00e9\u00c9\u00df\u0130\u0131\u212a", max_size=5)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
USERS = itertools.count()


# -- the stores ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def shared(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Connection]:
    """One connection per backend for the whole module (a function-scoped fixture would be
    shared by every example anyway): each example writes as a user of its own."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    backend = make_kv(request.param, tmp_path)
    sql = make_sql(request.param, tmp_path)
    datastore = Datastore(backend.store, sql=sql, routing=routing())
    create_tables(sql, TEST_MODELS)
    yield Connection(datastore, sql)
    datastore.close()
    sql.close()


def store(connection: Connection, rows: list[dict[str, Any]]) -> Any:
    """The rows saved as a user of their own (their ids made unique to it, their
    ``created_at`` filled in); that user's manager."""
    user = f"user_{next(USERS)}"
    for row in rows:
        row[PK] = f"{user}.{row[PK]}"
    scoped = Page.objects.auth(user, using=connection)
    created = scoped.bulk_create([dict(row) for row in rows]) if rows else []
    for row, instance in zip(rows, created, strict=True):
        row["created_at"] = instance.get("created_at")
    return scoped


# -- the objects --------------------------------------------------------------------------


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def datasets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to ten pages; titles and scores come from small pools, so values tie."""
    titles = draw(st.lists(TEXT, min_size=1, max_size=4))
    scores = draw(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=3))
    size = draw(st.sampled_from(range(1, 11)))  # as often large as small
    keys = draw(st.permutations(KEYS))[:size]
    return [
        {
            PK: key,
            "project_id": draw(st.sampled_from(PROJECTS)),
            "url": draw(st.sampled_from(URLS)),
            "title": draw(nullable(st.sampled_from(titles))),
            "status": draw(nullable(st.sampled_from(STATUSES))),
            "priority": draw(nullable(st.integers(-2, 3))),
            "score": draw(nullable(st.sampled_from([*scores, 0.5, -0.0, 2]))),
            "archived": draw(nullable(st.booleans())),
            "tags": draw(nullable(st.lists(st.sampled_from(TAGS), max_size=3))),
            "last_processed": draw(nullable(st.sampled_from(TIMESTAMPS))),
        }
        for key in keys
    ]


def column(row: dict[str, Any], field: str) -> Any:
    """The row's value as its metadata column holds it (what SQL compares and sorts)."""
    return FIELDS[field].to_sql(row[field])


def stored(row: dict[str, Any], field: str) -> Any:
    """The value a query returns for the field: the column read back."""
    return FIELDS[field].from_sql(column(row, field))


# -- lookups and Q trees ------------------------------------------------------------------

ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(text: str) -> str:
    """Case folding as the i-lookups document it: ASCII letters only (SQLite's lower())."""
    return text.translate(ASCII_LOWER)


def compare(lookup: str, have: Any, want: Any) -> bool:
    """``lookup`` on a non-NULL column value ``have``; ``want`` cleaned to the column's form."""
    match lookup:
        case "exact":
            return have == want
        case "ne":
            return have != want
        case "gt":
            return have > want
        case "gte":
            return have >= want
        case "lt":
            return have < want
        case "lte":
            return have <= want
        case "range":
            return want[0] <= have <= want[1]
        case "in":
            return have in want
        case "iexact":
            return fold(have) == fold(want)
        case "contains":
            return want in have
        case "icontains":
            return fold(want) in fold(have)
        case "startswith":
            return have.startswith(want)
        case "istartswith":
            return fold(have).startswith(fold(want))
        case "endswith":
            return have.endswith(want)
        case "iendswith":
            return fold(have).endswith(fold(want))
    raise AssertionError(lookup)


def lookup_holds(row: dict[str, Any], key: str, value: Any) -> bool:
    field_name, _, lookup = key.partition("__")
    field = FIELDS[field_name]
    have = column(row, field_name)
    if lookup == "isnull":
        return (have is None) == value
    if lookup in ("exact", "ne") and value is None:
        return (have is None) == (lookup == "exact")
    if lookup == "ne" and have is None:
        return True  # ne matches NULL (where(field, "ne", value))
    if have is None:
        return False  # any other lookup on a NULL column is false
    if field_name == "tags":  # Array contains: membership
        return value in row["tags"]
    if lookup in ("exact", "ne", "gt", "gte", "lt", "lte"):
        value = field.to_sql(field.clean(value))
    elif lookup == "range":
        value = [field.to_sql(field.clean(item)) for item in value]
    elif lookup == "in":
        value = [field.to_sql(field.clean(item)) for item in value if item is not None]
    return compare(lookup, have, value)


class Cond:
    """A random condition: the ``Q`` it builds, and what it means in Python (``None``: no
    condition at all, as an empty ``Q()``)."""

    def q(self) -> Q:
        raise NotImplementedError

    def holds(self, row: dict[str, Any]) -> bool | None:
        raise NotImplementedError


@dataclass(repr=False)
class Lookups(Cond):
    lookups: dict[str, Any]

    def q(self) -> Q:
        return Q(**self.lookups)

    def holds(self, row: dict[str, Any]) -> bool | None:
        if not self.lookups:
            return None
        return all(lookup_holds(row, key, value) for key, value in self.lookups.items())

    def __repr__(self) -> str:
        return f"Q({', '.join(f'{key}={value!r}' for key, value in self.lookups.items())})"


@dataclass(repr=False)
class Combined(Cond):
    left: Cond
    right: Cond
    connector: str

    def q(self) -> Q:
        return (
            self.left.q() & self.right.q()
            if self.connector == "&"
            else self.left.q() | self.right.q()
        )

    def holds(self, row: dict[str, Any]) -> bool | None:
        left, right = self.left.holds(row), self.right.holds(row)
        if left is None or right is None:  # an empty Q() drops out of a combination
            return right if left is None else left
        return (left and right) if self.connector == "&" else (left or right)

    def __repr__(self) -> str:
        return f"({self.left!r} {self.connector} {self.right!r})"


@dataclass(repr=False)
class Negated(Cond):
    operand: Cond

    def q(self) -> Q:
        return ~self.operand.q()

    def holds(self, row: dict[str, Any]) -> bool | None:
        result = self.operand.holds(row)
        return None if result is None else not result

    def __repr__(self) -> str:
        return f"~{self.operand!r}"


def substrings(draw: st.DrawFn, pool: list[str]) -> str:
    """A pattern likely to match: a piece of a stored value, maybe with its case swapped."""
    stored_one = bool(pool) and draw(st.booleans())
    text: str = draw(st.sampled_from(pool) if stored_one else TEXT)
    start = draw(st.integers(0, len(text)))
    text = text[start : draw(st.integers(start, len(text)))]
    return text.swapcase() if draw(st.booleans()) else text


TEXT_LOOKUPS = [
    "iexact",
    "contains",
    "icontains",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
]
ORDERED = ["exact", "ne", "gt", "gte", "lt", "lte", "range", "in", "isnull"]
LOOKUPS = {
    "title": [*ORDERED, *TEXT_LOOKUPS],
    "project_id": [*ORDERED, *TEXT_LOOKUPS],
    "url": [*ORDERED, *TEXT_LOOKUPS],
    "status": [*ORDERED, *TEXT_LOOKUPS],
    "last_processed": [*ORDERED, *TEXT_LOOKUPS],
    "priority": ORDERED,
    "score": ORDERED,
    "archived": ["exact", "ne", "in", "isnull"],
    "tags": ["contains", "isnull"],
}


def field_values(field: str, rows: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Values the field accepts in a comparison, the stored ones among them."""
    present = [row[field] for row in rows if row[field] is not None]
    fresh: st.SearchStrategy[Any] = {
        "title": TEXT,
        "project_id": st.sampled_from(PROJECTS),
        "url": st.sampled_from(URLS),
        "status": st.sampled_from(STATUSES),
        # The same moments in other forms: the lookup cleans them to the stored form.
        "last_processed": st.sampled_from(TIMESTAMPS).map(
            lambda moment: dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
        ),
        "priority": st.integers(-3, 4),
        "score": st.floats(-1e6, 1e6) | st.integers(-2, 2),
        "archived": st.booleans(),
    }[field]
    return st.one_of(st.sampled_from(present), fresh) if present else fresh


@st.composite
def lookups(draw: st.DrawFn, rows: list[dict[str, Any]]) -> Cond:
    """``Q`` of one or two lookups (rarely none)."""
    found: dict[str, Any] = {}
    for _ in range(draw(st.sampled_from([1] * 6 + [2] * 3 + [0]))):
        field = draw(st.sampled_from(list(LOOKUPS)))
        lookup = draw(st.sampled_from(LOOKUPS[field]))
        values = field_values(field, rows) if field != "tags" else st.sampled_from([*TAGS, "zz"])
        if lookup == "isnull":
            value: Any = draw(st.booleans())
        elif lookup in ("exact", "ne"):
            value = draw(nullable(values))
        elif lookup == "range":
            value = (draw(values), draw(values))
        elif lookup == "in":
            value = draw(st.lists(nullable(values), max_size=3))
        elif lookup in TEXT_LOOKUPS:
            pool = [row[field] for row in rows if isinstance(row[field], str)]
            value = substrings(draw, pool)
        else:
            value = draw(values)
        found[f"{field}__{lookup}"] = value
    return Lookups(found)


def conditions(rows: list[dict[str, Any]], depth: int = 3) -> st.SearchStrategy[Cond]:
    """Q trees up to ``depth`` levels of ``&``, ``|`` and ``~`` above the lookups."""
    leaf = lookups(rows)
    if depth == 0:
        return leaf
    below = conditions(rows, depth - 1)
    return st.one_of(
        leaf,
        st.builds(Combined, below, below, st.sampled_from(["&", "|"])),
        st.builds(Negated, below),
    )


@dataclass(repr=False)
class Step:
    """One ``filter(...)`` or ``exclude(...)`` of a chain."""

    exclude: bool
    condition: Cond

    def apply(self, query: Any) -> Any:
        return (query.exclude if self.exclude else query.filter)(self.condition.q())

    def holds(self, row: dict[str, Any]) -> bool:
        result = self.condition.holds(row)
        if result is None:
            return True
        return not result if self.exclude else result

    def __repr__(self) -> str:
        return f".{'exclude' if self.exclude else 'filter'}({self.condition!r})"


def chains(
    rows: list[dict[str, Any]], min_size: int = 0, max_size: int = 3
) -> st.SearchStrategy[list[Step]]:
    step = st.builds(Step, st.booleans(), conditions(rows))
    return st.lists(step, min_size=min_size, max_size=max_size)


def run(query: Any, chain: list[Step]) -> Any:
    for step in chain:
        query = step.apply(query)
    return query


def matching(rows: list[dict[str, Any]], chain: list[Step]) -> list[dict[str, Any]]:
    return [row for row in rows if all(step.holds(row) for step in chain)]


# -- orderings ----------------------------------------------------------------------------

ORDER_FIELDS = [
    "title",
    "project_id",
    "status",
    "priority",
    "score",
    "archived",
    "tags",
    "last_processed",
    "created_at",
    "pk",
]


def compare_columns(a: Any, b: Any) -> int:
    """SQLite's order of two values of one column: NULL first."""
    if a is None or b is None:
        return (a is not None) - (b is not None)
    return (a > b) - (a < b)


def full_ordering(specs: list[str]) -> list[tuple[str, bool]]:
    """``order_by(*specs)`` as (column, descending), the primary key breaking ties; no specs
    is the model's ordering (``-created_at``)."""
    specs = specs or list(Page._meta.ordering)
    ordering = [
        (PK if spec.lstrip("-") == "pk" else spec.lstrip("-"), spec[0] == "-") for spec in specs
    ]
    if all(field != PK for field, _ in ordering):
        ordering.append((PK, ordering[-1][1] if ordering else False))
    return ordering


def sort_rows(
    rows: list[dict[str, Any]], ordering: list[tuple[str, bool]], value: Callable[..., Any]
) -> list[dict[str, Any]]:
    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        for field, descending in ordering:
            result = compare_columns(value(a, field), value(b, field))
            if result:
                return -result if descending else result
        return 0

    return sorted(rows, key=functools.cmp_to_key(cmp))


def orderings(fields: list[str] = ORDER_FIELDS) -> st.SearchStrategy[list[str]]:
    """Up to three distinct fields, each ascending or descending (none: no ``order_by``)."""
    return st.lists(
        st.tuples(st.sampled_from(fields), st.booleans()),
        max_size=3,
        unique_by=lambda spec: spec[0],
    ).map(lambda specs: [f"-{field}" if descending else field for field, descending in specs])


def order(query: Any, specs: list[str]) -> Any:
    return query.order_by(*specs) if specs else query


def ids(found: Any) -> list[str]:
    return [row[PK] for row in found]


# -- the properties -----------------------------------------------------------------------


@st.composite
def filter_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[Step]]]:
    rows = draw(datasets())
    return rows, draw(st.lists(chains(rows, min_size=1), min_size=1, max_size=4))


@SETTINGS
@given(case=filter_cases())
def test_filter_and_exclude_match_python(shared: Connection, case) -> None:
    rows, queries = case
    scoped = store(shared, rows)
    for chain in queries:
        query = run(scoped.query().order_by("pk"), chain)
        expected = sorted(row[PK] for row in matching(rows, chain))
        assert ids(query) == expected, chain
        assert query.count() == len(expected), chain
        assert query.exists() == bool(expected), chain


@st.composite
def ordering_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    rows = draw(datasets())
    queries = st.tuples(chains(rows, max_size=1), orderings(), st.integers(1, 4))
    return rows, draw(st.lists(queries, min_size=1, max_size=3))


@SETTINGS
@given(case=ordering_cases())
def test_orderings_pages_cursors_and_batches_match_python(shared: Connection, case) -> None:
    rows, queries = case
    scoped = store(shared, rows)
    for chain, specs, size in queries:
        query = order(run(scoped.query(), chain), specs)
        expected = ids(sort_rows(matching(rows, chain), full_ordering(specs), column))
        context = (chain, specs, size)
        assert ids(query) == expected, context
        assert ids(query.reverse()) == expected[::-1], context
        # Every page once, in order, by keyset cursor.
        walked: list[str] = []
        page = query.limit(size).list()
        assert page.pagination["total"] == len(expected), context
        while True:
            walked += ids(page.data)
            cursor = page.pagination["next_cursor"]
            if cursor is None:
                break
            assert len(walked) < len(expected), context
            page = query.limit(size).after(cursor).list()
        assert walked == expected, context
        # ... by page number ...
        for number in range(1, len(expected) // size + 2):
            page = query.limit(size).page(number).list()
            assert ids(page.data) == expected[(number - 1) * size : number * size], context
            assert page.pagination["has_next"] == (number * size < len(expected)), context
        # ... and in iterator batches.
        assert ids(query.iterator(batch_size=size)) == expected, context


@st.composite
def slice_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    rows = draw(datasets())
    bound = st.integers(0, len(rows) + 2)
    queries = st.tuples(
        chains(rows, max_size=1),
        orderings(),
        st.tuples(bound, nullable(bound)),
        st.tuples(bound, nullable(bound)),
        bound,
        st.integers(1, 3),
    )
    return rows, draw(st.lists(queries, min_size=1, max_size=3))


@SETTINGS
@given(case=slice_cases())
def test_slicing_first_last_count_exists_match_python(shared: Connection, case) -> None:
    rows, queries = case
    scoped = store(shared, rows)
    for chain, specs, (a, b), (c, d), index, size in queries:
        query = order(run(scoped.query(), chain), specs)
        expected = ids(sort_rows(matching(rows, chain), full_ordering(specs), column))
        context = (chain, specs, a, b, c, d, index, size)
        assert query.count() == len(expected), context
        assert query.exists() == bool(expected), context
        assert (query.first() or {}).get(PK) == (expected[0] if expected else None), context
        assert (query.last() or {}).get(PK) == (expected[-1] if expected else None), context
        for sliced, wanted in ((query[a:b], expected[a:b]), (query[a:b][c:d], expected[a:b][c:d])):
            assert ids(sliced) == wanted, context
            assert ids(sliced.iterator(batch_size=size)) == wanted, context
            assert sliced.count() == len(wanted), context
            assert sliced.exists() == bool(wanted), context
            assert (sliced.first() or {}).get(PK) == (wanted[0] if wanted else None), context
            assert (sliced.last() or {}).get(PK) == (wanted[-1] if wanted else None), context
            assert_index(sliced, index, wanted, context)
        # Slices of the rows after a cursor (count() and exists() count the whole query).
        cursor = query.limit(size).list().pagination["next_cursor"]
        if cursor is not None:
            after, rest = query.after(cursor), expected[size:]
            assert ids(after) == rest, context
            assert ids(after[a:b]) == rest[a:b], context
            assert ids(after[a:b].iterator(batch_size=size)) == rest[a:b], context
            assert (after[a:b].first() or {}).get(PK) == next(iter(rest[a:b]), None), context
            assert_index(after, index, rest, context)


def assert_index(query: Any, index: int, wanted: list[str], context: Any) -> None:
    if index < len(wanted):
        assert query[index][PK] == wanted[index], context
    else:
        with pytest.raises(IndexError):
            query[index]


VALUE_FIELDS = [field for field in ORDER_FIELDS if field != "pk"]
NUMBERS = ["priority", "score", "archived"]
GROUP_FIELDS = ["status", "archived", "project_id", "priority", "title"]


def close(found: Any, wanted: Any, scale: float) -> bool:
    """Float sums and means, whose rounding depends on the order SQLite adds in."""
    if found is None or wanted is None:
        return found is wanted
    return math.isclose(found, wanted, rel_tol=1e-9, abs_tol=1e-9 * max(scale, 1.0))


def aggregate_oracle(rows: list[dict[str, Any]], name: str, field: str) -> Any:
    present = [row for row in rows if row[field] is not None]
    columns = [column(row, field) for row in present]
    if name == "count":
        return len(columns)
    if name == "distinct":
        return len(set(columns))
    if not columns:
        return None
    if name == "sum":
        return math.fsum(columns) if field == "score" else sum(columns)
    if name == "avg":
        return math.fsum(columns) / len(columns)
    least = sort_rows(present, [(field, name == "max")], column)[0]
    return stored(least, field)


@st.composite
def value_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    rows = draw(datasets())
    return (
        rows,
        draw(chains(rows, max_size=1)),
        draw(orderings()),
        draw(st.lists(st.sampled_from(VALUE_FIELDS), min_size=1, max_size=3, unique=True)),
        draw(st.sampled_from(VALUE_FIELDS)),
        draw(st.sampled_from(NUMBERS)),
    )


@SETTINGS
@given(case=value_cases())
def test_values_and_aggregates_match_python(shared: Connection, case) -> None:
    rows, chain, specs, fields, any_field, number = case
    scoped = store(shared, rows)
    query = order(run(scoped.query(), chain), specs)
    found = matching(rows, chain)
    ordered = sort_rows(found, full_ordering(specs), column)

    assert list(query.values(*fields)) == [
        {field: stored(row, field) for field in fields} for row in ordered
    ]
    assert list(query.values_list(*fields)) == [
        tuple(stored(row, field) for field in fields) for row in ordered
    ]
    assert list(query.values_list(fields[0], flat=True)) == [
        stored(row, fields[0]) for row in ordered
    ]

    result = query.aggregate(
        n=Count(),
        present=Count(any_field),
        different=Count(any_field, distinct=True),
        low=Min(any_field),
        high=Max(any_field),
        total=Sum(number),
        mean=Avg(number),
    )
    scale = math.fsum(abs(column(row, number) or 0) for row in found)
    assert close(result.pop("total"), aggregate_oracle(found, "sum", number), scale)
    assert close(result.pop("mean"), aggregate_oracle(found, "avg", number), scale)
    assert result == {
        "n": len(found),
        "present": aggregate_oracle(found, "count", any_field),
        "different": aggregate_oracle(found, "distinct", any_field),
        "low": aggregate_oracle(found, "min", any_field),
        "high": aggregate_oracle(found, "max", any_field),
    }


def group_ordering(specs: list[str], selected: list[str], own: list[str]) -> list[tuple[str, bool]]:
    """A grouped or distinct query's order: ``specs`` when they name only its own columns
    (``own``), then the selected fields they do not name, ascending (they tell its rows
    apart)."""
    named = [(spec.lstrip("-"), spec.startswith("-")) for spec in specs]
    if any(field not in own for field, _ in named):
        named = []
    return [*named, *((field, False) for field in selected if field not in dict(named))]


@st.composite
def group_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    rows = draw(datasets())
    group = draw(st.lists(st.sampled_from(GROUP_FIELDS), min_size=1, max_size=2, unique=True))
    fields = draw(st.lists(st.sampled_from(VALUE_FIELDS), min_size=1, max_size=3, unique=True))
    return (
        rows,
        draw(chains(rows, max_size=1)),
        group,
        # Mostly the query's own columns; another field makes it order by the selected ones.
        draw(orderings([*group, "n", "top", "score"])),
        fields,
        draw(orderings(list(dict.fromkeys([*fields, "score"])))),
        draw(st.integers(1, 3)),
    )


@SETTINGS
@given(case=group_cases())
def test_groups_and_distinct_match_python(shared: Connection, case) -> None:
    rows, chain, group, group_specs, fields, distinct_specs, size = case
    scoped = store(shared, rows)
    query = run(scoped.query(), chain)
    found = matching(rows, chain)

    # values(...).annotate(...): one row per group.
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in found:
        groups.setdefault(tuple(column(row, field) for field in group), []).append(row)
    records = [
        {
            **{field: column(members[0], field) for field in group},
            "n": len(members),
            "top": aggregate_oracle(members, "max", "priority"),
        }
        for members in groups.values()
    ]
    ordering = group_ordering(group_specs, group, [*group, "n", "top"])
    expected = [
        {
            name: FIELDS[name].from_sql(value) if name in FIELDS else value
            for name, value in record.items()
        }
        for record in sort_rows(records, ordering, dict.__getitem__)
    ]
    annotated = order(query.values(*group).annotate(n=Count(), top=Max("priority")), group_specs)
    context = (chain, group, group_specs)
    assert list(annotated) == expected, context
    assert annotated.count() == len(expected), context
    assert annotated.exists() == bool(expected), context
    assert annotated.first() == (expected[0] if expected else None), context
    assert annotated.last() == (expected[-1] if expected else None), context
    assert list(annotated.reverse()) == expected[::-1], context
    assert list(annotated[1:3]) == expected[1:3], context
    paged: list[Any] = []
    for number in range(1, len(expected) // size + 2):
        page = annotated.limit(size).page(number).list()
        assert page.pagination["total"] == len(expected), context
        paged += page.data
    assert paged == expected, context

    # values_list(...).distinct()
    distinct = list(dict.fromkeys(tuple(column(row, field) for field in fields) for row in found))
    ordering = group_ordering(distinct_specs, fields, fields)
    records = [dict(zip(fields, values, strict=True)) for values in distinct]
    tuples = [
        tuple(FIELDS[field].from_sql(record[field]) for field in fields)
        for record in sort_rows(records, ordering, dict.__getitem__)
    ]
    distinct_query = order(query.values_list(*fields).distinct(), distinct_specs)
    context = (chain, fields, distinct_specs)
    assert list(distinct_query) == tuples, context
    assert distinct_query.count() == len(tuples), context
    assert distinct_query.last() == (tuples[-1] if tuples else None), context
