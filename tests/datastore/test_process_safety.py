"""Several processes sharing one store lose no compare-and-set update."""

from __future__ import annotations

import multiprocessing

import pytest

from datastore import Conflict, KVStore
from tests.support import KV_BACKENDS, make_kv

PROCESSES, INCREMENTS = 4, 25


def _increment(store: KVStore, times: int) -> None:
    done = 0
    while done < times:
        entry = store.get_entry("COUNTERS", "c")
        assert entry is not None
        try:
            store.put("COUNTERS", "c", str(int(entry.value) + 1), if_version=entry.version)
        except Conflict:
            continue
        done += 1


# Backends shared between processes; Cloudflare KV has no compare-and-set to test here.
@pytest.mark.parametrize(
    "name", [b for b in KV_BACKENDS if b not in ("memory", "cloudflare", "gateway")]
)
def test_processes_lose_no_update(name: str, tmp_path) -> None:
    backend = make_kv(name, tmp_path)
    store = backend.store
    store.put("COUNTERS", "c", b"0")
    context = multiprocessing.get_context("fork")
    # The children inherit the parent's store object: each must open its own connections.
    workers = [
        context.Process(target=_increment, args=(store, INCREMENTS)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    assert store.get("COUNTERS", "c") == str(PROCESSES * INCREMENTS).encode()
    store.close()
