"""Query-level writes: update() through the save path, get_or_create, update_or_create."""

from __future__ import annotations

import math
from typing import Any

import pytest

from datamodel import Connection, PartialWrite, ValidationError, create_tables
from datastore import Conflict, Datastore, KVLimits
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, WEBHOOKS, Page


def small_batches(size: int) -> Connection:
    """A memory connection whose KV takes at most ``size`` keys per bulk read or write."""
    sql = MemorySQLDatabase()
    kv = MemoryKVStore(limits=KVLimits(max_batch_write=size, max_batch_get=size))
    create_tables(sql, TEST_MODELS)
    return Connection(Datastore(kv, sql=sql, routing=routing()), sql)


def make_pages(connection: Connection, count: int, **values: Any) -> None:
    Page.objects.auth("u1", using=connection).bulk_create(
        [
            {"page_id": f"p{i:03d}", "project_id": "x", "url": f"https://e.example/{i}", **values}
            for i in range(count)
        ]
    )


def test_update_goes_through_the_save_path(pages, connection: Connection) -> None:
    WEBHOOKS.clear()
    changed = pages.filter(project_id="proj_a", status="processing").update(status="completed")
    assert changed == 2
    assert [hook["page_id"] for hook in WEBHOOKS] == ["page_01", "page_05"]  # after_update ran
    page = pages.get(project_id="proj_a", page_id="page_01")
    assert page.get("status") == "completed" and page.get("_version") == 2
    row = pages.query().values("status", "_version").get(page_id="page_01")
    assert row == {"status": "completed", "_version": 2}  # the metadata row moved with it
    assert pages.filter(status="processing").count() == 1  # proj_b's stays


def test_update_refuses_bad_values_before_writing_anything(pages) -> None:
    with pytest.raises(ValidationError, match="not one of"):
        pages.query().update(status="bogus")
    with pytest.raises(ValidationError, match="part of the key"):
        pages.query().update(project_id="other")
    with pytest.raises(ValidationError, match="unknown field"):
        pages.query().update(colour="red")
    with pytest.raises(ValidationError, match="sliced"):
        pages.query()[:3].update(priority=1)
    assert pages.filter(project_id="other").count() == 0
    assert pages.filter(priority=1).count() == 3  # as the fixture made them


@pytest.mark.parametrize("count", [0, 7, 10, 23])
def test_update_round_trips_per_chunk(count: int) -> None:
    connection = small_batches(5)
    make_pages(connection, count)
    query = Page.objects.auth("u1", using=connection).filter(project_id="x")
    kv, sql = connection.datastore.round_trips, connection.sql.round_trips
    with kv.track() as kv_trips, sql.track() as sql_trips:
        assert query.update(priority=9) == count
    chunks = math.ceil(count / 5)
    assert kv_trips.count == chunks * 2  # one bulk read, one bulk compare-and-set write
    assert sql_trips.count == max(chunks, 1) + chunks  # a select of ids, then the rows
    assert query.filter(priority=9).count() == count


def test_update_retries_a_conflict_once_then_reports_it(monkeypatch) -> None:
    connection = small_batches(100)
    make_pages(connection, 4)
    pages = Page.objects.auth("u1", using=connection)
    original = Page._save_many.__func__  # type: ignore[attr-defined]
    calls = {"n": 0}

    def meddle(cls, instances, scope):
        calls["n"] += 1
        other = pages.get(project_id="x", page_id="p001")  # someone else changes p001
        other.set("title", f"theirs {calls['n']}")
        other.save()
        return original(cls, instances, scope)

    monkeypatch.setattr(Page, "_save_many", classmethod(meddle))
    with pytest.raises(PartialWrite) as failure:
        pages.filter(project_id="x").update(priority=1)
    assert failure.value.failed_ids == ["x:p001"]
    assert failure.value.done == 3
    assert calls["n"] == 3  # first try, the retry of p001, then the rest without it
    monkeypatch.undo()
    assert sorted(pages.filter(priority=1).values_list("page_id", flat=True)) == [
        "p000",
        "p002",
        "p003",
    ]
    assert pages.get(project_id="x", page_id="p001").get("title") == "theirs 3"


