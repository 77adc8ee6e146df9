"""The KV conformance suite: the definition of a working KVStore, run on every backend."""

from __future__ import annotations

import threading
import time

import pytest

from datastore import (
    Conflict,
    InvalidKey,
    InvalidValue,
    KVStore,
    NotSupported,
    PutItem,
    TooLarge,
)
from tests.support import Backend

NS = "TESTNS"


def snapshot(store: KVStore) -> dict[str, dict[str, bytes]]:
    """Every live key and value in every namespace."""
    result: dict[str, dict[str, bytes]] = {}
    for namespace in store.namespaces():
        keys: list[str] = []
        cursor = None
        while True:
            page = store.list(namespace, cursor=cursor, limit=1000)
            keys.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                break
        result[namespace] = store.get_many(namespace, keys) if keys else {}
    return result


def list_all(store: KVStore, namespace: str, prefix: str = "", limit: int = 1000) -> list[str]:
    keys: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = store.list(namespace, prefix, cursor=cursor, limit=limit)
        assert len(page.keys) <= limit
        keys.extend(page.keys)
        cursor = page.cursor
        if cursor is None:
            return keys
    raise AssertionError("list never finished")


def requires_cas(kv: KVStore) -> None:
    if not kv.supports_cas:
        pytest.skip(f"{kv.backend_name} has no compare-and-set (supports_cas=False)")


def short_ttl(kv: KVStore) -> float:
    """A TTL that expires within the test, where the backend allows one."""
    if kv.limits.min_ttl_seconds > 1:
        pytest.skip(f"{kv.backend_name} TTLs are at least {kv.limits.min_ttl_seconds}s")
    return 1


def test_is_a_kvstore(kv: KVStore) -> None:
    assert isinstance(kv, KVStore)
    assert isinstance(kv.supports_cas, bool)
    assert isinstance(kv.supports_transactions, bool)
    assert kv.supports_ttl is True


def test_put_then_get_returns_the_bytes(kv: KVStore) -> None:
    kv.put(NS, "greeting", b"hello \x00 world")
    assert kv.get(NS, "greeting") == b"hello \x00 world"


def test_str_values_are_stored_as_utf8(kv: KVStore) -> None:
    kv.put(NS, "unicode:ключ", "żółw 🐢")
    assert kv.get(NS, "unicode:ключ") == "żółw 🐢".encode()


def test_get_missing_is_none(kv: KVStore) -> None:
    assert kv.get(NS, "missing") is None
    assert kv.get_entry(NS, "missing") is None
    assert kv.get_metadata(NS, "missing") is None
    assert kv.exists(NS, "missing") is False


def test_versions_count_writes(kv: KVStore) -> None:
    requires_cas(kv)
    assert kv.put(NS, "k", b"1") == 1
    assert kv.put(NS, "k", b"2") == 2
    assert kv.put(NS, "k", b"3") == 3
    entry = kv.get_entry(NS, "k")
    assert entry is not None
    assert (entry.value, entry.version) == (b"3", 3)


def test_delete_resets_the_version(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "k", b"1")
    kv.put(NS, "k", b"2")
    assert kv.delete(NS, "k") is True
    assert kv.delete(NS, "k") is False
    assert kv.put(NS, "k", b"again") == 1


def test_if_version_zero_creates_only(kv: KVStore) -> None:
    requires_cas(kv)
    assert kv.put(NS, "k", b"first", if_version=0) == 1
    with pytest.raises(Conflict) as info:
        kv.put(NS, "k", b"second", if_version=0)
    assert info.value.keys == ("k",)
    assert kv.get(NS, "k") == b"first"


def test_if_version_matches_or_conflicts(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "k", b"v1")
    assert kv.put(NS, "k", b"v2", if_version=1) == 2
    with pytest.raises(Conflict):
        kv.put(NS, "k", b"stale", if_version=1)
    with pytest.raises(Conflict):
        kv.put(NS, "missing", b"x", if_version=3)
    assert kv.get(NS, "k") == b"v2"
    assert kv.get(NS, "missing") is None


def test_metadata_is_stored_and_replaced_by_put(kv: KVStore) -> None:
    kv.put(NS, "k", b"v", metadata={"owner": "u1", "n": 2})
    assert kv.get_metadata(NS, "k") == {"owner": "u1", "n": 2}
    entry = kv.get_entry(NS, "k")
    assert entry is not None and entry.metadata == {"owner": "u1", "n": 2}
    kv.put(NS, "k", b"v2")
    assert kv.get_metadata(NS, "k") is None


def test_get_many_returns_only_existing(kv: KVStore) -> None:
    kv.put(NS, "a", b"1")
    kv.put(NS, "b", b"2")
    assert kv.get_many(NS, ["a", "b", "zzz"]) == {"a": b"1", "b": b"2"}
    assert kv.get_many(NS, []) == {}
    entries = kv.get_entries(NS, ["a", "zzz"])
    assert list(entries) == ["a"] and entries["a"].value == b"1"
    assert entries["a"].version == (1 if kv.supports_cas else 0)


