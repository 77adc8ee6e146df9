"""In-process backends: a complete KV store and a SQL database on SQLite ``:memory:``.

These are real backends, not mocks: they pass the same conformance suite as every other
backend and are the test double for code built on ``datastore``. Thread-safe.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..contract import (
    DEFAULT_KV_LIMITS,
    Entry,
    KeyPage,
    KVLimits,
    Names,
    RoundTripCounter,
    Status,
    Versions,
)
from ..errors import Conflict
from ..keys import validate_kv_key, validate_namespace
from ._base import BaseKVStore, check_amount, parse_counter
from ._cursor import decode_after_key, encode_after_key
from ._validation import (
    PreparedDelete,
    PreparedItem,
    PreparedPut,
    check_list_args,
    validate_keys,
)
from .sqlite import SQLiteDatabase

__all__ = ["MemoryKVStore", "MemorySQLDatabase"]


@dataclass
class _Record:
    value: bytes
    version: int
    metadata: dict[str, Any] | None
    expires_at: float | None


class _Namespace:
    def __init__(self) -> None:
        self.records: dict[str, _Record] = {}
        self.sorted_keys: list[str] = []

    def set(self, key: str, record: _Record) -> None:
        if key not in self.records:
            bisect.insort(self.sorted_keys, key)
        self.records[key] = record

    def copy(self) -> _Namespace:
        clone = _Namespace()
        clone.records = dict(self.records)
        clone.sorted_keys = list(self.sorted_keys)
        return clone

    def remove(self, key: str) -> bool:
        if self.records.pop(key, None) is None:
            return False
        index = bisect.bisect_left(self.sorted_keys, key)
        del self.sorted_keys[index]
        return True


class MemoryKVStore(BaseKVStore):
    """A KV store held in process memory. ``clock`` is injectable so TTL tests need no sleep."""

    backend_name = "memory"
    supports_cas = True
    supports_ttl = True
    supports_transactions = True

    def __init__(
        self, *, limits: KVLimits = DEFAULT_KV_LIMITS, clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.round_trips = RoundTripCounter()
        self._namespaces: dict[str, _Namespace] = {}
        self._lock = threading.RLock()
        self._in_transaction = False

    # -- helpers -------------------------------------------------------------------------

    def _live(self, namespace: str, key: str) -> _Record | None:
        space = self._namespaces.get(namespace)
        if space is None:
            return None
        record = space.records.get(key)
        if record is None:
            return None
        if record.expires_at is not None and record.expires_at <= self.clock():
            space.remove(key)
            return None
        return record

    def _check_versions(self, namespace: str, items: Sequence[PreparedItem]) -> None:
        failed = []
        for item in items:
            if item.if_version is None:
                continue
            record = self._live(namespace, item.key)
            current = record.version if record else 0
            if current != item.if_version:
                failed.append(item.key)
        if failed:
            raise Conflict(
                f"version mismatch for {', '.join(repr(k) for k in failed)}", keys=failed
            )

    def _apply(self, namespace: str, items: Sequence[PreparedItem]) -> Versions:
        self.round_trips.add()
        with self._lock:
            self._check_versions(namespace, items)
            return [self._write_or_delete(namespace, item) for item in items]

    def _write_or_delete(self, namespace: str, item: PreparedItem) -> int:
        if isinstance(item, PreparedDelete):
            space = self._namespaces.get(namespace)
            if space is not None:
                space.remove(item.key)
            return 0
        return self._write(namespace, item)

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        check_amount(amount)
        self.round_trips.add()
        with self._lock:
            record = self._live(namespace, key)
            value = parse_counter(record.value if record else None, key) + amount
            space = self._namespaces.setdefault(namespace, _Namespace())
            if record is None:
                expires_at = self.clock() + ttl if ttl is not None else None
                space.set(key, _Record(str(value).encode(), 1, None, expires_at))
            else:  # records are replaced, never changed in place (transactions rely on it)
                space.set(
                    key,
                    _Record(
                        str(value).encode(), record.version + 1, record.metadata, record.expires_at
                    ),
                )
            return value

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Holds the store's lock for the block (other threads wait) and restores the state
        from before the block if it raises. Reads inside see the block's own writes."""
        with self._lock:
            if self._in_transaction:
                yield
                return
            snapshot = {name: space.copy() for name, space in self._namespaces.items()}
            self._in_transaction = True
            try:
                yield
            except BaseException:
                self._namespaces = snapshot
                raise
            finally:
                self._in_transaction = False

    def _write(self, namespace: str, put: PreparedPut) -> int:
        space = self._namespaces.setdefault(namespace, _Namespace())
        record = self._live(namespace, put.key)
        version = (record.version if record else 0) + 1
        expires_at = self.clock() + put.ttl if put.ttl is not None else None
        space.set(put.key, _Record(put.value, version, put.metadata, expires_at))
        return version

    # -- reads ---------------------------------------------------------------------------

    def _get_value(self, namespace: str, key: str) -> bytes | None:
        entry = self.get_entry(namespace, key)
        return entry.value if entry else None

    def get_entry(self, namespace: str, key: str) -> Entry | None:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        self.round_trips.add()
        with self._lock:
            record = self._live(namespace, key)
            if record is None:
                return None
            return Entry(record.value, record.version, _copy(record.metadata), record.expires_at)

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        return {key: entry.value for key, entry in self.get_entries(namespace, keys).items()}

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        if not keys:
            return {}
        self.round_trips.add()
        found: dict[str, Entry] = {}
        with self._lock:
            for key in keys:
                record = self._live(namespace, key)
                if record is not None:
                    found[key] = Entry(
                        record.value, record.version, _copy(record.metadata), record.expires_at
                    )
        return found

    def exists(self, namespace: str, key: str) -> bool:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        self.round_trips.add()
        with self._lock:
            return self._live(namespace, key) is not None

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> KeyPage:
        check_list_args(namespace, prefix, limit, self.limits)
        after = decode_after_key(cursor)
        self.round_trips.add()
        with self._lock:
            space = self._namespaces.get(namespace)
            if space is None:
                return KeyPage([], None)
            start = bisect.bisect_left(space.sorted_keys, prefix)
            if after is not None:
                start = max(start, bisect.bisect_right(space.sorted_keys, after))
            keys: list[str] = []
            now = self.clock()
            expired: list[str] = []
            # Collect one key beyond the page to learn whether another page exists.
            for index in range(start, len(space.sorted_keys)):
                key = space.sorted_keys[index]
                if not key.startswith(prefix):
                    break
                expires_at = space.records[key].expires_at
                if expires_at is not None and expires_at <= now:
                    expired.append(key)
                    continue
                keys.append(key)
                if len(keys) > limit:
                    break
            for key in expired:
                space.remove(key)
        more = len(keys) > limit
        keys = keys[:limit]
        return KeyPage(keys, encode_after_key(keys[-1]) if more else None)

    def namespaces(self) -> Names:
        self.round_trips.add()
        with self._lock:
            return sorted(self._namespaces)

    def _register(self, name: str) -> None:
        self.round_trips.add()
        with self._lock:
            self._namespaces.setdefault(name, _Namespace())

    def _unregister(self, name: str) -> None:
        self.round_trips.add()
        with self._lock:
            self._namespaces.pop(name, None)

    def status(self) -> Status:
        self.round_trips.add()
        with self._lock:
            size = sum(len(space.records) for space in self._namespaces.values())
            return Status(True, self.backend_name, sorted(self._namespaces), size)

    # -- writes --------------------------------------------------------------------------

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_write)
        if not keys:
            return 0
        self.round_trips.add()
        removed = 0
        with self._lock:
            space = self._namespaces.get(namespace)
            if space is None:
                return 0
            for key in set(keys):
                live = self._live(namespace, key) is not None
                if live and space.remove(key):
                    removed += 1
        return removed

    def close(self) -> None:
        """Nothing to release; the data lives as long as the object."""


def _copy(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    return dict(metadata) if metadata is not None else None


class MemorySQLDatabase(SQLiteDatabase):
    """A private SQLite ``:memory:`` database (one per instance), shared by all threads."""

    backend_name = "memory"

    def __init__(self) -> None:
        super().__init__(":memory:")
