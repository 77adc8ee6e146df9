"""The Datastore facade, run unchanged on the KV adapter (every KV backend) and the SQL adapter."""

from __future__ import annotations

import json

import pytest

from datastore import (
    Conflict,
    Datastore,
    InvalidKey,
    InvalidValue,
    TooLarge,
    UnknownClass,
    composite_key,
)
from datastore.adapters import ObjectWrite
from datastore.backends.memory import MemorySQLDatabase
from datastore.backends.sqlite import SQLiteDatabase
from tests.support import Backend


def versioned(ds: Datastore) -> bool:
    """Whether the adapter's store keeps versions (Cloudflare KV does not)."""
    return ds.kv is None or ds.kv.supports_cas


def version(ds: Datastore, number: int) -> int:
    return number if versioned(ds) else 0


def test_put_adds_the_auth_array(ds: Datastore) -> None:
    db = ds.auth("user_123")
    assert db.put("PROJECT", "proj_456", {"name": "My Project"}) == version(ds, 1)
    assert db.get("PROJECT", "proj_456") == {"name": "My Project", "_auth": ["user_123"]}
    assert db.exists("PROJECT", "proj_456")


def test_kv_layout_is_what_workers_read(kv) -> None:
    ds = Datastore(kv)
    ds.auth("user_123").put("PROJECT", "proj_456", {"name": "My Project"})
    raw = kv.get("NIMBUS_PROJECTS", "project:proj_456")
    assert json.loads(raw) == {"name": "My Project", "_auth": ["user_123"]}
    ds.auth("user_123").list_add("apiKeys", "userId:12345", "key789")
    assert json.loads(kv.get("NIMBUS_LISTS", "apiKeys:userId:12345")) == ["key789"]
    assert kv.get_metadata("NIMBUS_LISTS", "apiKeys:userId:12345") == {"_auth": ["user_123"]}


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_sql_layout_is_the_spec_tables(kind: str, tmp_path) -> None:
    sql = MemorySQLDatabase() if kind == "memory" else SQLiteDatabase(tmp_path / "m.sqlite3")
    ds = Datastore(sql=sql, adapter="sql")
    ds.adapter.create_tables()  # type: ignore[attr-defined]
    ds.adapter.create_tables()  # type: ignore[attr-defined]  # idempotent
    ds.auth("user_123").put("USER", "12345", {"name": "John"})
    rows = sql.execute("SELECT class, id, data, auth_users FROM objects")
    assert rows == [
        {
            "class": "user",
            "id": "12345",
            "data": '{"name":"John","_auth":["user_123"]}',
            "auth_users": '["user_123"]',
        }
    ]
    ds.auth("user_123").list_add("apiKeys", "userId:12345", "key789")
    rows = sql.execute("SELECT list_name, pointer, item_id FROM lists")
    assert rows == [{"list_name": "apiKeys", "pointer": "userId:12345", "item_id": "key789"}]


def test_adapter_batch_write_is_all_or_nothing_on_a_stale_version(ds: Datastore) -> None:
    if not versioned(ds):
        pytest.skip("the store has no compare-and-set (supports_cas=False)")
    ds.auth("u1").put_many("PAGE", {"a": {"n": 1}, "b": {"n": 1}})
    stale = [
        ObjectWrite("a", {"n": 2, "_auth": ["u1"]}, 1),
        ObjectWrite("b", {"n": 2, "_auth": ["u1"]}, 7),
        ObjectWrite("c", {"n": 2, "_auth": ["u1"]}, 0),
    ]
    with pytest.raises(Conflict):
        ds.adapter.write_many("PAGE", stale, None)
    found = ds.system().get_many("PAGE", ["a", "b", "c"])
    assert found == {"a": {"n": 1, "_auth": ["u1"]}, "b": {"n": 1, "_auth": ["u1"]}}
    taken = [ObjectWrite("c", {"_auth": []}, 0), ObjectWrite("a", {"_auth": []}, 0)]
    with pytest.raises(Conflict):
        ds.adapter.write_many("PAGE", taken, None)
    assert ds.system().get("PAGE", "c") is None


def test_class_names_are_case_insensitive(ds: Datastore) -> None:
    db = ds.auth("u1")
    db.put("project", "p1", {"n": 1})
    assert db.get("PROJECT", "p1") == {"n": 1, "_auth": ["u1"]}