def test_put_many_writes_all_and_returns_versions(kv: KVStore) -> None:
    kv.put(NS, "b", b"old")
    versions = kv.put_many(
        NS,
        [PutItem("a", b"1"), PutItem("b", b"2", metadata={"m": 1}), PutItem("c", "3")],
    )
    assert versions == ([1, 2, 1] if kv.supports_cas else [0, 0, 0])
    assert kv.get_many(NS, ["a", "b", "c"]) == {"a": b"1", "b": b"2", "c": b"3"}
    assert kv.get_metadata(NS, "b") == {"m": 1}


def test_put_many_is_all_or_nothing_on_conflict(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "taken", b"original")
    with pytest.raises(Conflict) as info:
        kv.put_many(
            NS,
            [PutItem("fresh", b"x", if_version=0), PutItem("taken", b"y", if_version=0)],
        )
    assert info.value.keys == ("taken",)
    assert kv.get(NS, "fresh") is None
    assert kv.get(NS, "taken") == b"original"


def test_start_put_answers_like_put(kv: KVStore) -> None:
    pending = kv.start_put(NS, "k", b"v1", metadata={"m": 1})
    assert pending.result() == (1 if kv.supports_cas else 0)
    assert kv.get(NS, "k") == b"v1" and kv.get_metadata(NS, "k") == {"m": 1}
    versions = kv.start_put_many(NS, [PutItem("k", b"v2"), PutItem("j", b"w")]).result()
    assert versions == ([2, 1] if kv.supports_cas else [0, 0])
    assert kv.start_put_many(NS, []).result() == []
    assert kv.get_many(NS, ["k", "j"]) == {"k": b"v2", "j": b"w"}


def test_start_put_conflicts_when_its_answer_is_read(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "taken", b"original")
    pending = kv.start_put(NS, "taken", b"stale", if_version=0)
    batch = kv.start_put_many(
        NS, [PutItem("fresh", b"x", if_version=0), PutItem("taken", b"y", if_version=0)]
    )
    for failed in (pending, batch):
        with pytest.raises(Conflict) as info:
            failed.result()
        assert info.value.keys == ("taken",)
    assert kv.get(NS, "taken") == b"original" and kv.get(NS, "fresh") is None


def test_start_put_checks_its_arguments_before_sending(kv: KVStore) -> None:
    before = kv.round_trips.value
    with pytest.raises(InvalidKey):
        kv.start_put(NS, "", b"v")
    with pytest.raises(InvalidValue, match="more than once"):
        kv.start_put_many(NS, [PutItem("a", b"1"), PutItem("a", b"2")])
    assert kv.round_trips.value == before
    assert kv.get(NS, "a") is None


def test_put_many_refuses_repeated_keys(kv: KVStore) -> None:
    with pytest.raises(InvalidValue, match="more than once"):
        kv.put_many(NS, [PutItem("a", b"1"), PutItem("a", b"2")])
    assert kv.get(NS, "a") is None


def test_delete_many_counts_existing(kv: KVStore) -> None:
    kv.put_many(NS, [PutItem(k, b"v") for k in ("a", "b", "c")])
    assert kv.delete_many(NS, ["a", "b", "nope"]) == 2
    assert kv.get_many(NS, ["a", "b", "c"]) == {"c": b"v"}
    assert kv.delete_many(NS, []) == 0


def test_namespaces_are_isolated(kv: KVStore) -> None:
    kv.put("NS_ONE", "same", b"one")
    kv.put("NS_TWO", "same", b"two")
    assert kv.get("NS_ONE", "same") == b"one"
    assert kv.get("NS_TWO", "same") == b"two"
    kv.delete("NS_ONE", "same")
    assert kv.get("NS_TWO", "same") == b"two"
    assert {"NS_ONE", "NS_TWO"} <= set(kv.namespaces())
    assert list_all(kv, "NS_TWO") == ["same"]


def test_list_pages_through_every_key_once(kv_backend: Backend) -> None:
    kv = kv_backend.store
    keys = [f"item:{i:03d}" for i in range(57)]
    kv.put_many(NS, [PutItem(k, b"v") for k in keys])
    kv.put(NS, "other:1", b"v")
    listed = list_all(kv, NS, "item:", limit=10)
    assert sorted(listed) == keys
    assert len(listed) == len(set(listed))
    if kv_backend.ordered_list:
        assert listed == keys
    assert sorted(list_all(kv, NS)) == sorted([*keys, "other:1"])
    assert list_all(kv, NS, "nothing-here") == []
    assert list_all(kv, "EMPTY_NS") == []


