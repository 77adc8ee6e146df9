"""``with store.transaction():`` on every KV backend: all or nothing where supported, a clear
refusal where not (Cloudflare KV)."""

from __future__ import annotations

import threading

import pytest

from datastore import Conflict, KVStore, NotSupported, PutItem

NS = "TESTNS"


def needs_transactions(kv: KVStore) -> None:
    if not kv.supports_transactions:
        pytest.skip(f"{kv.backend_name} has no transactions (supports_transactions=False)")


def test_stores_without_transactions_refuse_them(kv: KVStore) -> None:
    if kv.supports_transactions:
        pytest.skip(f"{kv.backend_name} has transactions")
    with pytest.raises(NotSupported, match="no transactions"), kv.transaction():
        kv.put(NS, "k", b"v")
    assert kv.get(NS, "k") is None


def test_a_transaction_commits_every_write(kv: KVStore) -> None:
    needs_transactions(kv)
    kv.put(NS, "gone", b"x")
    with kv.transaction():
        assert kv.put(NS, "a", b"1") == 1
        kv.put_many(NS, [PutItem("b", b"2"), PutItem("c", b"3")])
        kv.delete(NS, "gone")
        assert kv.incr(NS, "n", 5) == 5
        assert kv.get(NS, "a") == b"1"  # reads see the transaction's own writes
        assert kv.get(NS, "gone") is None
        assert kv.put(NS, "a", b"1b", if_version=1) == 2
    assert kv.get_many(NS, ["a", "b", "c", "gone", "n"]) == {
        "a": b"1b",
        "b": b"2",
        "c": b"3",
        "n": b"5",
    }


def test_an_exception_rolls_everything_back(kv: KVStore) -> None:
    needs_transactions(kv)
    kv.put(NS, "keep", b"original")
    with pytest.raises(RuntimeError, match="boom"), kv.transaction():
        kv.put(NS, "keep", b"changed")
        kv.put(NS, "new", b"x")
        kv.incr(NS, "n")
        kv.delete(NS, "keep")
        raise RuntimeError("boom")
    assert kv.get(NS, "keep") == b"original"
    assert kv.get(NS, "new") is None and kv.get(NS, "n") is None
    assert kv.get_entry(NS, "keep").version == 1  # type: ignore[union-attr]


def test_a_failed_check_inside_aborts_when_it_propagates(kv: KVStore) -> None:
    needs_transactions(kv)
    kv.put(NS, "k", b"v1")
    with pytest.raises(Conflict), kv.transaction():
        kv.put(NS, "other", b"x")
        kv.put(NS, "k", b"stale", if_version=7)
    assert kv.get(NS, "other") is None and kv.get(NS, "k") == b"v1"


def test_nested_blocks_join_the_outer_transaction(kv: KVStore) -> None:
    needs_transactions(kv)
    with pytest.raises(ValueError), kv.transaction():
        with kv.transaction():
            kv.put(NS, "inner", b"x")
        kv.put(NS, "outer", b"y")
        raise ValueError
    assert kv.get_many(NS, ["inner", "outer"]) == {}


def test_concurrent_transfers_keep_the_total(kv: KVStore) -> None:
    """Move 1 between two counters 60 times from 3 threads; transactions that lose a race
    either wait (memory, SQLite) or raise Conflict and retry (Redis). The sum never changes."""
    needs_transactions(kv)
    kv.put(NS, "left", b"100")
    kv.put(NS, "right", b"100")

    def transfer() -> None:
        done = 0
        while done < 20:
            try:
                with kv.transaction():
                    left = int(kv.get(NS, "left"))  # type: ignore[arg-type]
                    right = int(kv.get(NS, "right"))  # type: ignore[arg-type]
                    kv.put(NS, "left", str(left - 1))
                    kv.put(NS, "right", str(right + 1))
            except Conflict:
                continue
            done += 1

    threads = [threading.Thread(target=transfer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert kv.get(NS, "left") == b"40" and kv.get(NS, "right") == b"160"


def test_a_rolled_back_transaction_leaves_no_namespace_behind(kv: KVStore) -> None:
    needs_transactions(kv)
    with pytest.raises(RuntimeError), kv.transaction():
        kv.put("NS_TWO", "k", b"v")
        raise RuntimeError
    assert kv.get("NS_TWO", "k") is None
    kv.put("NS_TWO", "k", b"v")
    assert "NS_TWO" in kv.namespaces()