def test_update_keeps_owners_and_ignores_injected_auth(ds: Datastore) -> None:
    ds.system().put("PROJECT", "shared", {"v": 0}, auth=["alice", "bob"])
    bob = ds.auth("bob")
    assert bob.put("PROJECT", "shared", {"v": 1, "_auth": ["bob"]}) == version(ds, 2)
    assert ds.auth("alice").get("PROJECT", "shared") == {"v": 1, "_auth": ["alice", "bob"]}
    bob.put("PROJECT", "mine", {"_auth": ["bob", "mallory"]})
    assert ds.auth("mallory").get("PROJECT", "mine") is None


def test_another_user_never_sees_or_touches_an_object(ds: Datastore) -> None:
    alice, bob = ds.auth("alice"), ds.auth("bob")
    alice.put("PROJECT", "secret", {"plan": "world domination"})
    original = ds.system().get("PROJECT", "secret")

    assert bob.get("PROJECT", "secret") is None
    assert bob.exists("PROJECT", "secret") is False
    assert bob.get_many("PROJECT", ["secret"]) == {}
    assert bob.delete("PROJECT", "secret") is False
    assert bob.delete_many("PROJECT", ["secret"]) == 0
    with pytest.raises(Conflict, match="already taken"):
        bob.put("PROJECT", "secret", {"plan": "mine now"})
    with pytest.raises(Conflict):
        bob.put_many("PROJECT", {"new-one": {}, "secret": {}})
    assert bob.get("PROJECT", "new-one") is None
    assert ds.system().get("PROJECT", "secret") == original
    # a missing object looks exactly the same to bob
    assert bob.get("PROJECT", "nothing") is None
    assert bob.exists("PROJECT", "nothing") is False
    assert bob.delete("PROJECT", "nothing") is False


def test_only_system_may_set_owners(ds: Datastore) -> None:
    with pytest.raises(InvalidValue, match="only system"):
        ds.auth("alice").put("PROJECT", "p", {}, auth=["alice", "bob"])
    ds.system().put("PROJECT", "p", {}, auth=["alice", "bob"])
    assert ds.auth("bob").get("PROJECT", "p") is not None
    ds.system().put("PROJECT", "orphan", {"x": 1})
    assert ds.system().get("PROJECT", "orphan") == {"x": 1}
    assert ds.auth("alice").get("PROJECT", "orphan") is None


def test_unknown_class_is_a_clear_error(ds: Datastore) -> None:
    with pytest.raises(UnknownClass, match=r"unknown class 'WIDGET'.*known classes"):
        ds.auth("u").get("WIDGET", "w1")
    with pytest.raises(UnknownClass):
        ds.auth("u").put("WIDGET", "w1", {})