def test_get_or_create_by_key(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    lookup: dict[str, Any] = {"project_id": "x", "page_id": "home"}
    page, created = pages.get_or_create(defaults={"url": "https://e.example/"}, **lookup)
    assert created and page.get("url") == "https://e.example/"
    again, created = pages.get_or_create(defaults={"url": "https://other.example/"}, **lookup)
    assert not created and again.get("url") == "https://e.example/"
    assert pages.count() == 1


def test_get_or_create_needs_a_key_or_a_unique_lookup(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    with pytest.raises(ValidationError, match="must fix the key"):
        pages.get_or_create(url="https://e.example/", defaults={"project_id": "x"})


def test_get_or_create_loser_of_a_race_reads_the_winner(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    lookup: dict[str, Any] = {"project_id": "x", "page_id": "raced"}
    query = pages.query()
    # The other process creates it between our read (nothing there) and our create.
    winner = pages.create(url="https://winner.example/", **lookup)
    from datamodel.query import writes

    real_get = type(query).get

    def missing_once(self, *args, **kwargs):
        type(query).get = real_get  # type: ignore[method-assign]
        from datamodel import DoesNotExist

        raise DoesNotExist("not yet")

    type(query).get = missing_once  # type: ignore[method-assign]
    try:
        found, created = writes.get_or_create(query, {"url": "https://loser.example/"}, lookup)
    finally:
        type(query).get = real_get  # type: ignore[method-assign]
    if not connection.datastore.kv or connection.datastore.kv.supports_cas:
        assert not created and found.get("url") == winner.get("url")
    else:  # Cloudflare KV cannot refuse the second create: the last writer wins (documented)
        assert created and pages.get(**lookup).get("url") == "https://loser.example/"


def test_update_or_create(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    lookup: dict[str, Any] = {"project_id": "x", "page_id": "p"}
    page, created = pages.update_or_create(
        defaults={"url": "https://e.example/", "priority": 1}, **lookup
    )
    assert created and page.get("priority") == 1
    page, created = pages.update_or_create(defaults={"priority": lambda: 7}, **lookup)
    assert not created and page.get("priority") == 7
    assert pages.get(**lookup).get("priority") == 7
    assert pages.query().values_list("priority", flat=True).get(page_id="p") == 7


def test_the_manager_never_offers_update_or_delete_of_everything(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    assert not hasattr(pages, "update")
    with pytest.raises(TypeError):
        pages.delete()  # by id only


def test_update_or_create_retries_a_conflict_from_a_fresh_read(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    lookup: dict[str, Any] = {"project_id": "x", "page_id": "p"}
    pages.create(url="https://e.example/", **lookup)
    stale = pages.get(**lookup)
    fresh = pages.get(**lookup)
    fresh.set("title", "changed meanwhile")
    fresh.save()
    stale.set("priority", 3)
    if connection.datastore.kv and not connection.datastore.kv.supports_cas:
        pytest.skip("Cloudflare KV has no compare-and-set: a stale save is not refused")
    with pytest.raises(Conflict):
        stale.save()
    _page, created = pages.update_or_create(defaults={"priority": 3}, **lookup)
    assert not created
    stored = pages.get(**lookup)
    assert (stored.get("priority"), stored.get("title")) == (3, "changed meanwhile")


def test_queries_and_writes_on_a_model_with_every_option_off(connection: Connection) -> None:
    """No timestamps, soft delete, owner or auth: the same calls work in the system scope."""
    from datamodel import Count, Q
    from tests.datamodel.models import Setting

    settings = Setting.objects.system(using=connection)
    settings.bulk_create([{"key": f"k{i}", "value": "on" if i % 2 else "off"} for i in range(6)])
    assert settings.filter(Q(value="on") | Q(key="k0")).count() == 4
    assert list(settings.order_by("-key").values_list("key", flat=True)[:2]) == ["k5", "k4"]
    assert settings.aggregate(n=Count()) == {"n": 6}
    assert settings.filter(value="off").update(value="on") == 3
    assert settings.get_or_create(key="k9", defaults={"value": "new"})[1] is True
    deleted, by_model = settings.filter(key__in=["k0", "k1"]).delete()
    assert (deleted, by_model) == (2, {"SETTING": 2})
    assert settings.get_or_none("k0") is None  # gone from KV, not soft-deleted
    assert sorted(settings.values_list("key", flat=True)) == ["k2", "k3", "k4", "k5", "k9"]
    assert settings.delete_many(["k2", "k3"]) == 2
    assert settings.count() == 3
