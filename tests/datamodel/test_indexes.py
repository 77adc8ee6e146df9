"""Every declared index serves the query it exists for: SQLite's planner picks it, by name.

Fails when an index is dropped or renamed, or when a change to the models or to the query
builder stops a query from using it. Runs on the in-memory SQLite backend (no Django: the
nimbus models import without settings), with a few hundred rows in every metadata table.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from datamodel import Connection, DataModel, Query, create_tables, fields
from datamodel.constraints import UniqueConstraint
from datamodel.query.compiler import Compiler
from datamodel.schema import index_name, unique_index_name
from datastore import Datastore, codec
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from datastore.sqlbuild import insert_rows
from nimbus.models import DOMAIN_MODELS, Page
from tests.datamodel.conftest import routing
from tests.datamodel.models import ALL_TEST_MODELS, Member

MODELS: list[type[DataModel]] = [*DOMAIN_MODELS, *ALL_TEST_MODELS]
ROWS = 300
SAMPLE = 7  # the row whose values the queries look for (not soft-deleted)
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
_USED = re.compile(r"USING (?:COVERING )?INDEX (\S+)")

# The indexes the page lists of the API use (nimbus.api.projects.PageViewSet.list).
PAGE_PROJECT_INDEX = "page_meta__project_id__deleted_at__created_at__page_id__user_id"
PAGE_STATUS_INDEX = "page_meta__project_id__status__deleted_at__created_at__page_id__user_id"
PAGE_PRIORITY_INDEX = "page_meta__project_id__status__deleted_at__priority__page_id__user_id"
PAGE_BATCH_INDEX = "page_meta__project_id__batch_id__deleted_at__created_at__page_id__user_id"


def column_value(model: type[DataModel], column: str, number: int) -> Any:
    """A plausible column value for row ``number``: few distinct values per column."""
    meta = model._meta
    field = meta.fields[column]
    unique = any(column in constraint.fields for constraint in meta.unique_constraints)
    if column == meta.pk_name or (unique and not isinstance(field, fields.Integer)):
        return f"{column}-{number:04d}"
    if unique:
        return number  # unique columns keep one value per row
    if column == "deleted_at":
        return codec.isoformat(START) if number % 25 == 0 else None
    if field.choices:
        return field.choices[number % len(field.choices)]
    if isinstance(field, fields.Boolean):
        return number % 2
    if isinstance(field, (fields.Integer, fields.Number)):
        return number % 10 + 1
    if isinstance(field, fields.Timestamp):
        return codec.isoformat(START + dt.timedelta(minutes=number % 97))
    if isinstance(field, fields.Array):
        return json.dumps([f"user-{number % 3}"])
    if isinstance(field, fields.URL):
        return f"https://example.com/{number % 11}"
    return f"{column}-{number % 7}"


@pytest.fixture(scope="module")
def connection() -> Iterator[Connection]:
    sql = MemorySQLDatabase()
    datastore = Datastore(MemoryKVStore(), routing=routing())
    create_tables(sql, MODELS)
    for model in MODELS:
        columns = model._meta.sync_fields
        rows = [[column_value(model, column, n) for column in columns] for n in range(ROWS)]
        sql.batch(insert_rows(model._meta.table, columns, rows, max_parameters=999))
    yield Connection(datastore, sql)
    datastore.close()
    sql.close()


def sample(model: type[DataModel], column: str) -> Any:
    """The value of ``column`` in the sample row, as a query takes it."""
    return model._meta.fields[column].from_sql(column_value(model, column, SAMPLE))


def equal_on(query: Query[Any], columns: tuple[str, ...]) -> Query[Any]:
    """Equality on each column; ``deleted_at IS NULL`` is already there for soft-delete models."""
    for column in columns:
        if column != "deleted_at":
            query = query.where(column, sample(query.model, column))
    return query


def indexes_used(plan: list[str]) -> set[str]:
    return {name for line in plan for name in _USED.findall(line)}


def total_plan(query: Query[Any]) -> list[str]:
    """The plan of the count that ``list()`` runs beside the rows (no public explain for it)."""
    sql, params = Compiler(query).count()
    return [
        row["detail"]
        for row in query.scope.connection.sql.execute(f"EXPLAIN QUERY PLAN {sql}", params)
    ]


def is_ordered(model: type[DataModel], index: tuple[str, ...]) -> bool:
    """An index with the primary key after its first column lists in an order: equality on the
    columns before the ordering field, then that field and the primary key as tie-breaker
    (columns after the primary key only spare table reads)."""
    return model._meta.pk_name in index[1:]


LOOKUPS = [
    pytest.param(model, index, id=f"{model._meta.table}:{'+'.join(index)}")
    for model in MODELS
    for index in model._meta.indexes
    if not is_ordered(model, index)
]
LISTINGS = [
    pytest.param(model, index, direction, id=f"{model._meta.table}:{'+'.join(index)}:{direction}")
    for model in MODELS
    for index in model._meta.indexes
    if is_ordered(model, index)
    for direction in ("asc", "desc")
]


def test_every_declared_index_is_checked() -> None:
    declared = sum(len(model._meta.indexes) for model in MODELS)
    assert len(LOOKUPS) + len(LISTINGS) // 2 == declared > 0


@pytest.mark.parametrize(("model", "index"), LOOKUPS)
def test_lookup_on_the_indexed_columns_uses_the_index(
    connection: Connection, model: type[DataModel], index: tuple[str, ...]
) -> None:
    """Equality on every column: the filter alone (as every total counts it) uses the index."""
    meta = model._meta
    query = equal_on(model.objects.system(using=connection).query(), index)
    expected = {index_name(meta, index)}
    if index == (meta.pk_name,):  # the listing index of a model ordered by its primary key
        expected.add(f"sqlite_autoindex_{meta.table}_1")  # the primary key's own: as good
    plan = total_plan(query)
    assert indexes_used(plan) & expected, plan


@pytest.mark.parametrize(("model", "index", "direction"), LISTINGS)
def test_listing_in_the_index_order_uses_it_without_sorting(
    connection: Connection, model: type[DataModel], index: tuple[str, ...], direction: str
) -> None:
    meta = model._meta
    position = index.index(meta.pk_name)
    order_field, equalities = index[position - 1], index[: position - 1]
    query = equal_on(model.objects.system(using=connection).query(), equalities)
    plan = query.order_by(order_field, direction).explain()
    assert index_name(meta, index) in indexes_used(plan), plan
    assert not any("TEMP B-TREE" in line for line in plan), plan


def page_lists(connection: Connection, scope: str) -> dict[str, Query[Any]]:
    """The page lists of nimbus.api.projects.PageViewSet.list, by the index each should use."""
    if scope == "user":
        pages = Page.objects.auth(sample(Page, "user_id"), using=connection)
    else:
        pages = Page.objects.system(using=connection)
    project = pages.query().where("project_id", sample(Page, "project_id"))
    return {
        PAGE_PROJECT_INDEX: project,
        PAGE_STATUS_INDEX: project.where("status", "queued"),
        PAGE_PRIORITY_INDEX: project.where("status", "queued").order_by("priority", "desc"),
        PAGE_BATCH_INDEX: project.where("batch_id", sample(Page, "batch_id")),
    }


@pytest.mark.parametrize("scope", ["user", "system"])
@pytest.mark.parametrize(
    "index", [PAGE_PROJECT_INDEX, PAGE_STATUS_INDEX, PAGE_PRIORITY_INDEX, PAGE_BATCH_INDEX]
)
def test_page_lists_read_rows_and_totals_from_their_index(
    connection: Connection, scope: str, index: str
) -> None:
    """The API's page lists (first page, deep page, cursor page) never sort, and their totals
    are counted from an index alone (for a status, either ordering's), whoever asks."""
    query = page_lists(connection, scope)[index].limit(2)
    cursor = query.list().pagination["next_cursor"]
    assert cursor is not None
    for shape in (query, query.page(50), query.after(cursor)):
        plan = shape.explain()
        assert indexes_used(plan) == {index}, plan
        assert not any("TEMP B-TREE" in line for line in plan), plan
    total = total_plan(query)
    assert len(total) == 1 and "USING COVERING INDEX page_meta__project_id__" in total[0], total


def member_values(number: int) -> dict[str, Any]:
    """MEMBER's row ``number``, with unique values where its constraints want them."""
    return {
        **{column: column_value(Member, column, number) for column in Member._meta.sync_fields},
        "email": f"m{number}@example.com",
        "handle": f"m{number}",
        "team_id": f"team-{number % 7}",
        "seat": number,
    }


@pytest.fixture(scope="module")
def members() -> Iterator[Connection]:
    sql = MemorySQLDatabase()
    datastore = Datastore(MemoryKVStore(), routing=routing())
    create_tables(sql, [Member])
    columns = Member._meta.sync_fields
    rows = [[member_values(n)[column] for column in columns] for n in range(ROWS)]
    sql.batch(insert_rows(Member._meta.table, columns, rows, max_parameters=999))
    yield Connection(datastore, sql)
    datastore.close()
    sql.close()


@pytest.mark.parametrize("constraint", Member._meta.unique_constraints, ids=lambda c: c.name)
def test_a_lookup_on_unique_values_uses_their_unique_index(
    members: Connection, constraint: UniqueConstraint
) -> None:
    """Each unique constraint's index serves equality on its values (the partial index of a
    handle released on delete too: the live-rows filter of every query implies its WHERE)."""
    query = Member.objects.system(using=members).query()
    for column in constraint.fields:
        query = query.where(column, member_values(SAMPLE)[column])
    assert query.count() == 1
    assert indexes_used(total_plan(query)) == {unique_index_name(Member._meta, constraint)}


class Ticket(DataModel):
    """Several ordering fields served by one declared index."""

    queue = fields.String(required=True)
    priority = fields.Integer()
    due = fields.Timestamp()

    class Meta:
        name = "TICKET"
        namespace = "NIMBUS_NOTES"
        table = "ticket_meta"
        sync_fields = ["queue", "priority", "due"]
        indexes = [("queue", "priority", "due", "id")]
        timestamps = soft_delete = user_tracking = auth = False


@pytest.mark.parametrize("ordering", [("-priority", "-due"), ("priority", "due")])
def test_cursor_pages_of_several_orderings_seek_their_index(ordering: tuple[str, ...]) -> None:
    sql = MemorySQLDatabase()
    create_tables(sql, [Ticket])
    rows = [
        [
            f"t{n:04d}",
            f"q{n % 3}",
            n % 5 if n % 7 else None,
            None if n % 4 == 0 else f"2025-01-{n % 28 + 1:02d}T00:00:00.000Z",
        ]
        for n in range(ROWS)
    ]
    sql.batch(
        insert_rows("ticket_meta", ["id", "queue", "priority", "due"], rows, max_parameters=999)
    )
    connection = Connection(Datastore(MemoryKVStore(), routing=routing()), sql)
    query = Ticket.objects.system(using=connection).filter(queue="q1").order_by(*ordering).limit(3)
    name = index_name(Ticket._meta, ("queue", "priority", "due", "id"))
    page = query.list()
    for _ in range(5):  # a few pages deep, NULL runs included
        cursor = page.pagination["next_cursor"]
        plan = query.after(cursor).explain()
        assert indexes_used(plan) == {name}, plan
        assert not any("TEMP B-TREE" in line for line in plan), plan
        page = query.after(cursor).list()
    assert not any("TEMP B-TREE" in line for line in query.explain())
