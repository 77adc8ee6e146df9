"""KV store on Redis (redis-py).

Layout, under a configurable ``key_prefix`` (default ``nimbus:``):

* ``{prefix}kv:{namespace}:{key}``  the value, a plain Redis string (readable with ``GET``);
* ``{prefix}kvm:{namespace}:{key}`` a companion hash: ``v`` (version), ``m`` (metadata JSON);
* ``{prefix}namespaces``           a set of namespace names.

Writes run as one Lua script per call, so a batch checks every ``if_version`` and writes (or
deletes) all items atomically in a single round trip; ``start_put`` sends that call and reads
the reply later (pipelining). Values are read with ``GET``/``MGET``; entries (value, version,
metadata, TTL) with one Lua script call, atomically. Listing uses ``SCAN``: its order is
unspecified, pages may be shorter than ``limit`` (even empty) while a cursor is returned, and
a key may repeat if Redis resizes its keyspace mid-scan.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff  # type: ignore[attr-defined,unused-ignore]
from redis.retry import Retry

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
from ..errors import Conflict, DatastoreError, InvalidValue, Unavailable
from ..keys import validate_kv_key, validate_namespace
from ..pending import Pending
from ._base import BaseKVStore, check_amount
from ._redis_pipeline import start_script
from ._redis_transaction import RedisTransaction
from ._validation import (
    PreparedDelete,
    PreparedItem,
    check_list_args,
    validate_keys,
)

__all__ = ["RedisKVStore"]

T = TypeVar("T")

# Entries (value, version, metadata, milliseconds to live) of several keys, read atomically in
# one command: cheaper for the client than MULTI with three commands per key.
_READ_SCRIPT = """
local entries = {}
for i = 1, #KEYS, 2 do
  local value = redis.call('GET', KEYS[i])
  if value then
    local meta = redis.call('HMGET', KEYS[i + 1], 'v', 'm')
    entries[#entries + 1] = {value, meta[1], meta[2], redis.call('PTTL', KEYS[i])}
  else
    entries[#entries + 1] = false
  end
end
return entries
"""
# KEYS: value key, meta key for each item, then the namespaces set.
# ARGV: namespace, item count, then per item: op ('p' put, 'd' delete), value, if_version,
# ttl_ms, metadata ('' = none). Every version is checked before anything is written.
_PUT_SCRIPT = """
local n = tonumber(ARGV[2])
local versions = {}
local failed = {}
for i = 1, n do
  local current = 0
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 1 then
    current = tonumber(redis.call('HGET', KEYS[2 * i], 'v') or '0')
  end
  versions[i] = current
  local expected = ARGV[3 + (i - 1) * 5 + 2]
  if expected ~= '' and tonumber(expected) ~= current then
    failed[#failed + 1] = i
  end
end
if #failed > 0 then
  return {0, failed}
end
local wrote = false
for i = 1, n do
  local base = 3 + (i - 1) * 5
  local vkey, mkey = KEYS[2 * i - 1], KEYS[2 * i]
  if ARGV[base] == 'd' then
    versions[i] = 0
    redis.call('DEL', vkey, mkey)
  else
    local value, ttl, meta = ARGV[base + 1], ARGV[base + 3], ARGV[base + 4]
    wrote = true
    versions[i] = versions[i] + 1
    redis.call('DEL', mkey)
    if ttl ~= '' then
      redis.call('SET', vkey, value, 'PX', ttl)
    else
      redis.call('SET', vkey, value)
    end
    if meta ~= '' then
      redis.call('HSET', mkey, 'v', versions[i], 'm', meta)
    else
      redis.call('HSET', mkey, 'v', versions[i])
    end
    if ttl ~= '' then
      redis.call('PEXPIRE', mkey, ttl)
    end
  end
end
if wrote then
  redis.call('SADD', KEYS[2 * n + 1], ARGV[1])
end
return {1, versions}
"""

# KEYS: value key, meta key, namespaces set. ARGV: amount, ttl_ms ('' = none), namespace.
_INCR_SCRIPT = """
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'v', 1)
  if ARGV[2] ~= '' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
  redis.call('SADD', KEYS[3], ARGV[3])
else
  redis.call('HINCRBY', KEYS[2], 'v', 1)
end
return value
"""

_MAX_SCANS_PER_PAGE = 16
Arguments = list[Any]
ScriptArguments = tuple[list[str], Arguments]  # a Lua script's KEYS and ARGV
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.-]+:")
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


class RedisKVStore(BaseKVStore):
    """``KVStore`` on a Redis server. Thread-safe (redis-py pools connections)."""

    backend_name = "redis"
    supports_cas = True
    supports_ttl = True
    supports_transactions = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "nimbus:",
        limits: KVLimits = DEFAULT_KV_LIMITS,
        socket_timeout: float = 5.0,
        retries: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if key_prefix and not _KEY_PREFIX.fullmatch(key_prefix):
            raise InvalidValue(
                f"key_prefix {key_prefix!r} must be letters, digits, '_', '.' or '-' ending in ':'"
            )
        self.url = url
        self.key_prefix = key_prefix
        self.limits = limits
        self.clock = clock
        self.round_trips = RoundTripCounter()
        # Only connection-level failures are retried: every write here is a whole-value SET
        # (re-applying it stores the same value) or a DEL, so a repeat cannot corrupt data.
        # redis-py types replies as bytes | str; with decode_responses off they are bytes.
        self._client: Any = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
        )
        self._put_script = self._client.register_script(_PUT_SCRIPT)
        self._incr_script = self._client.register_script(_INCR_SCRIPT)
        self._read_script = self._client.register_script(_READ_SCRIPT)
        self._namespaces_key = f"{key_prefix}namespaces"
        self._transactions = threading.local()

    # -- helpers -------------------------------------------------------------------------

    def _value_key(self, namespace: str, key: str) -> str:
        return f"{self.key_prefix}kv:{namespace}:{key}"

    def _meta_key(self, namespace: str, key: str) -> str:
        return f"{self.key_prefix}kvm:{namespace}:{key}"

    def _call(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one client call (one round trip), translating redis-py's errors."""
        self.round_trips.add()
        try:
            return operation(*args, **kwargs)
        except redis.WatchError:
            raise  # a transaction's own signal; RedisTransaction turns it into Conflict
        except redis.RedisError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: redis.RedisError) -> DatastoreError:
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return Unavailable(f"Redis at {self._safe_url()} is unavailable: {exc}")
        message = str(exc)
        if isinstance(exc, redis.ResponseError) and message.startswith(
            ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN")
        ):
            return Unavailable(f"Redis is temporarily unavailable: {message}")
        return DatastoreError(f"Redis error: {message}")

    def _start_script(self, script: Any, keys: list[str], args: Arguments) -> Pending[Any]:
        """Send one script call (one round trip); its reply is read when asked. The scripts
        go this way even when the caller waits at once: it costs the client less than a
        call through redis-py's command machinery."""
        self.round_trips.add()
        return start_script(
            self._client.connection_pool,
            script,
            keys,
            args,
            again=lambda: self._call(script, keys=keys, args=args),
            translate=self._translate,
        )

    def _safe_url(self) -> str:
        return self.url.split("@")[-1] if "@" in self.url else self.url

    def _check_one(self, namespace: str, key: str) -> None:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)

    def _to_entry(
        self, value: bytes | None, version: bytes | None, metadata: bytes | None, pttl: int
    ) -> Entry | None:
        if value is None:
            return None
        expires_at = self.clock() + pttl / 1000 if pttl and pttl > 0 else None
        return Entry(
            value,
            int(version) if version is not None else 0,
            json.loads(metadata) if metadata is not None else None,
            expires_at,
        )

    def _transaction(self) -> RedisTransaction | None:
        return getattr(self._transactions, "current", None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """WATCH/MULTI/EXEC: see ``_redis_transaction``. Joins an enclosing transaction."""
        if self._transaction() is not None:
            yield
            return
        transaction = RedisTransaction(self)
        self._transactions.current = transaction
        try:
            yield
            transaction.commit()
        finally:
            self._transactions.current = None
            transaction.close()

    # -- reads ---------------------------------------------------------------------------

    def _get_value(self, namespace: str, key: str) -> bytes | None:
        self._check_one(namespace, key)
        if (transaction := self._transaction()) is not None:
            entry = transaction.entry(namespace, key)
            return entry.value if entry else None
        return self._call(self._client.get, self._value_key(namespace, key))

    def get_entry(self, namespace: str, key: str) -> Entry | None:
        return self.get_entries(namespace, [key]).get(key)

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        if not keys:
            return {}
        if self._transaction() is not None:
            return {key: entry.value for key, entry in self.get_entries(namespace, keys).items()}
        values = self._call(self._client.mget, [self._value_key(namespace, key) for key in keys])
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        if not keys:
            return {}
        if (transaction := self._transaction()) is not None:
            entries = {key: transaction.entry(namespace, key) for key in keys}
            return {key: entry for key, entry in entries.items() if entry is not None}

        script_keys: list[str] = []
        for key in keys:
            script_keys.append(self._value_key(namespace, key))
            script_keys.append(self._meta_key(namespace, key))
        results = self._start_script(self._read_script, script_keys, []).result()
        found: dict[str, Entry] = {}
        for key, result in zip(keys, results, strict=True):
            if result:
                value, version, metadata, pttl = result
                entry = self._to_entry(value, version, metadata, pttl)
                if entry is not None:
                    found[key] = entry
        return found

    def exists(self, namespace: str, key: str) -> bool:
        self._check_one(namespace, key)
        if (transaction := self._transaction()) is not None:
            return transaction.entry(namespace, key) is not None
        return bool(self._call(self._client.exists, self._value_key(namespace, key)))

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> KeyPage:
        check_list_args(namespace, prefix, limit, self.limits)
        scan_cursor, after = _parse_cursor(cursor)
        value_prefix = self._value_key(namespace, "")
        pattern = (value_prefix + prefix).translate(_GLOB_SPECIAL) + "*"
        keys: dict[str, None] = {}
        # A cursor with ``after`` resumes a step that was split by name, and only a step of
        # COUNT 1 is ever split: take that same step again, so the name filter applies to the
        # keys it returned before and never to those of the buckets after it.
        smaller_step: int | None = 1 if after is not None else None
        for _ in range(_MAX_SCANS_PER_PAGE):
            room = limit - len(keys)
            count = smaller_step or max(room, 100)
            next_cursor, batch = self._call(
                self._client.scan, scan_cursor, match=pattern, count=count
            )
            names = sorted(raw.decode("utf-8")[len(value_prefix) :] for raw in batch)
            if after is not None:
                names = [name for name in names if name > after]
            if len(names) > room:
                # SCAN returned more than the page holds. Never split a step if it can be
                # avoided: end the page before it, or take a smaller step from the same cursor.
                if keys:
                    return KeyPage(list(keys), _make_cursor(scan_cursor, after))
                if count > 1:
                    smaller_step = max(1, min(count, room) // 2)
                    continue
                # A single bucket holds more keys than the page: split it by name. Only a
                # table resize between this call and the next could then hide keys from it.
                keys.update(dict.fromkeys(names[:room]))
                return KeyPage(list(keys), _make_cursor(scan_cursor, names[room - 1]))
            keys.update(dict.fromkeys(names))
            after, smaller_step = None, None
            scan_cursor = int(next_cursor)
            if scan_cursor == 0:
                return KeyPage(list(keys), None)
            if len(keys) >= limit:
                break
        return KeyPage(list(keys), _make_cursor(scan_cursor, after))

    def namespaces(self) -> Names:
        members = self._call(self._client.smembers, self._namespaces_key)
        return sorted(member.decode("utf-8") for member in members)

    def _register(self, name: str) -> None:
        self._call(self._client.sadd, self._namespaces_key, name)

    def _unregister(self, name: str) -> None:
        self._call(self._client.srem, self._namespaces_key, name)

    def status(self) -> Status:
        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.ping()
            pipe.smembers(self._namespaces_key)
            return pipe.execute()

        try:
            _, members = self._call(run)
        except DatastoreError as exc:
            return Status(False, self.backend_name, detail=str(exc))
        names = sorted(member.decode("utf-8") for member in members)
        return Status(True, self.backend_name, names, None, self._safe_url())

    # -- writes --------------------------------------------------------------------------

    def _put_arguments(
        self, namespace: str, items: Sequence[PreparedItem], *, check_versions: bool = True
    ) -> ScriptArguments:
        keys: Names = []
        args: Arguments = [namespace, len(items)]
        for item in items:
            keys.append(self._value_key(namespace, item.key))
            keys.append(self._meta_key(namespace, item.key))
            expected = item.if_version if check_versions and item.if_version is not None else ""
            if isinstance(item, PreparedDelete):
                args.extend(["d", "", expected, "", ""])
                continue
            ttl_ms = max(1, round(item.ttl * 1000)) if item.ttl is not None else ""
            args.extend(["p", item.value, expected, ttl_ms, item.metadata_json or ""])
        keys.append(self._namespaces_key)
        return keys, args

    def _apply(self, namespace: str, items: Sequence[PreparedItem]) -> Versions:
        if (transaction := self._transaction()) is not None:
            return transaction.apply(namespace, items)
        keys, args = self._put_arguments(namespace, items)
        return _versions(items, self._start_script(self._put_script, keys, args).result())

    def _start_apply(self, namespace: str, items: Sequence[PreparedItem]) -> Pending[Versions]:
        if self._transaction() is not None:
            return super()._start_apply(namespace, items)
        keys, args = self._put_arguments(namespace, items)
        return self._start_script(self._put_script, keys, args).then(
            lambda reply: _versions(items, reply)
        )

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_write)
        if not keys:
            return 0
        unique = list(dict.fromkeys(keys))
        if (transaction := self._transaction()) is not None:
            return transaction.delete(namespace, unique)

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(*[self._value_key(namespace, key) for key in unique])
            pipe.delete(*[self._meta_key(namespace, key) for key in unique])
            return pipe.execute()

        removed, _ = self._call(run)
        return int(removed)

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        self._check_one(namespace, key)
        check_amount(amount)
        if ttl is not None and ttl < self.limits.min_ttl_seconds:
            raise InvalidValue(f"ttl {ttl!r}s is below this backend's minimum")
        if (transaction := self._transaction()) is not None:
            return transaction.incr(namespace, key, amount, ttl)
        keys, args = self._incr_arguments(namespace, key, amount, ttl)
        try:
            return int(self._call(self._incr_script, keys=keys, args=args))
        except DatastoreError as exc:
            if "not an integer" in str(exc):
                raise InvalidValue(f"{key!r} does not hold an integer") from exc
            raise

    def _incr_arguments(
        self, namespace: str, key: str, amount: int, ttl: float | None
    ) -> ScriptArguments:
        keys = [
            self._value_key(namespace, key),
            self._meta_key(namespace, key),
            self._namespaces_key,
        ]
        ttl_ms = max(1, round(ttl * 1000)) if ttl is not None else ""
        return keys, [amount, ttl_ms, namespace]

    def flush_prefix(self) -> int:
        """Delete every key under ``key_prefix`` (tests and ``clear``); returns the count."""
        removed = 0
        cursor = 0
        while True:
            start = cursor
            cursor, batch = self._call(
                self._client.scan,
                start,
                match=self.key_prefix.translate(_GLOB_SPECIAL) + "*",
                count=1000,
            )
            if batch:
                removed += self._call(self._client.delete, *batch)
            if int(cursor) == 0:
                return removed

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisKVStore({self._safe_url()!r}, key_prefix={self.key_prefix!r})"


def _versions(items: Sequence[PreparedItem], reply: Any) -> Versions:
    """The put script's reply: the new versions, or ``Conflict`` naming the stale keys."""
    ok, payload = reply
    if not ok:
        failed = [items[int(index) - 1].key for index in payload]
        raise Conflict(f"version mismatch for {', '.join(repr(k) for k in failed)}", keys=failed)
    return [int(version) for version in payload]


def _make_cursor(scan_cursor: int, after: str | None) -> str:
    """``{scan cursor}.{base64 of the last key returned from that SCAN step}``."""
    encoded = "" if after is None else base64.urlsafe_b64encode(after.encode()).decode()
    return f"{scan_cursor}.{encoded}"


def _parse_cursor(cursor: str | None) -> tuple[int, str | None]:
    if cursor is None or cursor == "":
        return 0, None
    try:
        scan_cursor, encoded = cursor.split(".", 1)
        parsed = int(scan_cursor)
        after = base64.urlsafe_b64decode(encoded.encode()).decode() if encoded else None
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidValue(f"invalid list cursor {cursor!r}") from exc
    if parsed < 0:
        raise InvalidValue(f"invalid list cursor {cursor!r}")
    return parsed, after
