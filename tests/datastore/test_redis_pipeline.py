"""Redis ``start_put``: the write is sent at once and its reply read later (pipelining)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from datastore import Conflict, PutItem, Unavailable
from datastore.backends.redis import RedisKVStore
from tests.support import REDIS_URL, flush_test_redis, free_port, redis_or_skip

NS = "PIPELINE"


@pytest.fixture
def kv() -> Iterator[RedisKVStore]:
    redis_or_skip()
    flush_test_redis()
    store = RedisKVStore(REDIS_URL, key_prefix="nimbus-test:")
    yield store
    store.close()


def in_use(kv: RedisKVStore) -> int:
    return len(kv._client.connection_pool._in_use_connections)


def test_the_store_serves_other_calls_while_a_write_is_in_flight(kv: RedisKVStore) -> None:
    kv.put(NS, "k", b"v1")
    with kv.round_trips.track() as delta:
        pending = kv.start_put(NS, "k", b"v2", if_version=1)
        assert in_use(kv) == 1  # held until its reply is read
        kv.put(NS, "other", b"x")
        batch = kv.start_put_many(NS, [PutItem("a", b"1"), PutItem("b", b"2")])
        assert in_use(kv) == 2
        assert batch.result() == [1, 1] and pending.result() == 2
    assert delta.count == 3
    assert in_use(kv) == 0
    assert kv.get_many(NS, ["k", "a", "b"]) == {"k": b"v2", "a": b"1", "b": b"2"}


def test_a_conflict_gives_the_connection_back(kv: RedisKVStore) -> None:
    kv.put(NS, "k", b"v1")
    pending = kv.start_put(NS, "k", b"stale", if_version=0)
    with pytest.raises(Conflict):
        pending.result()
    assert in_use(kv) == 0
    assert kv.put(NS, "k", b"v2", if_version=1) == 2


def test_a_server_without_the_script_gets_it_loaded(kv: RedisKVStore) -> None:
    kv.put(NS, "k", b"v1")  # the script is loaded
    kv._client.script_flush()  # as after a restart
    with kv.round_trips.track() as delta:
        assert kv.start_put(NS, "k", b"v2", if_version=1).result() == 2
    assert delta.count == 2  # the refused call, then the one that loads it
    assert kv.get(NS, "k") == b"v2" and in_use(kv) == 0


def test_an_unreachable_server_is_a_clear_error(kv: RedisKVStore) -> None:
    down = RedisKVStore(f"redis://127.0.0.1:{free_port()}/0", retries=0, socket_timeout=1)
    pending = down.start_put(NS, "k", b"v")
    with pytest.raises(Unavailable, match="unavailable"):
        pending.result()
    down.close()
