"""Mixed batches: ``put_many`` with ``PutItem``s and ``DeleteItem``s, on every KV backend.

Atomic where ``supports_cas`` (memory, SQLite, Redis); on Cloudflare KV a bulk write, then a
bulk delete.
"""

from __future__ import annotations

import pytest

from datastore import Conflict, DeleteItem, InvalidKey, InvalidValue, KVStore, NotSupported, PutItem
from datastore.contract import BatchItem
from tests.datastore.test_kv_contract import requires_cas, snapshot

NS = "TESTNS"


def test_one_batch_writes_some_keys_and_deletes_others(kv: KVStore) -> None:
    kv.put_many(NS, [PutItem("old", b"o"), PutItem("kept", b"k"), PutItem("b", b"b1")])
    versions = kv.put_many(
        NS, [PutItem("a", b"1"), DeleteItem("old"), PutItem("b", b"b2"), DeleteItem("never")]
    )
    assert versions == ([1, 0, 2, 0] if kv.supports_cas else [0, 0, 0, 0])
    assert kv.get_many(NS, ["a", "old", "kept", "b", "never"]) == {
        "a": b"1",
        "kept": b"k",
        "b": b"b2",
    }


def test_a_batch_of_deletes_only(kv: KVStore) -> None:
    kv.put_many(NS, [PutItem("x", b"1"), PutItem("y", b"2")])
    assert kv.put_many(NS, [DeleteItem("x"), DeleteItem("y")]) == [0, 0]
    assert kv.get_many(NS, ["x", "y"]) == {}
    assert kv.start_put_many(NS, [DeleteItem("x")]).result() == [0]


def test_a_deleted_key_starts_again_at_version_one(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "k", b"1")
    kv.put(NS, "k", b"2")
    kv.put_many(NS, [DeleteItem("k", if_version=2)])
    assert kv.put_many(NS, [PutItem("k", b"again", if_version=0)]) == [1]


