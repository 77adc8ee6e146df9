"""A store built with ``clock=`` keeps every expiry on that clock, whatever the wall clock says."""

from __future__ import annotations

from typing import Any

import pytest

from datastore.backends.memory import MemoryKVStore
from datastore.backends.sqlite import SQLiteKVStore
from tests.support import REDIS_URL, FakeClock, flush_test_redis, redis_or_skip

NS = "TESTNS"


def build(name: str, clock: FakeClock, tmp_path: Any) -> Any:
    if name == "memory":
        return MemoryKVStore(clock=clock)
    if name == "sqlite":
        return SQLiteKVStore(tmp_path / "kv.sqlite3", clock=clock)
    from datastore.backends.redis import RedisKVStore

    redis_or_skip()
    flush_test_redis()
    return RedisKVStore(REDIS_URL, key_prefix="nimbus-test:", clock=clock)


@pytest.mark.parametrize("name", ["memory", "sqlite"])
def test_set_metadata_keeps_the_expiry_on_the_store_clock(name: str, tmp_path) -> None:
    clock = FakeClock()
    store = build(name, clock, tmp_path)
    store.put(NS, "k", b"v", ttl=120)
    assert store.set_metadata(NS, "k", {"a": 1}) is True
    clock.advance(60)
    assert store.get(NS, "k") == b"v"
    assert store.get_metadata(NS, "k") == {"a": 1}
    clock.advance(61)
    assert store.get(NS, "k") is None
    store.close()


def test_set_metadata_on_redis_keeps_the_time_left(tmp_path) -> None:
    # Redis keeps the expiry itself; the store's clock only places it in time.
    clock = FakeClock()
    store = build("redis", clock, tmp_path)
    store.put(NS, "k", b"v", ttl=120)
    assert store.set_metadata(NS, "k", {"a": 1}) is True
    entry = store.get_entry(NS, "k")
    assert entry is not None and entry.expires_at == pytest.approx(clock() + 120, abs=2)
    store.close()


def test_an_expiry_written_in_a_redis_transaction_reads_back_on_the_store_clock(tmp_path) -> None:
    clock = FakeClock()
    store = build("redis", clock, tmp_path)
    with store.transaction():
        store.put(NS, "k", b"v", ttl=120)
        entry = store.get_entry(NS, "k")
        assert entry is not None and entry.expires_at == pytest.approx(clock() + 120, abs=2)
        store.incr(NS, "n", ttl=120)
        counter = store.get_entry(NS, "n")
        assert counter is not None and counter.expires_at == pytest.approx(clock() + 120, abs=2)
    store.close()
