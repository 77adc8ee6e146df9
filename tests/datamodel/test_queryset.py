"""The Django-style query set: Q, exclude, lookups, orderings, slicing, values, aggregates."""

from __future__ import annotations

import pytest

from datamodel import (
    Avg,
    Connection,
    Count,
    DoesNotExist,
    Max,
    Min,
    MultipleObjectsReturned,
    Q,
    Sum,
    ValidationError,
)
from tests.datamodel.models import Page


def trips(connection: Connection, kv_count: int, sql_count: int) -> tuple[int, int]:
    """(KV, SQL) round trips; with the SQL adapter objects live in the metadata database, so
    its one counter counts both."""
    if connection.datastore.adapter.name == "sql":
        return 0, sql_count
    return kv_count, sql_count


def page_ids(rows) -> list[str]:
    return [row["page_id"] for row in rows]


def test_q_objects_combine_with_or_and_not(pages) -> None:
    query = pages.query().order_by("page_id")
    either = query.filter(Q(status="completed") | Q(priority=4))
    assert page_ids(either) == ["page_02", "page_04", "page_06", "page_09", "page_10"]
    neither = query.filter(~Q(status="completed") & ~Q(priority=4))
    assert len(list(neither)) == 12 - 5
    nested = query.filter(Q(project_id="proj_b") & (Q(status="failed") | ~Q(archived=True)))
    assert page_ids(nested) == ["page_08", "page_10", "page_11"]


def test_exclude_keeps_rows_whose_column_is_null(pages) -> None:
    query = pages.query().order_by("page_id")
    without = query.exclude(title="Title 1")
    assert "page_01" not in page_ids(without)
    assert {"page_00", "page_04", "page_08"} <= set(page_ids(without))  # NULL titles stay
    assert len(list(without)) == 11
    assert len(list(query.exclude(title__isnull=True))) == 9


def test_an_empty_q_is_no_condition_even_negated(pages) -> None:
    # exclude() and ~Q() kept no row at all: the empty node rendered "(1) IS NOT 1".
    query = pages.query()
    assert query.exclude().count() == 12
    assert query.filter(~Q()).count() == 12
    assert query.exclude(Q()).count() == 12
    assert query.filter(~~Q(), ~Q() & Q(priority=4)).count() == 2
    assert query.filter(Q(priority=4) | ~Q()).count() == 2


def test_every_lookup(pages) -> None:
    query = pages.query().order_by("page_id")
    assert page_ids(query.filter(title__iexact="TITLE 1")) == ["page_01"]
    assert len(list(query.filter(title__icontains="TITLE 1"))) == 3
    assert page_ids(query.filter(title__istartswith="title 1")) == ["page_01", "page_10", "page_11"]
    assert page_ids(query.filter(url__endswith="/11")) == ["page_11"]
    assert len(list(query.filter(url__endswith=""))) == 12
    assert page_ids(query.filter(priority__range=(3, 4))) == [
        "page_03",
        "page_04",
        "page_08",
        "page_09",
    ]
    assert page_ids(query.filter(title__isnull=True)) == ["page_00", "page_04", "page_08"]
    assert page_ids(query.filter(pk__in=["page_01", "page_03"])) == ["page_01", "page_03"]
    assert page_ids(query.filter(created_at__isnull=False))[:1] == ["page_00"]


def test_unknown_fields_and_lookups_are_named(pages) -> None:
    with pytest.raises(ValidationError, match="unknown lookup 'near'"):
        pages.filter(priority__near=3)
    with pytest.raises(ValidationError, match="has no field 'colour'"):
        pages.query().exclude(colour="red")
    with pytest.raises(ValidationError, match="needs a string"):
        pages.filter(title__icontains=3)
    with pytest.raises(ValidationError, match="two values"):
        pages.filter(priority__range=3)
    with pytest.raises(ValidationError, match="cannot compare with null"):
        pages.filter(priority__gt=None)
    with pytest.raises(TypeError, match="no truth value"):
        bool(Q(status="x"))


def test_several_orderings_with_the_primary_key_breaking_ties(pages) -> None:
    rows = list(pages.query().order_by("-priority", "title"))
    expected = sorted(
        rows,
        key=lambda row: (
            -row["priority"],
            row["title"] is not None,
            row["title"] or "",
            row["page_id"],
        ),
    )
    assert page_ids(rows) == page_ids(expected)


