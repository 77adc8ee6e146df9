"""A Django cache backend on the configured KV store::

    CACHES = {"default": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_CACHE"}}

Keys live under ``django:{KEY_PREFIX}:{version}:{key}`` in the namespace ``LOCATION``. Integers
are stored as digits, so ``incr``/``decr`` are the store's atomic increment; anything else is
pickled and base64-encoded (``p`` + text), which every backend's bulk read returns intact.
Timeouts follow Django: ``None`` caches forever, ``0`` or less does not cache. On Cloudflare KV
timeouts under 60 s are rounded up to 60 s (its minimum), and ``add`` and ``incr`` are not
atomic there.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from datastore import Conflict, InvalidValue, KVStore, PutItem

from . import conf

__all__ = ["KVCache"]

_PICKLED = b"p"


class KVCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.namespace = location or "NIMBUS_CACHE"

    @property
    def kv(self) -> KVStore:
        return conf.kv_store()

    def make_key(self, key: str, version: int | None = None) -> str:
        return "django:" + super().make_key(key, version)

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

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        if self._expired(timeout, self.default_timeout):
            return not self.kv.exists(self.namespace, key)
        if not self.kv.supports_cas:
            if self.kv.exists(self.namespace, key):
                return False
            self.kv.put(self.namespace, key, self._encode(value), ttl=self._ttl(timeout))
            return True
        try:
            self.kv.put(
                self.namespace, key, self._encode(value), ttl=self._ttl(timeout), if_version=0
            )
        except Conflict:
            return False
        return True

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        raw = self.kv.get(self.namespace, self.make_and_validate_key(key, version=version))
        return default if raw is None else self._decode(raw)

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        if self._expired(timeout, self.default_timeout):
            self.kv.delete(self.namespace, key)
            return
        self.kv.put(self.namespace, key, self._encode(value), ttl=self._ttl(timeout))

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
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
        return self.kv.delete(self.namespace, self.make_and_validate_key(key, version=version))

    def has_key(self, key: str, version: int | None = None) -> bool:
        return self.kv.exists(self.namespace, self.make_and_validate_key(key, version=version))

    def get_many(self, keys: Iterable[str], version: int | None = None) -> dict[str, Any]:
        made = {self.make_and_validate_key(key, version=version): key for key in keys}
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
            PutItem(self.make_and_validate_key(key, version=version), self._encode(value), ttl=ttl)
            for key, value in data.items()
        ]
        if items:
            self.kv.put_many(self.namespace, items)
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        if made:
            self.kv.delete_many(self.namespace, made)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        made = self.make_and_validate_key(key, version=version)
        if not self.kv.exists(self.namespace, made):
            raise ValueError(f"Key '{key}' not found")
        try:
            return self.kv.incr(self.namespace, made, delta)
        except InvalidValue as exc:
            raise ValueError(f"Key '{key}' does not hold an integer") from exc

    def clear(self) -> None:
        """Delete every key of this cache (its ``KEY_PREFIX``), nothing else in the namespace."""
        prefix = "django:" + (f"{self.key_prefix}:" if self.key_prefix else ":")
        cursor = None
        while True:
            page = self.kv.list(self.namespace, prefix, cursor=cursor, limit=1000)
            if page.keys:
                self.kv.delete_many(self.namespace, page.keys)
            cursor = page.cursor
            if cursor is None:
                return

    def close(self, **kwargs: Any) -> None:
        """The KV store is shared by the process and stays open."""
