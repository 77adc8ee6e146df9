"""The query builder: operators, ordering, pagination, keyset cursors, streaming, safety."""

from __future__ import annotations

import pytest

from datamodel import Connection, ValidationError


def ids(result) -> list[str]:
    return [row["page_id"] for row in result.data]


def test_operators(pages) -> None:
    query = pages.query().order_by("page_id").limit(100)
    assert ids(query.where("status", "completed").list()) == ["page_02", "page_06", "page_10"]
    assert len(query.where("status", "ne", "completed").list().data) == 9
    assert ids(query.where("priority", "gt", 3).list()) == ["page_04", "page_09"]
    assert len(query.where("priority", "gte", 3).list().data) == 4
    assert ids(query.where("score", "lt", 1).list()) == ["page_00", "page_01"]
    assert len(query.where("score", "lte", 1).list().data) == 3
    assert ids(query.where_in("status", ["failed", "pending"]).where("priority", 0).list()) == [
        "page_00"
    ]
    assert query.where_in("status", []).list().data == []
    assert len(query.where("title", "contains", "itle 1").list().data) == 3  # 1, 10, 11
    assert ids(query.where("url", "startswith", "https://example.com/1").list()) == [
        "page_01",
        "page_10",
        "page_11",
    ]
    assert len(query.where("tags", "contains", "seo").list().data) == 6
    assert len(query.where("archived", True).list().data) == 4
    assert len(query.where("title", None).list().data) == 3
    assert len(query.where("title", "ne", None).list().data) == 9
    assert ids(query.where("last_processed", "gte", "2024-09-11T00:00:00Z").list()) == [
        "page_10",
        "page_11",
    ]
    assert len(query.filter(project_id="proj_a", priority__lte=1).list().data) == 4


def test_results_are_decoded(pages) -> None:
    row = pages.query().where("page_id", "page_03").first()
    assert row["archived"] is True and row["tags"] == ["seo", "blog"]
    assert row["score"] == 1.5 and row["last_processed"] == "2024-09-04T10:00:00.000Z"


def test_ordering_and_pagination(pages) -> None:
    by_priority = pages.query().order_by("priority", "desc").limit(3).list()
    assert [row["priority"] for row in by_priority.data] == [4, 4, 3]
    everything = pages.query().limit(5)
    assert everything.page(3).list().pagination == {
        "total": 12,
        "limit": 5,
        "offset": 10,
        "page": 3,
        "pages": 3,
        "has_next": False,
        "has_prev": True,
        "next_cursor": None,
    }
    assert pages.query().list().pagination["limit"] == 20  # the default


@pytest.mark.parametrize("field", ["priority", "title", "page_id"])  # title has NULLs
@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_keyset_pagination_visits_every_row_once(pages, field, direction, limit) -> None:
    query = pages.query().order_by(field, direction).limit(limit)
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        result = query.after(cursor).list()
        assert result.pagination["total"] == 12
        seen.extend(ids(result))
        cursor = result.pagination["next_cursor"]
        if cursor is None:
            break
    full = pages.query().order_by(field, direction).limit(100).list()
    assert seen == ids(full)


def test_iterator_streams_everything(pages, connection: Connection) -> None:
    streamed = list(pages.query().order_by("page_id").iterator(batch_size=5))
    assert [row["page_id"] for row in streamed] == [f"page_{i:02d}" for i in range(12)]
    by_title = list(pages.query().order_by("title", "desc").iterator(batch_size=2))
    assert [row["page_id"] for row in by_title] == ids(
        pages.query().order_by("title", "desc").limit(100).list()
    )
    kv, sql = connection.datastore.round_trips, connection.sql.round_trips
    before = (kv.value, sql.value)
    instances = list(pages.query().with_data().iterator(batch_size=4))
    assert len(instances) == 12 and all(page.get("url") for page in instances)
    if kv is not sql:  # three batches: one select each (no totals), one bulk read each
        assert (kv.value - before[0], sql.value - before[1]) == (3, 3)
    with pytest.raises(ValidationError, match="batch_size"):
        next(pages.query().iterator(batch_size=0))


def test_only_sync_fields_and_known_operators(pages) -> None:
    query = pages.query()
    with pytest.raises(ValidationError, match="not a sync field"):
        query.where("content", "x")
    with pytest.raises(ValidationError, match="not a sync field"):
        query.order_by("content")
    with pytest.raises(ValidationError, match="has no field"):
        query.where('status" = "x" OR 1=1 --', "x")
    with pytest.raises(ValidationError, match="unknown operator"):
        query.where("status", "= 1 OR 1=1 --", "x")
    with pytest.raises(ValidationError, match="has no field 'desc; DROP TABLE webpage_meta'"):
        query.order_by("status", "desc; DROP TABLE webpage_meta")
    with pytest.raises(ValidationError, match="not one of"):
        query.where("status", "bogus")
    with pytest.raises(ValidationError, match="at most 100"):
        query.limit(101)
    with pytest.raises(ValidationError):
        query.limit(0)
    with pytest.raises(ValidationError):
        query.page(0)
    with pytest.raises(ValidationError, match="cursor"):
        query.after("not-a-cursor")


def test_sql_looking_values_are_just_values(pages) -> None:
    hostile = "x' OR '1'='1"
    assert pages.query().where("title", hostile).list().data == []
    assert pages.query().where("title", "contains", "'; DROP TABLE webpage_meta; --").count() == 0
    assert pages.query().count() == 12


def test_default_listing_uses_an_index(pages) -> None:
    plan = " ".join(pages.query().explain())
    if "SEARCH" not in plan and "SCAN" not in plan:
        pytest.skip("no query plan from this backend")
    assert "USING INDEX webpage_meta__user_id__created_at__page_id" in plan
    assert "TEMP B-TREE" not in plan


def test_search_over_text_fields(pages) -> None:
    found = pages.query().search("TITLE 1", ["title", "url"]).order_by("page_id").list()
    assert ids(found) == ["page_01", "page_10", "page_11"]
    assert pages.query().search("example.com/3", ["title", "url"]).count() == 1
    assert pages.query().search("", ["title"]).count() == 12
    with pytest.raises(ValidationError, match="not a sync field"):
        pages.query().search("x", ["content"])