@pytest.mark.parametrize("ordering", [("-priority", "title"), ("archived", "-title"), ("-score",)])
def test_cursors_walk_every_ordering_once(pages, ordering) -> None:
    query = pages.query().order_by(*ordering).limit(3)
    everything = page_ids(query.limit(100).list().data)
    seen: list[str] = []
    result = query.list()
    while True:
        seen += page_ids(result.data)
        cursor = result.pagination["next_cursor"]
        if cursor is None:
            break
        result = query.after(cursor).list()
    assert seen == everything
    assert page_ids(query.iterator(batch_size=2)) == everything


def test_slices_after_a_cursor_start_where_they_say(pages) -> None:
    # The keyset segments after a cursor dropped the slice's offset: after(c)[2] was the
    # first row after the cursor.
    query = pages.query().order_by("priority")
    cursor = query.limit(3).list().pagination["next_cursor"]
    rest = page_ids(query.after(cursor))
    assert rest == page_ids(list(query)[3:])
    assert page_ids(query.after(cursor)[2:5]) == rest[2:5]
    assert query.after(cursor)[4]["page_id"] == rest[4]
    assert page_ids(query.after(cursor)[1:].iterator(batch_size=2)) == rest[1:]


def test_page_and_limit_compose_in_either_order(pages) -> None:
    first = pages.query().order_by("page_id").page(2).limit(5).list()
    second = pages.query().order_by("page_id").limit(5).page(2).list()
    assert first.pagination["offset"] == second.pagination["offset"] == 5
    assert page_ids(first.data) == page_ids(second.data) == [f"page_{i:02d}" for i in range(5, 10)]


def test_slicing_first_last_and_get(pages) -> None:
    query = pages.query().order_by("page_id")
    assert page_ids(query[3:6]) == ["page_03", "page_04", "page_05"]
    assert page_ids(query[3:6][1:]) == ["page_04", "page_05"]
    assert query[5]["page_id"] == "page_05"
    with pytest.raises(IndexError):
        query[12]
    with pytest.raises(ValidationError, match="negative"):
        query[-1]
    assert query[3:6].count() == 3
    with pytest.raises(ValidationError, match="sliced"):
        query[3:6].list()
    assert query[10:].count() == 2
    assert query.first()["page_id"] == "page_00"
    assert query.last()["page_id"] == "page_11"
    assert query[2:4].last()["page_id"] == "page_03"
    assert query.filter(priority=99).first() is None
    assert query.exists() and not query.filter(priority=99).exists()
    # An empty slice has no rows, even when rows follow it.
    assert not query[3:6][3:].exists() and not query[0:0].exists()
    assert query[3:6][2:].exists()
    assert query.get(url="https://example.com/7")["page_id"] == "page_07"
    with pytest.raises(DoesNotExist):
        query.get(priority=99)
    with pytest.raises(MultipleObjectsReturned):
        query.get(priority=1)
    assert query.with_data().get(page_id="page_07").get("priority") == 2


def test_values_and_values_list_read_no_kv(pages, connection: Connection) -> None:
    query = pages.filter(project_id="proj_a").order_by("page_id")
    kv, sql = connection.datastore.round_trips, connection.sql.round_trips
    with kv.track() as kv_trips, sql.track() as sql_trips:
        rows = list(query.values("page_id", "priority")[:3])
    assert rows == [
        {"page_id": "page_00", "priority": 0},
        {"page_id": "page_01", "priority": 1},
        {"page_id": "page_02", "priority": 2},
    ]
    assert trips(connection, kv_trips.count, sql_trips.count) == (0, 1)
    assert list(query.values_list("page_id", "archived")[:2]) == [
        ("page_00", True),
        ("page_01", False),
    ]
    assert list(query.values_list("tags", flat=True)[:2]) == [["shop"], ["seo", "blog"]]
    with pytest.raises(ValidationError, match="not a sync field"):
        query.values("content")
    with pytest.raises(ValidationError, match="exactly one"):
        query.values_list("page_id", "tags", flat=True)


