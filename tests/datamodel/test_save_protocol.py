"""The save protocol: round trips, compare-and-set, failures, hooks, auth scoping, logging."""

from __future__ import annotations

import logging
import math

import pytest

from datamodel import Connection, Rejected, SyncError, ValidationError
from datastore import Conflict, Datastore, Unavailable
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Note, Page, Setting
from tests.support import FaultyStore


def counts(connection: Connection):
    """Round trips (KV, SQL) since the call. With the SQL adapter objects and metadata share
    one database, so both numbers are that database's total."""
    kv, sql = connection.datastore.round_trips, connection.sql.round_trips
    start = (kv.value, sql.value)
    return lambda: (kv.value - start[0], sql.value - start[1])


def combines(connection: Connection) -> bool:
    """Whether the KV store and the database combine requests (the gateway): a request that
    does both is counted once, by the store that sends it."""
    return connection.sql.backend_name == "gateway"


def expected(
    connection: Connection, kv: int, sql: int, combined: tuple[int, int] | None = None
) -> tuple[int, int]:
    if combined is not None and combines(connection):
        return combined
    if connection.datastore.round_trips is connection.sql.round_trips:
        return (kv + sql, kv + sql)
    return (kv, sql)


def test_round_trips(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    measure = counts(connection)
    page = pages.create(project_id="p1", url="https://example.com")
    # save = 1 KV + 1 SQL; one request where they combine (the write, then the row)
    assert measure() == expected(connection, 1, 1, combined=(1, 0))

    page.set("status", "processing")
    measure = counts(connection)
    page.save()
    assert measure() == expected(connection, 1, 1, combined=(1, 0))

    measure = counts(connection)
    page.save()  # nothing changed: nothing written
    assert measure() == expected(connection, 0, 0)

    measure = counts(connection)
    pages.get(page.kv_id)
    assert measure() == expected(connection, 1, 0)

    pages.bulk_create([{"project_id": "p1", "url": f"https://e.com/{i}"} for i in range(60)])
    measure = counts(connection)
    pages.query().limit(50).list()
    assert measure() == expected(connection, 0, 1)  # rows and total in one batch

    measure = counts(connection)
    result = pages.query().limit(50).with_data().list()
    # + one bulk KV read, whatever the page size; where they combine, the select and the reads
    # of its rows are one request
    assert measure() == expected(connection, 1, 1, combined=(0, 1))
    assert [page.get("url") for page in result.data] == [
        row["url"] for row in pages.query().limit(50).list().data
    ]

    measure = counts(connection)
    pages.bulk_create([{"project_id": "p2", "url": f"https://e.com/b/{i}"} for i in range(100)])
    assert measure() == expected(connection, 1, 1, combined=(1, 0))  # a batch of 100 pages


def test_bulk_create_round_trips() -> None:
    from datastore.contract import KVLimits

    kv = MemoryKVStore(limits=KVLimits(max_batch_write=100))
    sql = MemorySQLDatabase()
    connection = Connection(Datastore(kv, routing=routing()), sql)
    from datamodel import create_tables

    create_tables(sql, TEST_MODELS)
    measure = counts(connection)
    created = Page.objects.auth("u1", using=connection).bulk_create(
        [{"project_id": "p", "url": f"https://e.com/{i}"} for i in range(250)]
    )
    assert len(created) == 250
    assert measure() == (math.ceil(250 / 100), math.ceil(250 / 100))
    assert Page.objects.auth("u1", using=connection).count() == 250


def test_concurrent_update_raises_conflict_instead_of_losing_data(connection: Connection) -> None:
    kv = connection.datastore.kv
    if kv is not None and not kv.supports_cas:
        pytest.skip("no compare-and-set on this store: last writer wins (documented)")
    pages = Page.objects.auth("u1", using=connection)
    page = pages.create(project_id="p1", url="https://example.com")
    first, second = pages.get(page.kv_id), pages.get(page.kv_id)
    first.set("title", "first")
    first.save()
    second.set("title", "second")
    with pytest.raises(Conflict):
        second.save()
    assert second.get("_version") == 1 and second.get("title") == "second"  # as it was
    assert pages.get(page.kv_id).get("title") == "first"
    row = connection.sql.execute("SELECT title, _version FROM webpage_meta")[0]
    assert row == {"title": "first", "_version": 2}
    second.load(page.kv_id)  # reload and retry
    second.set("title", "second")
    second.save()
    assert pages.get(page.kv_id).get("title") == "second"


def test_a_kv_failure_writes_no_metadata(memory_connection: Connection) -> None:
    faulty = FaultyStore(memory_connection.datastore.kv)
    connection = Connection(Datastore(faulty, routing=routing()), memory_connection.sql)
    pages = Page.objects.auth("u1", using=connection)
    page = pages.create(project_id="p1", url="https://example.com")
    faulty.failing = {"put", "put_many"}
    page.set("title", "never stored")
    with pytest.raises(Unavailable):
        page.save()
    with pytest.raises(Unavailable):
        pages.create(project_id="p1", url="https://example.com/2")
    assert page.get("_version") == 1  # the instance is left as it was
    rows = connection.sql.execute("SELECT title, _version FROM webpage_meta")
    assert rows == [{"title": None, "_version": 1}]
    faulty.failing = set()
    page.save()  # the same instance can be saved once the store is back
    assert pages.get(page.kv_id).get("title") == "never stored"


def test_a_metadata_failure_is_a_clear_error_and_kv_keeps_the_object(
    connection: Connection,
) -> None:
    faulty = FaultyStore(connection.sql)
    broken = Connection(connection.datastore, faulty)
    pages = Page.objects.auth("u1", using=broken)
    faulty.failing = {"batch"}
    with pytest.raises(SyncError, match="nimbus_sync --repair"):
        page = pages.create(project_id="p1", page_id="page_x", url="https://example.com")
    page = pages.get(project_id="p1", page_id="page_x")
    assert page.get("url") == "https://example.com" and page.get("_version") == 1
    page.set("title", "kept")
    with pytest.raises(SyncError):
        page.save()
    assert page.get("_version") == 2 and not page.changes()  # it reflects what KV holds
    faulty.failing = set()
    assert pages.query().count() == 0  # the row is missing until repaired
    page.set("title", "again")
    page.save()  # the KV write and the row land once the database is back
    assert pages.get(page.kv_id).get("title") == "again"
    assert pages.query().count() == 1


def test_before_create_can_modify(memory_connection: Connection) -> None:
    note = Note.objects.auth("u1", using=memory_connection).create(body="Hello World")
    assert note.get("slug") == "hello-world"
    row = memory_connection.sql.execute("SELECT slug FROM note_meta")[0]
    assert row == {"slug": "hello-world"}


def test_before_update_and_delete_can_reject(memory_connection: Connection) -> None:
    notes = Note.objects.auth("u1", using=memory_connection)
    note = notes.create(body="text", locked=True)
    note.set("body", "changed")
    with pytest.raises(Rejected, match="locked"):
        note.save()
    with pytest.raises(Rejected):
        note.delete()
    stored = notes.get(note.kv_id)
    assert stored.get("body") == "text" and stored.get("deleted_at") is None


def test_after_hook_errors_are_logged_not_raised(
    memory_connection: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(instance: Note) -> None:
        raise RuntimeError("webhook endpoint down")

    Note.hooks.connect("after_create", broken)
    try:
        with caplog.at_level(logging.ERROR, logger="datamodel.hooks"):
            note = Note.objects.auth("u1", using=memory_connection).create(body="x")
    finally:
        Note.hooks.disconnect("after_create", broken)
    assert not note.is_new()
    assert "after_create hook" in caplog.text and "webhook endpoint down" in caplog.text


def test_operations_are_logged_with_timing(
    memory_connection: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="datamodel"):
        Page.objects.auth("u1", using=memory_connection).create(
            project_id="p", page_id="pg", url="https://e.com"
        )
    assert any(
        "create WEBPAGE pg in" in message and "(kv 1, sql 1 round trips)" in message
        for message in caplog.messages
    )


def test_scoping(connection: Connection) -> None:
    alice = Page.objects.auth("alice", using=connection)
    bob = Page.objects.auth("bob", using=connection)
    page = alice.create(project_id="p1", url="https://example.com")
    assert bob.get_or_none(page.kv_id) is None
    assert bob.exists(page.kv_id) is False
    assert bob.delete(page.kv_id) is False
    assert bob.query().count() == 0 and bob.query().list().data == []
    with pytest.raises(ValidationError, match="user_id"):
        bob.create(project_id="p1", url="https://example.com", user_id="alice")
    assert alice.get(page.kv_id).get("deleted_at") is None
    # system access sees everything and may create on behalf of a user
    system = Page.objects.system(using=connection)
    assert system.query().count() == 1
    made = system.create(project_id="p2", url="https://example.com", user_id="bob")
    assert bob.get(made.kv_id).get("_auth") == ["bob"]
    with pytest.raises(ValidationError, match="user_id"):
        system.create(project_id="p3", url="https://example.com")


def test_owner_cannot_be_changed(memory_connection: Connection) -> None:
    pages = Page.objects.auth("alice", using=memory_connection)
    page = pages.create(project_id="p1", url="https://example.com")
    page.set("user_id", "bob")
    with pytest.raises(ValidationError, match="owner cannot be changed"):
        page.save()


def test_models_without_options(connection: Connection) -> None:
    settings = Setting.objects.auth("anyone", using=connection)
    setting = settings.create(key="theme", value="dark")
    data = setting.get_data()
    assert set(data) == {"key", "value", "_version"}  # no user_id, timestamps, deleted_at, _auth
    assert (
        Setting.objects.auth("someone_else", using=connection).get("theme").get("value") == "dark"
    )
    assert settings.delete("theme") is True  # a hard delete
    assert Setting.objects.system(using=connection).get_or_none("theme") is None
    assert connection.sql.execute("SELECT count(*) AS n FROM setting_meta") == [{"n": 0}]


def test_unknown_stored_keys_survive_a_save(memory_connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=memory_connection)
    page = pages.create(project_id="p1", url="https://example.com")
    store = memory_connection.datastore.auth("u1")
    raw = store.read("WEBPAGE", page.kv_id)
    assert raw is not None
    store.put("WEBPAGE", page.kv_id, {**raw.data, "added_by_a_worker": {"x": 1}})
    loaded = pages.get(page.kv_id)
    loaded.set("title", "t")
    loaded.save()
    assert store.get("WEBPAGE", page.kv_id)["added_by_a_worker"] == {"x": 1}  # type: ignore[index]


def test_changes_made_in_place_are_saved(memory_connection: Connection) -> None:
    """A nested value changed through ``get()`` counts as a change, whether the object was
    just loaded or just saved; nothing else does."""
    pages = Page.objects.auth("u1", using=memory_connection)
    created = pages.create(project_id="p1", url="https://example.com", tags=["a"])
    created.get("tags").append("b")
    assert created.changes() == {"tags": ["a", "b"]}
    created.save()

    loaded = pages.get(created.kv_id)
    assert loaded.changes() == {}
    assert loaded.get("url") == "https://example.com" and loaded.changes() == {}
    loaded.get("tags").append("c")
    assert loaded.changes() == {"tags": ["a", "b", "c"]}
    loaded.save()
    assert pages.get(created.kv_id).get("tags") == ["a", "b", "c"]

    data = loaded.get_data()
    data["tags"].append("not saved")  # get_data() is a copy
    assert loaded.changes() == {}