def drain(kv: KVStore, limit: int) -> list[str]:
    """List page by page, deleting each page before asking for the next (as ``clear`` does)."""
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = kv.list(NS, cursor=cursor, limit=limit)
        assert len(page.keys) <= limit
        seen.extend(page.keys)
        if page.keys:
            kv.delete_many(NS, page.keys)
        cursor = page.cursor
        if cursor is None:
            return seen
    raise AssertionError("list never finished")


@pytest.mark.parametrize(("count", "limit"), [(2500, 100), (60, 1)])
def test_deleting_each_page_while_listing_visits_every_key(
    kv: KVStore, count: int, limit: int
) -> None:
    """Keys present for the whole listing must all be seen, even as pages are deleted."""
    keys = [f"key-{number:05d}" for number in range(count)]
    kv.put_many(NS, [PutItem(key, b"v") for key in keys])
    assert sorted(drain(kv, max(limit, kv.limits.min_list_limit))) == keys
    assert list_all(kv, NS) == []


def test_list_prefix_with_glob_characters_is_literal(kv: KVStore) -> None:
    kv.put(NS, "a*b", b"1")
    kv.put(NS, "axb", b"2")
    kv.put(NS, "a?[c]", b"3")
    assert list_all(kv, NS, "a*") == ["a*b"]
    assert list_all(kv, NS, "a?[") == ["a?[c]"]


def test_list_rejects_bad_cursor_and_limit(kv: KVStore) -> None:
    with pytest.raises(InvalidValue):
        kv.list(NS, cursor="!!not-a-cursor!!")
    with pytest.raises(InvalidValue):
        kv.list(NS, limit=0)
    with pytest.raises(InvalidValue):
        kv.list(NS, limit=kv.limits.min_list_limit - 1 or -1)
    with pytest.raises(InvalidValue):
        kv.list(NS, limit=kv.limits.max_list_limit + 1)


def test_ttl_sets_an_expiry(kv: KVStore) -> None:
    ttl = max(60, kv.limits.min_ttl_seconds)
    clock = getattr(kv, "clock", time.time)
    before = clock()
    kv.put(NS, "k", b"v", ttl=ttl, metadata={"m": 1})
    entry = kv.get_entry(NS, "k")
    assert entry is not None and entry.expires_at is not None
    assert before + ttl - 5 <= entry.expires_at <= clock() + ttl + 5
    assert kv.get_entries(NS, ["k"])["k"].expires_at == pytest.approx(entry.expires_at, abs=2)


def test_ttl_below_the_minimum_is_refused(kv: KVStore) -> None:
    with pytest.raises(InvalidValue, match="minimum"):
        kv.put(NS, "k", b"v", ttl=kv.limits.min_ttl_seconds / 2)
    assert kv.get(NS, "k") is None


def test_ttl_expires_keys(kv_backend: Backend) -> None:
    kv = kv_backend.store
    kv.put(NS, "short", b"v", ttl=short_ttl(kv))
    kv.put(NS, "forever", b"v")
    entry = kv.get_entry(NS, "short")
    assert entry is not None and entry.expires_at is not None
    assert kv.exists(NS, "short")
    kv_backend.advance(1.2)
    assert kv.get(NS, "short") is None
    assert kv.exists(NS, "short") is False
    assert kv.get_many(NS, ["short", "forever"]) == {"forever": b"v"}
    assert list_all(kv, NS) == ["forever"]
    if kv.supports_cas:
        assert kv.put(NS, "short", b"new", if_version=0) == 1


def test_put_without_ttl_clears_a_previous_ttl(kv_backend: Backend) -> None:
    kv = kv_backend.store
    kv.put(NS, "k", b"v", ttl=short_ttl(kv))
    kv.put(NS, "k", b"v2")
    kv_backend.advance(1.2)
    assert kv.get(NS, "k") == b"v2"


def test_status_reports_health_and_namespaces(kv: KVStore) -> None:
    kv.put("NS_STATUS", "k", b"v")
    status = kv.status()
    assert status.healthy is True
    assert status.backend == kv.backend_name
    assert "NS_STATUS" in status.namespaces


# Calls that cost more than one request on a backend, and why.
EXTRA_ROUND_TRIPS = {
    "cloudflare": {
        "get_entry": 2,  # value, then metadata (the single-key read does not return both)
        "delete": 2,  # existence check, then delete (to report what existed)
        "delete_many": 2,
        "namespaces": 0,  # the configured mapping; no request
    },
    "gateway": {"namespaces": 0},  # the configured bindings; no request
}


