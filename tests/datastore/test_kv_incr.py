"""``incr``: an integer counter on every KV backend, atomic where the backend has CAS."""

from __future__ import annotations

import threading

import pytest

from datastore import InvalidValue, KVStore
from tests.support import Backend

NS = "TESTNS"


def test_incr_counts_from_zero(kv: KVStore) -> None:
    assert kv.incr(NS, "hits") == 1
    assert kv.incr(NS, "hits", 5) == 6
    assert kv.incr(NS, "hits", -2) == 4
    assert kv.get(NS, "hits") == b"4"


def test_incr_refuses_non_integers(kv: KVStore) -> None:
    kv.put(NS, "text", b"hello")
    with pytest.raises(InvalidValue, match="does not hold an integer"):
        kv.incr(NS, "text")
    with pytest.raises(InvalidValue):
        kv.incr(NS, "hits", 1.5)  # type: ignore[arg-type]
    assert kv.get(NS, "text") == b"hello"


def test_ttl_is_set_by_the_first_increment(kv_backend: Backend) -> None:
    kv = kv_backend.store
    ttl = max(1, kv.limits.min_ttl_seconds)
    kv.incr(NS, "window", ttl=ttl)
    first = kv.get_entry(NS, "window")
    assert first is not None and first.expires_at is not None
    kv.incr(NS, "window", ttl=ttl * 10)
    second = kv.get_entry(NS, "window")
    assert second is not None and second.expires_at == pytest.approx(first.expires_at, abs=1.5)
    if ttl <= 1:
        kv_backend.advance(1.2)
        assert kv.incr(NS, "window", ttl=ttl) == 1  # a new window


def test_incr_is_one_round_trip_where_atomic(kv: KVStore) -> None:
    if not kv.supports_atomic_incr:
        pytest.skip(f"{kv.backend_name} increments by read then write (documented)")
    with kv.round_trips.track() as delta:
        kv.incr(NS, "hits")
    assert delta.count == 1


def test_concurrent_increments_are_all_counted(kv: KVStore) -> None:
    if not kv.supports_atomic_incr:
        pytest.skip(f"{kv.backend_name} has no atomic increment: concurrent ones can be lost")
    threads, per_thread = 8, 25

    def work() -> None:
        for _ in range(per_thread):
            kv.incr(NS, "shared")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert kv.get(NS, "shared") == str(threads * per_thread).encode()


def test_incr_over_the_rest_api_is_one_read_and_one_write(kv: KVStore) -> None:
    if kv.backend_name != "cloudflare":
        pytest.skip("the REST API's read-then-write increment")
    for expected in (1, 2):
        with kv.round_trips.track() as delta:
            assert kv.incr(NS, "hits", ttl=120) == expected
        assert delta.count == 2  # value and expiry in one bulk read, then the write
    entry = kv.get_entry(NS, "hits")
    assert entry is not None and entry.expires_at is not None
