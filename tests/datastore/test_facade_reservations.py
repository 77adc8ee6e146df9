"""Reservations through the facade: unique values claimed, moved and released with their
objects, on every adapter and backend (KV on memory, SQLite, Redis and Cloudflare; the SQL
``objects`` table on memory, SQLite and D1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from datastore import (
    Conflict,
    Datastore,
    InvalidKey,
    InvalidValue,
    KVLimits,
    TooLarge,
)
from datastore.backends.memory import MemoryKVStore
from datastore.keys import reservation_key
from tests.support import Backend

USER = "USER"
NS = "NIMBUS_USERS"


def atomic(ds: Datastore) -> bool:
    """Whether the store refuses a taken claim itself (everything but Cloudflare KV)."""
    return ds.adapter.supports_cas


def is_cloudflare_kv(ds: Datastore) -> bool:
    return ds.kv is not None and ds.kv.backend_name == "cloudflare"


def key(name: str) -> str:
    return reservation_key(USER, name)


def trips(ds: Datastore, call: Callable[[], Any]) -> int:
    with ds.round_trips.track() as delta:
        call()
    return delta.count


def test_a_claim_stores_its_owner_beside_the_object(facade: tuple[Datastore, Backend]) -> None:
    ds, backend = facade
    system = ds.system()
    system.put(USER, "u1", {"email": "a@x"}, if_version=0, claims={"email:a": "u1"})
    assert system.reservation_owner(USER, "email:a") == "u1"
    assert system.reservation_owner(USER, "email:zzz") is None
    assert system.reservation_owners(USER, ["email:a", "email:zzz"]) == {"email:a": "u1"}
    if ds.kv is not None:
        assert ds.kv.get(NS, "_unique:user:email:a") == b'"u1"'
    else:
        rows = backend.store.execute(
            "SELECT class, id, data FROM objects WHERE class LIKE '\\_%' ESCAPE '\\'"
        )
        assert [dict(row) for row in rows] == [
            {"class": "_unique:user", "id": "email:a", "data": '"u1"'}
        ]


def test_a_taken_name_refuses_the_whole_write(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    alice, bob = ds.auth("alice"), ds.auth("bob")
    alice.put(USER, "u1", {"email": "a@x"}, if_version=0, claims={"email:a": "u1"})
    attempts: list[Callable[[], object]] = [
        lambda: bob.put(USER, "u2", {"email": "a@x"}, if_version=0, claims={"email:a": "u2"}),
        lambda: bob.put(USER, "u2", {"email": "a@x"}, claims={"email:a": "u2"}),
        lambda: bob.start_put(USER, "u2", {}, if_version=0, claims={"email:a": "u2"}).result(),
        lambda: bob.put_many(
            USER,
            {"u2": {}, "u3": {}},
            create=True,
            claims={"email:b": "u2", "email:a": "u3"},
        ),
    ]
    for attempt in attempts:
        with pytest.raises(Conflict) as info:
            attempt()
        assert info.value.keys == (key("email:a"),)
        assert "already reserved" in str(info.value) and "u1" not in str(info.value)
        system = ds.system()
        assert system.get_many(USER, ["u2", "u3"]) == {}
        assert system.reservation_owners(USER, ["email:a", "email:b"]) == {"email:a": "u1"}


def test_a_move_claims_releases_and_updates_in_one_write(
    facade: tuple[Datastore, Backend],
) -> None:
    ds, _ = facade
    db = ds.auth("alice")
    first = db.put(USER, "u1", {"email": "a@x"}, if_version=0, claims={"email:a": "u1"})
    db.put(USER, "u2", {"email": "c@x"}, if_version=0, claims={"email:c": "u2"})
    stored = db.read(USER, "u1")
    assert stored is not None and stored.version == first
    moved = db.put(
        USER,
        "u1",
        {**stored.data, "email": "b@x"},
        if_version=stored.version,
        claims={"email:b": "u1"},
        releases=["email:a"],
    )
    system = ds.system()
    assert system.reservation_owners(USER, ["email:a", "email:b", "email:c"]) == {
        "email:b": "u1",
        "email:c": "u2",
    }
    assert db.get(USER, "u1") == {"email": "b@x", "_auth": ["alice"]}
    # Moving onto a taken value changes nothing: not the object, not its old reservation.
    with pytest.raises(Conflict) as info:
        db.put(
            USER,
            "u1",
            {"email": "c@x", "_auth": ["alice"]},
            if_version=moved,
            claims={"email:c": "u1"},
            releases=["email:b"],
        )
    assert info.value.keys == (key("email:c"),)
    after = db.read(USER, "u1")
    assert after is not None and (after.data["email"], after.version) == ("b@x", moved)
    assert system.reservation_owners(USER, ["email:b", "email:c"]) == {
        "email:b": "u1",
        "email:c": "u2",
    }
    # The released name is free again.
    db.put(USER, "u3", {"email": "a@x"}, if_version=0, claims={"email:a": "u3"})
    assert system.reservation_owner(USER, "email:a") == "u3"


def test_a_stale_object_version_refuses_its_claims_too(
    facade: tuple[Datastore, Backend],
) -> None:
    ds, _ = facade
    if not atomic(ds):
        pytest.skip("without compare-and-set the last writer wins (supports_cas=False)")
    db = ds.auth("alice")
    db.put(USER, "u1", {"email": "a@x"}, if_version=0, claims={"email:a": "u1"})
    with pytest.raises(Conflict) as info:
        db.put(
            USER,
            "u1",
            {"email": "b@x", "_auth": ["alice"]},
            if_version=7,
            claims={"email:b": "u1"},
            releases=["email:a"],
        )
    assert info.value.keys == ("user:u1",)
    assert ds.system().reservation_owners(USER, ["email:a", "email:b"]) == {"email:a": "u1"}


def test_a_claim_already_held_by_the_same_object(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    system = ds.system()
    system.put(USER, "u1", {"n": 1}, if_version=0, claims={"email:a": "u1"})
    again = lambda: system.put(USER, "u1", {"n": 2}, claims={"email:a": "u1"})  # noqa: E731
    if atomic(ds):
        # Claims are create-only where the store can refuse them: claim what changed.
        with pytest.raises(Conflict) as info:
            again()
        assert info.value.keys == (key("email:a"),)
        assert system.get(USER, "u1") == {"n": 1}
    else:
        again()  # best effort without compare-and-set: the same holder may claim again
        assert system.get(USER, "u1") == {"n": 2}
    assert system.reservation_owner(USER, "email:a") == "u1"


def test_delete_many_releases_with_the_objects(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    alice, bob, system = ds.auth("alice"), ds.auth("bob"), ds.system()
    alice.put_many(
        USER,
        {"u1": {}, "u2": {}},
        create=True,
        claims={"email:a": "u1", "name:a": "u1", "email:b": "u2"},
    )
    # Bob sees neither object: nothing is removed, nothing released.
    assert bob.delete_many(USER, ["u1"], releases=["email:a", "name:a"]) == 0
    assert system.reservation_owner(USER, "email:a") == "u1"
    assert alice.delete_many(USER, ["u1", "gone"], releases=["email:a", "name:a"]) == 1
    assert system.get(USER, "u1") is None
    assert system.reservation_owners(USER, ["email:a", "name:a", "email:b"]) == {"email:b": "u2"}
    # The system scope may release a stale reservation on its own (repair).
    assert system.delete_many(USER, [], releases=["email:b"]) == 0
    assert system.reservation_owner(USER, "email:b") is None
    assert system.get(USER, "u2") == {"_auth": ["alice"]}
    assert system.delete_many(USER, ["u2"], releases=["never-held"]) == 1


def test_a_user_sees_only_holders_it_can_see(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    ds.auth("alice").put(USER, "u1", {}, if_version=0, claims={"email:a": "u1"})
    assert ds.auth("alice").reservation_owner(USER, "email:a") == "u1"
    assert ds.auth("bob").reservation_owner(USER, "email:a") is None
    assert ds.system().reservation_owner(USER, "email:a") == "u1"


def test_reservations_are_not_objects(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    system = ds.system()
    system.put_many(USER, {"u1": {}, "u2": {}}, create=True, claims={"a": "u1", "b": "u2"})
    listed = [object_id for batch in system.scan(USER) for object_id in batch]
    assert sorted(listed) == ["u1", "u2"]
    assert system.get_many(USER, ["a", "b"]) == {}


def test_round_trips_with_reservations(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    db = ds.auth("alice")
    cloudflare = is_cloudflare_kv(ds)
    read_first = 0 if atomic(ds) else 1  # the claims, read before writing without CAS
    delete_after = 1 if cloudflare else 0  # Cloudflare KV: the releases are a second request
    assert trips(ds, lambda: db.put(USER, "u0", {}, if_version=0)) == 1
    assert trips(ds, lambda: db.put(USER, "u1", {}, if_version=0, claims={"a": "u1"})) == (
        1 + read_first
    )
    assert trips(ds, lambda: db.put(USER, "u2", {}, claims={"b": "u2"})) == 2 + read_first
    assert (
        trips(
            ds,
            lambda: db.put_many(
                USER, {f"m{i}": {} for i in range(20)}, create=True, claims={"c": "m3", "d": "m4"}
            ),
        )
        == 1 + read_first
    )
    version = db.read(USER, "u1").version  # type: ignore[union-attr]
    move = lambda: db.put(  # noqa: E731
        USER, "u1", {"_auth": ["alice"]}, if_version=version, claims={"e": "u1"}, releases=["a"]
    )
    assert trips(ds, move) == 1 + read_first + delete_after
    version = db.read(USER, "u1").version  # type: ignore[union-attr]
    release_only = lambda: db.put(  # noqa: E731
        USER, "u1", {"_auth": ["alice"]}, if_version=version, releases=["e"]
    )
    assert trips(ds, release_only) == 1 + delete_after
    taken = lambda: db.put(USER, "u9", {}, if_version=0, claims={"b": "u9"})  # noqa: E731
    with ds.round_trips.track() as delta, pytest.raises(Conflict):
        taken()
    # Refused by the store in its one write (the SQL adapter reads once more to name the key),
    # or by the read before any write on Cloudflare KV.
    assert delta.count == (2 if ds.kv is None else 1)
    assert trips(ds, lambda: db.delete_many(USER, ["u2"], releases=["b"])) == 2
    assert trips(ds, lambda: ds.system().delete_many(USER, ["m3"], releases=["c"])) == 2
    assert trips(ds, lambda: db.reservation_owner(USER, "d")) == 2  # holder, then visibility
    assert trips(ds, lambda: db.reservation_owner(USER, "free")) == 1
    assert trips(ds, lambda: ds.system().reservation_owner(USER, "d")) == 1


def test_bad_claims_and_releases_send_nothing(facade: tuple[Datastore, Backend]) -> None:
    ds, _ = facade
    db = ds.auth("alice")
    db.put(USER, "keep", {}, if_version=0, claims={"k": "keep"})
    bad_calls: list[tuple[type[Exception], Callable[[], object]]] = [
        (InvalidValue, lambda: db.put(USER, "u1", {}, claims={"a": "other"})),
        (InvalidValue, lambda: db.put(USER, "u1", {}, claims={"a": "u1"}, releases=["a"])),
        (InvalidValue, lambda: db.put(USER, "u1", {}, claims={"a": "u1"}, ttl=120)),
        (InvalidValue, lambda: db.put(USER, "u1", {}, releases="a")),
        (InvalidValue, lambda: db.put(USER, "u1", {}, claims=[("a", "u1")])),  # type: ignore[arg-type]
        (InvalidValue, lambda: db.put_many(USER, {}, releases=["k"])),
        (InvalidKey, lambda: db.put(USER, "u1", {}, claims={"": "u1"})),
        (InvalidKey, lambda: db.put(USER, "u1", {}, claims={"a b": "u1"})),
        (InvalidKey, lambda: db.put(USER, "u1", {}, releases=["ok", "tab\there"])),
        (TooLarge, lambda: db.put(USER, "u1", {}, claims={"n" * 600: "u1"})),
        (InvalidKey, lambda: db.delete_many(USER, ["keep"], releases=[""])),
        (InvalidValue, lambda: db.delete_many(USER, ["keep"], releases="k")),
        (InvalidKey, lambda: db.reservation_owner(USER, "a b")),
        (InvalidKey, lambda: db.reservation_owner("1USER", "a")),
    ]
    before = ds.round_trips.value
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert ds.round_trips.value == before
    system = ds.system()
    assert system.get_many(USER, ["u1", "keep"]) == {"keep": {"_auth": ["alice"]}}
    assert system.reservation_owners(USER, ["a", "k"]) == {"k": "keep"}


def test_objects_and_reservations_must_fit_one_batch() -> None:
    kv = MemoryKVStore(limits=KVLimits(max_batch_write=4))
    system = Datastore(kv).system()
    objects: dict[str, dict[str, Any]] = {f"u{i}": {} for i in range(3)}
    with pytest.raises(TooLarge, match="one batch of 4"):
        system.put_many(USER, objects, create=True, claims={"a": "u0", "b": "u1"})
    with pytest.raises(TooLarge):
        system.delete_many(USER, ["u0", "u1", "u2"], releases=["a", "b"])
    assert kv.get_many(NS, ["user:u0", key("a")]) == {}
    system.put_many(USER, objects, create=True, claims={"a": "u0"})  # 4 writes: one batch
    system.put_many(USER, {f"x{i}": {} for i in range(9)}, create=True)  # chunked, as before
    assert json.loads(kv.get(NS, key("a")) or b"null") == "u0"