def test_round_trips_per_call(kv: KVStore) -> None:
    kv.put(NS, "a", b"1")
    calls = {
        "get": lambda: kv.get(NS, "a"),
        "get_entry": lambda: kv.get_entry(NS, "a"),
        "get_many": lambda: kv.get_many(NS, ["a", "b", "c"]),
        "get_entries": lambda: kv.get_entries(NS, ["a", "b"]),
        "exists": lambda: kv.exists(NS, "a"),
        "put": lambda: kv.put(NS, "a", b"2"),
        "put_many": lambda: kv.put_many(NS, [PutItem(f"k{i}", b"v") for i in range(100)]),
        "delete_many": lambda: kv.delete_many(NS, [f"k{i}" for i in range(100)]),
        "delete": lambda: kv.delete(NS, "a"),
        "get_metadata": lambda: kv.get_metadata(NS, "a"),
        "namespaces": lambda: kv.namespaces(),
        "list": lambda: kv.list(NS, limit=10),
    }
    if kv.supports_cas:
        calls["put_if_version"] = lambda: kv.put(NS, "b", b"3", if_version=0)
    expected = EXTRA_ROUND_TRIPS.get(kv.backend_name, {})
    for name, call in calls.items():
        with kv.round_trips.track() as delta:
            call()
        assert (name, delta.count) == (name, expected.get(name, 1))


def test_invalid_input_is_refused_before_any_write(kv: KVStore) -> None:
    kv.put(NS, "existing", b"keep me", metadata={"a": 1})
    before = snapshot(kv)
    bad_calls = [
        (InvalidKey, lambda: kv.put(NS, "", b"v")),
        (InvalidKey, lambda: kv.put(NS, ".", b"v")),
        (InvalidKey, lambda: kv.put(NS, "..", b"v")),
        (InvalidKey, lambda: kv.put(NS, "line\nbreak", b"v")),
        (TooLarge, lambda: kv.put(NS, "k" * 513, b"v")),
        (TooLarge, lambda: kv.put(NS, "é" * 257, b"v")),  # 514 bytes in UTF-8
        (TooLarge, lambda: kv.put(NS, "existing", b"x" * (kv.limits.max_value_bytes + 1))),
        (TooLarge, lambda: kv.put(NS, "existing", b"v", metadata={"m": "x" * 1100})),
        (InvalidValue, lambda: kv.put(NS, "existing", b"v", metadata={"bad": {1, 2}})),
        (InvalidValue, lambda: kv.put(NS, "existing", b"v", metadata=["not", "dict"])),  # type: ignore[arg-type]
        (InvalidValue, lambda: kv.put(NS, "existing", 12345)),  # type: ignore[arg-type]
        (InvalidValue, lambda: kv.put(NS, "existing", b"v", ttl=-5)),
        (InvalidValue, lambda: kv.put(NS, "existing", b"v", ttl=float("nan"))),
        (InvalidValue, lambda: kv.put(NS, "existing", b"v", ttl="60")),  # type: ignore[arg-type]
        (InvalidKey, lambda: kv.put("bad/ns", "k", b"v")),
        (InvalidKey, lambda: kv.put("bad:ns", "k", b"v")),
        (InvalidKey, lambda: kv.put("bad*ns", "k", b"v")),
        (InvalidKey, lambda: kv.put("", "k", b"v")),
        (
            TooLarge,
            lambda: kv.put_many(
                NS,
                [PutItem("ok", b"v"), PutItem("existing", b"x" * (kv.limits.max_value_bytes + 1))],
            ),
        ),
        (
            TooLarge,
            lambda: kv.put_many(
                NS, [PutItem(f"k{i}", b"v") for i in range(kv.limits.max_batch_write + 1)]
            ),
        ),
        (InvalidValue, lambda: kv.get_many(NS, "existing")),
        (InvalidKey, lambda: kv.delete_many(NS, ["existing", ""])),
    ]
    if kv.supports_cas:
        bad_calls.append((InvalidValue, lambda: kv.put(NS, "existing", b"v", if_version=-1)))
    else:
        bad_calls.append((NotSupported, lambda: kv.put(NS, "existing", b"v", if_version=1)))
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert snapshot(kv) == before
    assert kv.get_metadata(NS, "existing") == {"a": 1}
    assert kv.get_entry(NS, "existing").version == (1 if kv.supports_cas else 0)  # type: ignore[union-attr]


def test_concurrent_compare_and_set_loses_no_update(kv: KVStore) -> None:
    requires_cas(kv)
    kv.put(NS, "counter", b"0")
    threads, increments = 6, 20
    conflicts = []

    def work() -> None:
        done = 0
        while done < increments:
            entry = kv.get_entry(NS, "counter")
            assert entry is not None
            try:
                kv.put(NS, "counter", str(int(entry.value) + 1), if_version=entry.version)
            except Conflict:
                conflicts.append(1)
                continue
            done += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert kv.get(NS, "counter") == str(threads * increments).encode()
    assert kv.get_entry(NS, "counter").version == threads * increments + 1  # type: ignore[union-attr]
