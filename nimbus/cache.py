"""A Django cache backend on the configured KV store::

    CACHES = {"default": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_CACHE"}}

Keys live in the namespace ``LOCATION`` under ``django:{prefix}:{version}:{key}``, where
``{prefix}`` is ``KEY_PREFIX`` with ``%`` and ``:`` written ``%25`` and ``%3A``: every key of a
cache starts with ``django:{prefix}:`` and no other cache's does (prefix ``a`` is not the start
of prefix ``a:b``'s keys), which is what ``clear()`` deletes. With a custom ``KEY_FUNCTION`` its
key stands in place of ``{version}:{key}``, so ``clear()`` finds those too. Django's key
warnings (``CacheKeyWarning``) are about Django's key, as with Django's own backends.

Integers are stored as digits, so ``incr``/``decr`` are the store's atomic increment; anything
else is pickled and base64-encoded (``p`` + text), which every backend's bulk read returns
intact. ``incr`` on a value that is not an integer raises ``TypeError``, as Django's backends do.
Timeouts follow Django: ``None`` caches forever, ``0`` or less does not cache. On Cloudflare KV
timeouts under 60 s are rounded up to 60 s (its minimum), and ``add`` and ``incr`` are not
atomic there.

Culling follows Django's ``MAX_ENTRIES`` and ``CULL_FREQUENCY`` when ``MAX_ENTRIES`` is given in
``OPTIONS``: before a write, once the cache holds ``MAX_ENTRIES`` entries, one in
``CULL_FREQUENCY`` of them is deleted (the first in key order), or all of them if it is 0.
Counting costs one increment of ``django-entries:{prefix}`` per write; the keys are listed only
when that count passes the limit (approximate on Cloudflare KV, whose increments are not
atomic and whose listings lag). Without ``MAX_ENTRIES`` a cache has no limit but the store's
own (as Django's Redis and Memcached backends), and its writes cost nothing more.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func

from datastore import Conflict, InvalidValue, KVStore, PutItem

from . import conf

__all__ = ["KVCache"]

_PICKLED = b"p"
_LIST_PAGE = 1000


def _escape(prefix: str) -> str:
    """``KEY_PREFIX`` without ``:``, so that no cache's key prefix starts another's."""
    return prefix.replace("%", "%25").replace(":", "%3A")


class KVCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.namespace = location or "NIMBUS_CACHE"
        options = params.get("OPTIONS") or {}
        self.culls = "max_entries" in params or "MAX_ENTRIES" in options
        self._prefix = f"django:{_escape(self.key_prefix)}:"
        self._count_key = f"django-entries:{_escape(self.key_prefix)}"

    @property
    def kv(self) -> KVStore:
        return conf.kv_store()

    def kv_key(self, key: str, version: int | None = None) -> str:
        """The store's key for a cache key (Django's key, checked and warned about, placed
        under this cache's prefix)."""
        made = self.make_and_validate_key(key, version=version)
        if self.key_func is default_key_func:
            made = made[len(self.key_prefix) + 1 :]  # Django's key is {prefix}:{version}:{key}
        return self._prefix + made

    def _encode(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value).encode()
        return _PICKLED + base64.b64encode(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def _decode(raw: bytes) -> Any:
        if raw[:1] == _PICKLED:
            return pickle.loads(base64.b64decode(raw[1:]))
        return int(raw)

    def _ttl(self, timeout: float | object | None) -> float | None:
        """``None`` = forever; a number of seconds (rounded up to the store's minimum)."""
        seconds = self.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
        if seconds is None:
            return None
        return max(float(seconds), self.kv.limits.min_ttl_seconds)  # type: ignore[arg-type]

    @staticmethod
    def _expired(timeout: Any, default: Any) -> bool:
        seconds = default if timeout is DEFAULT_TIMEOUT else timeout
        return seconds is not None and seconds <= 0

    def _make_room(self, new: int = 1) -> None:
        """Count ``new`` writes; cull first if the cache already holds ``MAX_ENTRIES``.

        The count only grows (overwrites, deletes and expiries are not subtracted), so it is
        at least the number of entries; past the limit the keys are listed, and the count set
        to what remains."""
        if not self.culls:
            return
        kv = self.kv
        count = kv.incr(self.namespace, self._count_key, new)
        if count - new < self._max_entries:
            return
        keys = self._keys()
        if len(keys) >= self._max_entries:
            doomed = (
                keys if self._cull_frequency == 0 else keys[: len(keys) // self._cull_frequency]
            )
            if doomed:
                kv.delete_many(self.namespace, doomed)
            keys = keys[len(doomed) :]
        # Relative to the count read, so that writes counted meanwhile stay counted.
        kv.incr(self.namespace, self._count_key, len(keys) + new - count)

    def _keys(self) -> list[str]:
        """Every key of this cache in the store, in key order."""
        keys: list[str] = []
        cursor = None
        while True:
            page = self.kv.list(self.namespace, self._prefix, cursor=cursor, limit=_LIST_PAGE)
            keys.extend(page.keys)
            cursor = page.cursor
            if cursor is None:
                return sorted(keys)

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key = self.kv_key(key, version=version)
        if self._expired(timeout, self.default_timeout):
            return not self.kv.exists(self.namespace, key)
        data = self._encode(value)
        if not self.kv.supports_cas:
            if self.kv.exists(self.namespace, key):
                return False
            self._make_room()
            self.kv.put(self.namespace, key, data, ttl=self._ttl(timeout))
            return True
        self._make_room()
        try:
            self.kv.put(self.namespace, key, data, ttl=self._ttl(timeout), if_version=0)
        except Conflict:
            return False
        return True

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        raw = self.kv.get(self.namespace, self.kv_key(key, version=version))
        return default if raw is None else self._decode(raw)

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        key = self.kv_key(key, version=version)
        if self._expired(timeout, self.default_timeout):
            self.kv.delete(self.namespace, key)
            return
        data = self._encode(value)
        self._make_room()
        self.kv.put(self.namespace, key, data, ttl=self._ttl(timeout))

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.kv_key(key, version=version)
        entry = self.kv.get_entry(self.namespace, key)
        if entry is None:
            return False
        if self._expired(timeout, self.default_timeout):
            self.kv.delete(self.namespace, key)
            return True
        try:
            self.kv.put(
                self.namespace,
                key,
                entry.value,
                ttl=self._ttl(timeout),
                if_version=entry.version if self.kv.supports_cas else None,
            )
        except Conflict:
            return False  # changed meanwhile; the newer write keeps its own timeout
        return True

    def delete(self, key: str, version: int | None = None) -> bool:
        return self.kv.delete(self.namespace, self.kv_key(key, version=version))

    def has_key(self, key: str, version: int | None = None) -> bool:
        return self.kv.exists(self.namespace, self.kv_key(key, version=version))

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        made = {self.kv_key(key, version=version): key for key in keys}
        found = self.kv.get_many(self.namespace, list(made)) if made else {}
        return {made[key]: self._decode(raw) for key, raw in found.items()}

    def set_many(
        self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[str]:
        if self._expired(timeout, self.default_timeout):
            self.delete_many(data, version=version)
            return []
        ttl = self._ttl(timeout)
        items = [
            PutItem(self.kv_key(key, version=version), self._encode(value), ttl=ttl)
            for key, value in data.items()
        ]
        if items:
            self._make_room(len(items))
            self.kv.put_many(self.namespace, items)
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        made = [self.kv_key(key, version=version) for key in keys]
        if made:
            self.kv.delete_many(self.namespace, made)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        made = self.kv_key(key, version=version)
        if not self.kv.exists(self.namespace, made):
            raise ValueError(f"Key '{key}' not found")
        try:
            return self.kv.incr(self.namespace, made, delta)
        except InvalidValue as exc:
            raise TypeError(f"Key '{key}' does not hold an integer") from exc

    def clear(self) -> None:
        """Delete every key of this cache (its ``KEY_PREFIX``, whatever its ``KEY_FUNCTION``),
        nothing else in the namespace."""
        cursor = None
        while True:
            page = self.kv.list(self.namespace, self._prefix, cursor=cursor, limit=_LIST_PAGE)
            if page.keys:
                self.kv.delete_many(self.namespace, page.keys)
            cursor = page.cursor
            if cursor is None:
                break
        self.kv.delete(self.namespace, self._count_key)

    def close(self, **kwargs: Any) -> None:
        """The KV store is shared by the process and stays open."""
