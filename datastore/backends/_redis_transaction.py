"""A Redis transaction: WATCH what is read, queue what is written, MULTI/EXEC at the end.

Inside the block, reads go through the watching connection (so a concurrent change to any key
read or written makes EXEC fail) and see the block's own pending writes; writes are checked
(compare-and-set) when made and queued. At the end all queued writes run in one MULTI/EXEC:
all of them, or, if a watched key changed meanwhile, none, and ``Conflict`` is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis

from ..contract import Entry
from ..errors import Conflict
from ._base import parse_counter
from ._validation import PreparedDelete, PreparedItem


class RedisKVStore(Protocol):
    """What a transaction uses of its store (``redis.RedisKVStore``, which imports this module)."""

    _client: Any
    _incr_script: Any
    _put_script: Any
    clock: Callable[[], float]

    def _call(self, operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...
    def _value_key(self, namespace: str, key: str) -> str: ...
    def _meta_key(self, namespace: str, key: str) -> str: ...
    def _incr_arguments(self, *args: Any, **kwargs: Any) -> Any: ...
    def _put_arguments(self, *args: Any, **kwargs: Any) -> Any: ...
    def _to_entry(self, *args: Any, **kwargs: Any) -> Any: ...


__all__ = ["RedisTransaction"]

Pending = tuple[bytes | None, int, dict[str, Any] | None, float | None]


class RedisTransaction:
    def __init__(self, store: RedisKVStore) -> None:
        self.store = store
        self.pipe = store._client.pipeline(transaction=True)
        self.pending: dict[tuple[str, str], Pending] = {}
        self.ops: list[Callable[[Any], Any]] = []
        self.watched: set[str] = set()

    def _watch(self, keys: Sequence[str]) -> None:
        new = [key for key in keys if key not in self.watched]
        if new:
            self.store._call(self.pipe.watch, *new)
            self.watched.update(new)

    def entry(self, namespace: str, key: str) -> Entry | None:
        if (namespace, key) in self.pending:
            value, version, metadata, expires_at = self.pending[(namespace, key)]
            return None if value is None else Entry(value, version, metadata, expires_at)
        value_key, meta_key = (
            self.store._value_key(namespace, key),
            self.store._meta_key(namespace, key),
        )
        self._watch([value_key, meta_key])
        value = self.store._call(self.pipe.get, value_key)
        version, metadata = self.store._call(self.pipe.hmget, meta_key, ["v", "m"])
        pttl = self.store._call(self.pipe.pttl, value_key)
        return self.store._to_entry(value, version, metadata, pttl)

    def apply(self, namespace: str, items: Sequence[PreparedItem]) -> list[int]:
        current = {item.key: self.entry(namespace, item.key) for item in items}
        failed = [
            item.key
            for item in items
            if item.if_version is not None
            and (current[item.key].version if current[item.key] else 0) != item.if_version  # type: ignore[union-attr]
        ]
        if failed:
            raise Conflict(f"version mismatch for {', '.join(map(repr, failed))}", keys=failed)
        versions = []
        now = self.store.clock()
        for item in items:
            if isinstance(item, PreparedDelete):
                self.pending[(namespace, item.key)] = (None, 0, None, None)
                versions.append(0)
                continue
            entry = current[item.key]
            version = (entry.version if entry else 0) + 1
            expires_at = now + item.ttl if item.ttl is not None else None
            self.pending[(namespace, item.key)] = (item.value, version, item.metadata, expires_at)
            versions.append(version)
        keys, args = self.store._put_arguments(namespace, items, check_versions=False)
        self.ops.append(lambda pipe: self.store._put_script(keys=keys, args=args, client=pipe))
        return versions

    def delete(self, namespace: str, keys: Sequence[str]) -> int:
        existing = sum(1 for key in dict.fromkeys(keys) if self.entry(namespace, key) is not None)
        for key in keys:
            self.pending[(namespace, key)] = (None, 0, None, None)
        redis_keys = [self.store._value_key(namespace, key) for key in keys] + [
            self.store._meta_key(namespace, key) for key in keys
        ]
        self.ops.append(lambda pipe: pipe.delete(*redis_keys))
        return existing

    def incr(self, namespace: str, key: str, amount: int, ttl: float | None) -> int:
        entry = self.entry(namespace, key)
        value = parse_counter(entry.value if entry else None, key) + amount
        if entry is not None:
            expires_at = entry.expires_at
        else:
            expires_at = self.store.clock() + ttl if ttl is not None else None
        self.pending[(namespace, key)] = (
            str(value).encode(),
            (entry.version if entry else 0) + 1,
            entry.metadata if entry else None,
            expires_at,
        )
        keys, args = self.store._incr_arguments(namespace, key, amount, ttl)
        self.ops.append(lambda pipe: self.store._incr_script(keys=keys, args=args, client=pipe))
        return value

    def commit(self) -> None:
        if not self.ops:
            return
        self.pipe.multi()
        for op in self.ops:
            op(self.pipe)
        try:
            self.store._call(self.pipe.execute)
        except redis.WatchError as exc:
            raise Conflict(
                "a key this transaction read or wrote changed before it committed; "
                "nothing was written"
            ) from exc

    def close(self) -> None:
        self.pipe.reset()