def test_composite_keys(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    db = ds.auth("u1")
    page_id = composite_key("proj_1", "page_abc")
    assert page_id == "proj_1:page_abc"
    db.put("PAGE", page_id, {"content": "<h1>Hi</h1>"})
    assert db.get("PAGE", "proj_1:page_abc")["content"] == "<h1>Hi</h1>"  # type: ignore[index]
    if ds.kv is not None:
        assert ds.kv.exists("NIMBUS_PAGES", "page:proj_1:page_abc")
    with pytest.raises(InvalidKey, match="may not contain ':'"):
        composite_key("a:b", "c")


def test_batch_operations(ds: Datastore) -> None:
    db = ds.auth("u1")
    versions = db.put_many("PAGE", {f"p:{i}": {"n": i} for i in range(5)})
    assert versions == {f"p:{i}": version(ds, 1) for i in range(5)}
    found = db.get_many("PAGE", ["p:0", "p:3", "p:missing"])
    assert found == {"p:0": {"n": 0, "_auth": ["u1"]}, "p:3": {"n": 3, "_auth": ["u1"]}}
    updated = db.put_many("PAGE", {"p:0": {"n": 10}, "p:9": {"n": 9}})
    assert updated == {"p:0": version(ds, 2), "p:9": version(ds, 1)}
    assert db.delete_many("PAGE", ["p:0", "p:1", "p:missing"]) == 2
    assert sorted(db.get_many("PAGE", [f"p:{i}" for i in range(10)])) == [
        "p:2",
        "p:3",
        "p:4",
        "p:9",
    ]


def test_ttl(facade: tuple[Datastore, Backend]) -> None:
    ds, backend = facade
    if ds.kv is not None and ds.kv.limits.min_ttl_seconds > 1:
        pytest.skip(f"{ds.kv.backend_name} TTLs are at least {ds.kv.limits.min_ttl_seconds}s")
    db = ds.auth("u1")
    db.put("SESSION", "s1", {"user": "u1"}, ttl=1)
    db.put("SESSION", "s2", {"user": "u1"})
    assert db.exists("SESSION", "s1")
    backend.advance(1.2)
    assert db.get("SESSION", "s1") is None
    assert db.get_many("SESSION", ["s1", "s2"]) == {"s2": {"user": "u1", "_auth": ["u1"]}}
    assert db.put("SESSION", "s1", {"again": True}) == version(ds, 1)


def test_lists(ds: Datastore) -> None:
    db = ds.auth("user_12345")
    assert db.list_items("apiKeys", "userId:12345") == []
    assert db.list_add("apiKeys", "userId:12345", "key_abc123") is True
    assert db.list_add("apiKeys", "userId:12345", "key_xyz456") is True
    assert db.list_add("apiKeys", "userId:12345", "key_abc789") is True
    assert db.list_add("apiKeys", "userId:12345", "key_abc123") is False  # no duplicates
    assert db.list_items("apiKeys", "userId:12345") == ["key_abc123", "key_xyz456", "key_abc789"]
    assert db.list_remove("apiKeys", "userId:12345", "key_xyz456") is True
    assert db.list_remove("apiKeys", "userId:12345", "key_xyz456") is False
    assert db.get_list("apiKeys", "userId:12345") == ["key_abc123", "key_abc789"]
    assert db.list_clear("apiKeys", "userId:12345") is True
    assert db.list_clear("apiKeys", "userId:12345") is False
    assert db.list_items("apiKeys", "userId:12345") == []


def test_get_list_convenience(ds: Datastore) -> None:
    db = ds.auth("user_12345")
    db.list_add("projects", "user_12345", "proj_abc")
    db.list_add("projects", "user_12345", "proj_xyz")
    assert db.get_list("projects", "user_12345") == ["proj_abc", "proj_xyz"]


def test_lists_are_scoped_to_their_owner(ds: Datastore) -> None:
    alice, bob = ds.auth("alice"), ds.auth("bob")
    alice.list_add("projects", "alice", "proj_1")
    assert bob.list_items("projects", "alice") == []
    assert bob.list_remove("projects", "alice", "proj_1") is False
    assert bob.list_clear("projects", "alice") is False
    with pytest.raises(Conflict):
        bob.list_add("projects", "alice", "proj_evil")
    assert alice.list_items("projects", "alice") == ["proj_1"]
    assert ds.system().list_items("projects", "alice") == ["proj_1"]


def test_an_emptied_list_has_no_owner(ds: Datastore) -> None:
    alice, bob = ds.auth("alice"), ds.auth("bob")
    alice.list_add("tags", "t", "x")
    alice.list_remove("tags", "t", "x")
    assert alice.list_items("tags", "t") == []
    assert bob.list_add("tags", "t", "y") is True
    assert alice.list_items("tags", "t") == []
    assert bob.list_items("tags", "t") == ["y"]


def test_round_trips(ds: Datastore) -> None:
    db = ds.auth("u1")
    db.put("PROJECT", "p1", {"n": 1})
    # Cloudflare KV reads before deleting to report what existed: one more request.
    delete_cost = 2 if ds.kv is not None and ds.kv.backend_name == "cloudflare" else 1
    expected = [
        (lambda: db.get("PROJECT", "p1"), 1),
        (lambda: db.exists("PROJECT", "p1"), 1),
        (lambda: db.get_many("PROJECT", ["p1", "p2", "p3"]), 1),
        (lambda: db.put("PROJECT", "p1", {"n": 2}), 2),  # ownership check + write
        (lambda: db.put_many("PROJECT", {f"x{i}": {} for i in range(50)}), 2),
        (lambda: db.delete("PROJECT", "p1"), 1 + delete_cost),  # ownership check + delete
        (lambda: ds.system().delete("PROJECT", "x1"), delete_cost),
        (lambda: db.list_items("projects", "u1"), 1),
    ]
    for call, count in expected:
        with ds.round_trips.track() as delta:
            call()
        assert delta.count == count


def test_spec_values_round_trip(ds: Datastore) -> None:
    db = ds.auth("u1")
    data = {
        "text": "żółw 🐢 'quotes' \"double\" \\ back",
        "nested": {"list": [1, 2.5, None, True, {"deep": "x"}]},
        "sql": "'); DROP TABLE objects; --",
    }
    db.put("PAGE", "p1", data)
    assert db.get("PAGE", "p1") == {**data, "_auth": ["u1"]}


def test_bad_input_changes_nothing(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    db = ds.auth("u1")
    db.put("PROJECT", "keep", {"v": 1})
    db.list_add("projects", "u1", "keep")

    def state() -> tuple[object, object]:
        system = ds.system()
        return system.get("PROJECT", "keep"), system.list_items("projects", "u1")

    before = state()
    huge = {"blob": "x" * (26 * 1024 * 1024)}
    bad_calls = [
        (InvalidKey, lambda: db.put("", "id", {})),
        (InvalidKey, lambda: db.put("1PROJECT", "id", {})),
        (InvalidKey, lambda: db.put("PRO:JECT", "id", {})),
        (InvalidKey, lambda: db.put("PROJECT", "", {})),
        (InvalidKey, lambda: db.put("PROJECT", "a::b", {})),
        (InvalidKey, lambda: db.put("PROJECT", ":keep", {})),
        (InvalidKey, lambda: db.put("PROJECT", "keep:", {})),
        (InvalidKey, lambda: db.put("PROJECT", "../etc/passwd", {})),
        (InvalidKey, lambda: db.put("PROJECT", "a b", {})),
        (InvalidKey, lambda: db.put("PROJECT", "x'; DROP TABLE objects;--", {})),
        (InvalidKey, lambda: db.put("PROJECT", "id\n", {})),
        (InvalidKey, lambda: db.put("PROJECT", "x" * 300, {})),
        (InvalidKey, lambda: db.get("PROJECT", 42)),  # type: ignore[arg-type]
        (InvalidKey, lambda: ds.auth("")),
        (InvalidKey, lambda: ds.auth("a b")),
        (InvalidValue, lambda: db.put("PROJECT", "keep", ["not", "an", "object"])),  # type: ignore[arg-type]
        (InvalidValue, lambda: db.put("PROJECT", "keep", {"n": float("nan")})),
        (InvalidValue, lambda: db.put("PROJECT", "keep", {"f": object()})),
        (TooLarge, lambda: db.put("PROJECT", "keep", huge)),
        (TooLarge, lambda: db.put_many("PROJECT", {"new": {}, "keep": huge})),
        (InvalidValue, lambda: db.put("PROJECT", "keep", {}, ttl=-1)),
        (InvalidValue, lambda: db.get_many("PROJECT", "keep")),
        (InvalidKey, lambda: db.list_add("projects", "u1", "bad item")),
        (InvalidKey, lambda: db.list_add("bad-list", "u1", "x")),
        (InvalidKey, lambda: db.list_add("projects", "u1:", "x")),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert state() == before
    assert db.get("PROJECT", "new") is None


def test_scan_streams_every_visible_object(ds: Datastore) -> None:
    ds.auth("u1").put_many("PAGE", {f"p:{i:03d}": {"n": i} for i in range(35)})
    ds.auth("u2").put("PAGE", "theirs", {"n": -1})
    ds.auth("u1").put("PROJECT", "not-a-page", {})
    batches = list(ds.auth("u1").scan("PAGE", batch_size=10))
    assert all(len(batch) <= 10 for batch in batches)
    found = {
        object_id: stored.data["n"] for batch in batches for object_id, stored in batch.items()
    }
    assert found == {f"p:{i:03d}": i for i in range(35)}
    everything = [oid for batch in ds.system().scan("PAGE", batch_size=10) for oid in batch]
    assert sorted(everything) == sorted([*found, "theirs"])


def test_the_sql_adapter_is_refused_on_batches_that_are_not_one_transaction(
    cloudflare_api,
) -> None:
    from datastore import NotSupported
    from datastore.backends.cloudflare import CloudflareD1Database

    cloudflare_api.reset()
    rest = CloudflareD1Database(**cloudflare_api.d1_options())
    assert rest.atomic_batches is False
    with rest.round_trips.track() as trips, pytest.raises(NotSupported, match="one transaction"):
        Datastore(sql=rest, adapter="sql")
    assert trips.count == 0
