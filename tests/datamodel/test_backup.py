"""Backup and restore between backends: every key, value, metadata and list comes back."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from datamodel.backup import backup, restore, verify_file
from datastore import Datastore, InvalidValue, KVStore, PutItem
from datastore.backends.memory import MemoryKVStore
from datastore.backends.sqlite import SQLiteKVStore
from tests.datamodel.conftest import routing
from tests.support import FakeClock, make_kv


def everything(kv: KVStore) -> dict[tuple[str, str], tuple[bytes, Any]]:
    found = {}
    for namespace in kv.namespaces():
        cursor = None
        while True:
            page = kv.list(namespace, cursor=cursor, limit=1000)
            for key, entry in kv.get_entries(namespace, page.keys).items() if page.keys else []:
                found[(namespace, key)] = (entry.value, entry.metadata)
            cursor = page.cursor
            if cursor is None:
                break
    return found


def store(name: str, path, cloudflare=None) -> KVStore:
    """A store on the real clock: expiry times in a backup are absolute."""
    if name == "memory":
        return MemoryKVStore()
    if name == "sqlite":
        path.mkdir(parents=True, exist_ok=True)
        return SQLiteKVStore(path / "kv.sqlite3")
    return make_kv(name, path, cloudflare).store


def fill(kv: KVStore) -> None:
    ds = Datastore(kv, routing=routing())
    alice = ds.auth("alice")
    alice.put_many("PROJECT", {f"proj_{i}": {"name": f"p{i}", "n": i} for i in range(120)})
    alice.list_add("projects", "alice", "proj_1")
    alice.list_add("projects", "alice", "proj_2")
    kv.put(
        "NIMBUS_CACHE", "cache:x:blob", b'{"bytes":"\\u00ff"}', metadata={"kind": "blob"}, ttl=3600
    )


@pytest.mark.parametrize(
    ("source", "target"), [("sqlite", "redis"), ("redis", "cloudflare"), ("memory", "sqlite")]
)
def test_round_trip_between_backends(source: str, target: str, tmp_path, request) -> None:
    cloudflare = (
        request.getfixturevalue("cloudflare_api") if "cloudflare" in (source, target) else None
    )
    origin = store(source, tmp_path / "a", cloudflare)
    fill(origin)
    path = tmp_path / "nimbus.jsonl.gz"
    made = backup(origin, None, path, source=source)
    assert made.kv_keys == 122 and len(made.sha256) == 64
    expected = everything(origin)
    if source == "redis":
        origin.close()  # the target may share the test Redis db: start it empty
    destination = store(target, tmp_path / "b", cloudflare)
    restored = restore(destination, None, path)
    assert restored.kv_keys == 122
    assert everything(destination) == expected
    entry = destination.get_entry("NIMBUS_CACHE", "cache:x:blob")
    assert entry is not None and entry.expires_at is not None
    assert Datastore(destination, routing=routing()).auth("alice").get_list(
        "projects", "alice"
    ) == [
        "proj_1",
        "proj_2",
    ]


def test_restore_keeps_the_time_left_on_the_target_store_clock(tmp_path) -> None:
    origin = MemoryKVStore(clock=FakeClock())
    origin.put("NIMBUS_CACHE", "cache:x:blob", b"v", ttl=120)
    path = tmp_path / "b.jsonl.gz"
    backup(origin, None, path)
    clock = FakeClock()
    clock.advance(20)
    target = MemoryKVStore(clock=clock)
    assert restore(target, None, path).kv_keys == 1
    entry = target.get_entry("NIMBUS_CACHE", "cache:x:blob")
    assert entry is not None and entry.expires_at == pytest.approx(clock() + 100)
    clock.advance(101)
    assert target.get("NIMBUS_CACHE", "cache:x:blob") is None


def test_restore_refuses_a_non_empty_target_unless_told(tmp_path) -> None:
    origin = MemoryKVStore()
    fill(origin)
    path = tmp_path / "b.jsonl.gz"
    backup(origin, None, path)
    target = MemoryKVStore()
    target.put("NIMBUS_PROJECTS", "project:proj_1", b'{"mine": true}')
    with pytest.raises(InvalidValue, match="already holds data"):
        restore(target, None, path)
    assert target.list("NIMBUS_PROJECTS").keys == ["project:proj_1"]
    skipped = restore(target, None, path, merge="skip")
    assert (
        skipped.skipped == 1
        and target.get("NIMBUS_PROJECTS", "project:proj_1") == b'{"mine": true}'
    )
    restore(target, None, path, merge="overwrite")
    assert target.get("NIMBUS_PROJECTS", "project:proj_1") == origin.get(
        "NIMBUS_PROJECTS", "project:proj_1"
    )


def test_a_damaged_file_is_refused_before_anything_is_written(tmp_path) -> None:
    origin = MemoryKVStore()
    origin.put_many("NIMBUS_CACHE", [PutItem(f"k{i}", b"v") for i in range(10)])
    path = tmp_path / "b.jsonl.gz"
    backup(origin, None, path)
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"k', b'"K', 1)
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(gzip.compress(b"".join(lines)))
    target = MemoryKVStore()
    with pytest.raises(InvalidValue, match="checksum mismatch"):
        restore(target, None, damaged)
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(gzip.compress(b"".join(lines[:-1])))
    with pytest.raises(InvalidValue, match="truncated"):
        verify_file(truncated)
    assert target.namespaces() == []


def test_sql_adapter_objects_and_migration_log(tmp_path) -> None:
    from datamodel import Connection, initialize
    from datastore.backends.sqlite import SQLiteDatabase
    from tests.datamodel.models import TEST_MODELS

    sql = SQLiteDatabase(tmp_path / "a.sqlite3")
    ds = Datastore(sql=sql, adapter="sql", routing=routing())
    initialize(Connection(ds, sql), TEST_MODELS, seeds=False)
    ds.auth("alice").put("PROJECT", "proj_1", {"name": "x"})
    ds.auth("alice").list_add("projects", "alice", "proj_1")
    path = tmp_path / "sql.jsonl.gz"
    report = backup(None, sql, path)
    assert report.sql_rows >= 3
    target = SQLiteDatabase(tmp_path / "b.sqlite3")
    restore(None, target, path)
    copy = Datastore(sql=target, adapter="sql", routing=routing())
    assert copy.auth("alice").get("PROJECT", "proj_1") == {"name": "x", "_auth": ["alice"]}
    assert copy.auth("alice").get_list("projects", "alice") == ["proj_1"]
    assert target.execute("SELECT count(*) AS n FROM _nimbus_migrations")[0]["n"] > 0


@pytest.mark.parametrize("adapter", ["kv", "sql"])
def test_reservations_travel_with_their_objects(adapter: str, tmp_path) -> None:
    """Reservation keys are raw KV keys (or ``objects`` rows): a backup keeps them, a restore
    brings them back still refusing a second claim, and they never pass for objects."""
    from datastore import Conflict
    from datastore.backends.sqlite import SQLiteDatabase

    def datastore(name: str) -> tuple[Datastore, Any]:
        if adapter == "kv":
            kv = SQLiteKVStore(tmp_path / f"{name}.kv.sqlite3")
            return Datastore(kv, routing=routing()), kv
        sql = SQLiteDatabase(tmp_path / f"{name}.sqlite3")
        ds = Datastore(sql=sql, adapter="sql", routing=routing())
        ds.adapter.create_tables()  # type: ignore[attr-defined]
        return ds, sql

    origin, origin_store = datastore("a")
    origin.auth("alice").put_many(
        "PROJECT", {"proj_1": {}, "proj_2": {}}, create=True, claims={"slug:x": "proj_1"}
    )
    path = tmp_path / "r.jsonl.gz"
    copy, copy_store = datastore("b")
    if adapter == "kv":
        assert backup(origin_store, None, path).kv_keys == 3  # two objects, one reservation
        restore(copy_store, None, path)
    else:
        backup(None, origin_store, path)
        restore(None, copy_store, path)
    system = copy.system()
    assert system.reservation_owner("PROJECT", "slug:x") == "proj_1"
    assert sorted(oid for batch in system.scan("PROJECT") for oid in batch) == ["proj_1", "proj_2"]
    with pytest.raises(Conflict):
        system.put("PROJECT", "proj_3", {}, if_version=0, claims={"slug:x": "proj_3"})


def _log(sql) -> list[tuple]:
    rows = sql.execute(
        'SELECT model, "table", change, detail, "sql", schema_hash FROM _nimbus_migrations'
    )
    return sorted(tuple(row.values()) for row in rows)


def test_restore_never_duplicates_the_migration_log(tmp_path) -> None:
    from datamodel import Connection, initialize
    from datastore.backends.sqlite import SQLiteDatabase
    from tests.datamodel.models import TEST_MODELS

    def connection(sql: SQLiteDatabase) -> Connection:
        return Connection(Datastore(sql=sql, adapter="sql", routing=routing()), sql)

    origin = SQLiteDatabase(tmp_path / "a.sqlite3")
    initialize(connection(origin), TEST_MODELS, seeds=False)
    connection(origin).datastore.auth("alice").put("PROJECT", "proj_1", {"name": "x"})
    logged = _log(origin)
    path = tmp_path / "sql.jsonl.gz"
    backup(None, origin, path)
    for merge in ("overwrite", "overwrite", "skip"):  # into the database it came from
        restore(None, origin, path, merge=merge)
        assert _log(origin) == logged
    target = SQLiteDatabase(tmp_path / "b.sqlite3")  # a new database, then rebuilt
    restore(None, target, path)
    initialize(connection(target), TEST_MODELS, seeds=False)
    assert _log(target) == logged
    report = restore(None, target, path, merge="overwrite")
    initialize(connection(target), TEST_MODELS, seeds=False)
    assert _log(target) == logged and report.skipped == len(logged)


def test_restore_reports_the_verified_sha256(tmp_path) -> None:
    origin = MemoryKVStore()
    fill(origin)
    path = tmp_path / "b.jsonl.gz"
    made = backup(origin, None, path)
    assert verify_file(path)["sha256"] == made.sha256
    target = MemoryKVStore()
    with pytest.raises(
        InvalidValue, match=f"checksum mismatch: the file's sha256 is {made.sha256}"
    ):
        restore(target, None, path, sha256="ab" * 32)
    assert target.namespaces() == []
    assert restore(target, None, path, sha256=made.sha256.upper()).sha256 == made.sha256