def test_a_stale_delete_refuses_the_whole_batch(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put_many(NS, [PutItem("reserved", b"alice"), PutItem("obj", b"v1")])
    before = snapshot(kv)
    with pytest.raises(Conflict) as info:
        kv.put_many(
            NS,
            [PutItem("obj", b"v2", if_version=1), PutItem("new", b"n"), DeleteItem("reserved", 7)],
        )
    assert info.value.keys == ("reserved",)
    assert snapshot(kv) == before


def test_a_conflict_names_every_failing_key_of_puts_and_deletes(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put_many(NS, [PutItem("taken", b"x"), PutItem("gone", b"y")])
    before = snapshot(kv)
    batch: list[BatchItem] = [
        PutItem("taken", b"mine", if_version=0),
        PutItem("fresh", b"f", if_version=0),
        DeleteItem("gone", if_version=3),
        DeleteItem("missing", if_version=1),
        DeleteItem("absent", if_version=0),  # 0: must not exist, and it does not
    ]
    for attempt in (lambda: kv.put_many(NS, batch), lambda: kv.start_put_many(NS, batch).result()):
        with pytest.raises(Conflict) as info:
            attempt()
        assert set(info.value.keys) == {"taken", "gone", "missing"}
        assert snapshot(kv) == before


def test_a_delete_on_the_expected_version_deletes(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "k", b"1")
    assert kv.put_many(NS, [DeleteItem("k", if_version=1), PutItem("j", b"j")]) == [0, 1]
    assert kv.get_many(NS, ["k", "j"]) == {"j": b"j"}


def test_create_only_claim_and_move_in_one_batch(kv: KVStore) -> None:
    """The pattern reservations use: claim new create-only, release old, update the object."""
    requires_cas(kv)
    kv.put_many(NS, [PutItem("user:1", b"v1"), PutItem("_unique:user:a", b'"1"')])
    versions = kv.put_many(
        NS,
        [
            PutItem("user:1", b"v2", if_version=1),
            PutItem("_unique:user:b", b'"1"', if_version=0),
            DeleteItem("_unique:user:a"),
        ],
    )
    assert versions == [2, 1, 0]
    assert kv.get_many(NS, ["user:1", "_unique:user:a", "_unique:user:b"]) == {
        "user:1": b"v2",
        "_unique:user:b": b'"1"',
    }
    before = snapshot(kv)
    with pytest.raises(Conflict) as info:  # another object claims b: refused, nothing written
        kv.put_many(
            NS,
            [
                PutItem("user:2", b"w", if_version=0),
                PutItem("_unique:user:b", b'"2"', if_version=0),
            ],
        )
    assert info.value.keys == ("_unique:user:b",)
    assert snapshot(kv) == before


def test_bad_batches_are_refused_before_anything_is_sent(kv: KVStore) -> None:
    kv.put(NS, "k", b"v")
    before, trips = snapshot(kv), kv.round_trips.value
    bad_calls: list[tuple[type[Exception], list]] = [
        (InvalidValue, [PutItem("k", b"1"), DeleteItem("k")]),
        (InvalidValue, [DeleteItem("k"), DeleteItem("k")]),
        (InvalidValue, [PutItem("a", b"1"), ("b", b"2")]),
        (InvalidKey, [PutItem("a", b"1"), DeleteItem("")]),
        (InvalidValue, [DeleteItem("k"), *[PutItem(f"n{i}", b"") for i in range(10_000)]]),
    ]
    if kv.supports_cas:
        bad_calls.append((InvalidValue, [DeleteItem("k", if_version=-1)]))
    else:
        bad_calls.append((NotSupported, [PutItem("a", b"1"), DeleteItem("k", if_version=1)]))
    for error, items in bad_calls:
        for call in (kv.put_many, kv.start_put_many):
            with pytest.raises(error):
                call(NS, items)
    assert kv.round_trips.value == trips
    assert snapshot(kv) == before


def test_round_trips_of_a_mixed_batch(kv: KVStore) -> None:
    kv.put_many(NS, [PutItem(f"k{i}", b"v") for i in range(10)])
    mixed: list[BatchItem] = [PutItem("n1", b"1"), PutItem("n2", b"2")]
    mixed += [DeleteItem("k1"), DeleteItem("k2")]
    # Cloudflare KV: one bulk write, then one bulk delete. Elsewhere: one atomic call.
    expected = 2 if kv.backend_name == "cloudflare" else 1
    for call in (
        lambda: kv.put_many(NS, mixed),
        lambda: kv.start_put_many(NS, mixed).result(),
        lambda: kv.put_many(NS, [PutItem("single", b"1"), DeleteItem("k3")]),
    ):
        with kv.round_trips.track() as delta:
            call()
        assert delta.count == expected
    for call in (
        lambda: kv.put_many(NS, [DeleteItem("k4"), DeleteItem("k5")]),
        lambda: kv.put_many(NS, [DeleteItem("k6")]),
    ):
        with kv.round_trips.track() as delta:
            call()
        assert delta.count == 1


def test_a_mixed_batch_inside_a_transaction(kv: KVStore) -> None:
    if not kv.supports_transactions:
        pytest.skip(f"{kv.backend_name} has no transactions (supports_transactions=False)")
    kv.put_many(NS, [PutItem("a", b"1"), PutItem("b", b"2")])
    with kv.transaction():
        assert kv.put_many(NS, [PutItem("c", b"3"), DeleteItem("a", if_version=1)]) == [1, 0]
        assert kv.get(NS, "a") is None
    assert kv.get_many(NS, ["a", "b", "c"]) == {"b": b"2", "c": b"3"}
    before = snapshot(kv)
    with pytest.raises(RuntimeError), kv.transaction():
        kv.put_many(NS, [PutItem("d", b"4"), DeleteItem("b")])
        raise RuntimeError("roll back")
    assert snapshot(kv) == before