def test_aggregates_are_one_sql_round_trip(pages, connection: Connection) -> None:
    kv, sql = connection.datastore.round_trips, connection.sql.round_trips
    with kv.track() as kv_trips, sql.track() as sql_trips:
        result = pages.query().aggregate(
            n=Count(),
            titled=Count("title"),
            statuses=Count("status", distinct=True),
            top=Max("priority"),
            low=Min("last_processed"),
            total=Sum("priority"),
            mean=Avg("score"),
        )
    assert trips(connection, kv_trips.count, sql_trips.count) == (0, 1)
    assert result == {
        "n": 12,
        "titled": 9,
        "statuses": 4,
        "top": 4,
        "low": "2024-09-01T10:00:00.000Z",
        "total": sum(i % 5 for i in range(12)),
        "mean": sum(i / 2 for i in range(12)) / 12,
    }
    empty = pages.filter(priority=99).aggregate(n=Count(), top=Max("priority"), s=Sum("priority"))
    assert empty == {"n": 0, "top": None, "s": None}
    with pytest.raises(ValidationError, match="needs a number field"):
        pages.query().aggregate(s=Sum("title"))


def test_group_by_with_annotate_and_distinct(pages, connection: Connection) -> None:
    with connection.sql.round_trips.track() as sql_trips:
        by_status = list(pages.query().values("status").annotate(n=Count(), top=Max("priority")))
    assert sql_trips.count == 1
    assert by_status == [
        {"status": "completed", "n": 3, "top": 2},
        {"status": "failed", "n": 3, "top": 3},
        {"status": "pending", "n": 3, "top": 4},
        {"status": "processing", "n": 3, "top": 4},
    ]
    ordered = pages.query().values("project_id").annotate(n=Count()).order_by("-n")
    assert list(ordered) == [{"project_id": "proj_a", "n": 8}, {"project_id": "proj_b", "n": 4}]
    assert ordered.list().pagination["total"] == 2
    assert list(pages.query().values_list("archived", flat=True).distinct()) == [False, True]
    assert ordered.last() == {"project_id": "proj_b", "n": 4}
    assert ordered.first() == {"project_id": "proj_a", "n": 8}
    with pytest.raises(ValidationError, match="values"):
        pages.query().annotate(n=Count())


def test_last_and_reverse_of_a_grouped_query(pages) -> None:
    # last() reversed the primary-key ordering, which a grouped query does not use, and an
    # order on an aggregate left ties unordered: last() returned the first group.
    by_status = pages.query().values("status").annotate(n=Count())
    assert by_status.last() == {"status": "processing", "n": 3}
    by_count = by_status.order_by("-n")  # every status has 3 pages: the statuses break ties
    statuses = ["completed", "failed", "pending", "processing"]
    assert [row["status"] for row in by_count] == statuses
    assert [row["status"] for row in by_count.reverse()] == statuses[::-1]
    assert by_count.last() == {"status": "processing", "n": 3}
    assert pages.query().values_list("archived", flat=True).distinct().last() is True


def test_in_bulk_reads_every_object_at_once(pages, connection: Connection) -> None:
    with connection.datastore.round_trips.track() as kv_trips:
        found = pages.in_bulk(["proj_a:page_01", "proj_b:page_09", "proj_a:nope"])
    assert kv_trips.count == 1
    assert sorted(found) == ["proj_a:page_01", "proj_b:page_09"]
    assert found["proj_b:page_09"].get("priority") == 4


def test_page_model_queries_in_a_user_scope_see_only_theirs(connection: Connection) -> None:
    mine = Page.objects.auth("me", using=connection)
    theirs = Page.objects.auth("them", using=connection)
    mine.create(page_id="p1", project_id="x", url="https://a.example/", priority=1)
    theirs.create(page_id="p2", project_id="x", url="https://b.example/", priority=7)
    assert mine.query().aggregate(n=Count(), top=Max("priority")) == {"n": 1, "top": 1}
    assert list(mine.query().values_list("page_id", flat=True)) == ["p1"]
    assert list(
        Page.objects.system(using=connection)
        .query()
        .values_list("page_id", flat=True)
        .order_by("pk")
    ) == ["p1", "p2"]


def test_exists_after_a_cursor_says_whether_a_row_follows(pages) -> None:
    query = pages.query().order_by("page_id").limit(6)
    cursor = query.list().pagination["next_cursor"]  # after page_05
    assert query.after(cursor).exists() and query.after(cursor).first()["page_id"] == "page_06"
    up_to_five = query.filter(page_id__lte="page_05").after(cursor)
    assert up_to_five.first() is None
    assert not up_to_five.exists()  # as first() finds: nothing follows the cursor
