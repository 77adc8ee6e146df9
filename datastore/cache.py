"""KV clients: a general cache, a session cache and a rate limiter, on any ``KVStore``.

All three degrade gracefully: when the store is unavailable the cache falls through to the
loader, the session cache answers "no session", and the rate limiter lets the request through,
each logging a warning instead of failing the request. A rate limiter built with
``fail_open=False`` raises ``Unavailable`` instead, for limits that must hold (sign-in).

Cache entries are the data-structures spec's ``CacheData``: ``{"data": <the value>, "created":
<ISO 8601>, "expires": <ISO 8601, or null without a TTL>, "type": <value_type>}``, timestamps
in UTC with milliseconds and ``Z`` (JavaScript's ``toISOString``) on the store's clock.
``expires`` is the caller's TTL even where the store keeps the key longer (Cloudflare KV's 60 s
minimum), and an entry past its ``expires`` reads as a miss, whoever wrote it. Entries written
before this shape (the bare JSON value) still read as that value until they expire.

Keys follow the kv-clients spec (see ``datastore.keys``): ``cache:{feature}:{key}``,
``session:{token}`` and ``{key_prefix}{identifier}`` for rate limits (``rl:login:::1``).

Rate limits are fixed windows on the store's clock (``window`` seconds, aligned to multiples of
it): the counter under ``{key_prefix}{identifier}`` holds the window's count as decimal digits
and expires when the window ends, so a Worker reads it with ``kv.get(key)`` and a ``reset``
needs no window. They are exact on memory, SQLite, Redis and the gateway (an atomic increment
per request; the gateway counts in D1). Over Cloudflare's REST API they are approximate: KV has
no atomic increment and is eventually consistent, and Cloudflare allows one write per second to
a key, so concurrent requests in one window can be under-counted and a limit can be exceeded;
and as its TTLs are at least 60 s, a counter created in a window's last minute lives up to a
minute into the next window and its count carries over. Use Redis or the gateway where a limit
must hold exactly.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import codec
from .contract import KVCombined, KVStore
from .errors import InvalidValue, Unavailable
from .keys import (
    rate_limit_prefix,
    validate_feature,
    validate_id,
    validate_identifier,
    validate_kv_key,
)
from .pending import Pending

__all__ = [
    "CacheClient",
    "RateLimitResult",
    "RateLimiterClient",
    "SessionCacheClient",
    "StartedCheck",
]

logger = logging.getLogger("datastore.cache")
DEFAULT_KEY_PREFIX = "rl:api:"
T = TypeVar("T")
_MISSING: Any = object()


def _ttl(kv: KVStore, ttl: float) -> float:
    """A TTL the store accepts: Cloudflare KV's are at least 60 s."""
    return max(float(ttl), kv.limits.min_ttl_seconds)


class _SingleFlight:
    """At most one loader call per key at a time in this process; the others wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}

    def run(self, key: str, loader: Callable[[], T]) -> T:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result  # type: ignore[no-any-return]
        try:
            call.result = loader()
            return call.result  # type: ignore[no-any-return]
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()


class _Call:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


_ENTRY_FIELDS = frozenset({"data", "created", "expires", "type"})


def _moment(epoch: float) -> dt.datetime:
    """``epoch`` as a UTC datetime cut to the millisecond, as the ISO timestamps show it."""
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _epoch(text: str) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _is_entry(value: Any) -> bool:
    """A ``CacheData`` object: the four fields, ``created`` and ``type`` strings and
    ``expires`` a string or null (anything else is a value stored in the old shape)."""
    return (
        isinstance(value, dict)
        and value.keys() >= _ENTRY_FIELDS
        and isinstance(value["created"], str)
        and isinstance(value["type"], str)
        and (value["expires"] is None or isinstance(value["expires"], str))
    )


class CacheClient:
    """A JSON cache under ``cache:{feature}:{key}``, each entry a ``CacheData`` object (see the
    module docstring) whose ``type`` is ``value_type`` (default: the feature). Every entry
    expires: a TTL is required (``default_ttl`` or per call) unless the client is built with
    ``require_ttl=False``."""

    def __init__(
        self,
        kv: KVStore,
        feature: str,
        *,
        namespace: str = "NIMBUS_CACHE",
        default_ttl: float | None = 300,
        require_ttl: bool = True,
        value_type: str | None = None,
    ) -> None:
        validate_feature(feature)
        if value_type is not None and (not isinstance(value_type, str) or not value_type):
            raise InvalidValue(f"value_type must be a non-empty string, not {value_type!r}")
        self.kv = kv
        self.feature = feature
        self.value_type = value_type or feature
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.require_ttl = require_ttl
        self._flights = _SingleFlight()

    def key(self, key: str) -> str:
        return validate_kv_key(f"cache:{self.feature}:{validate_id(key, what='cache key')}")

    def _resolve_ttl(self, ttl: float | Any | None) -> float | None:
        """The caller's TTL in seconds (``None``: no expiry), checked."""
        ttl = self.default_ttl if ttl is _MISSING else ttl
        if ttl is None:
            if self.require_ttl:
                raise InvalidValue("a TTL is required for cache entries (require_ttl=True)")
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise InvalidValue(f"ttl must be a positive number of seconds, not {ttl!r}")
        return float(ttl)

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or ``default`` if missing or past its ``expires`` (or if the
        store is unavailable)."""
        try:
            raw = self.kv.get(self.namespace, self.key(key))
        except Unavailable as exc:
            logger.warning("cache unavailable, reading %s as a miss: %s", key, exc)
            return default
        if raw is None:
            return default
        stored = codec.loads(raw)
        if not _is_entry(stored):
            return stored  # the old shape: the bare value
        expires = None if stored["expires"] is None else _epoch(stored["expires"])
        if expires is not None and expires <= self.kv.clock():
            return default
        return stored["data"]

    def set(self, key: str, value: Any, ttl: float | None = _MISSING) -> None:
        """Store ``value`` (JSON) for ``ttl`` seconds; an unavailable store is only logged."""
        seconds = self._resolve_ttl(ttl)
        created = _moment(self.kv.clock())
        expires = None if seconds is None else created + dt.timedelta(seconds=seconds)
        entry = {
            "data": value,
            "created": codec.isoformat(created),
            "expires": None if expires is None else codec.isoformat(expires),
            "type": self.value_type,
        }
        data = codec.dumps(entry)
        try:
            self.kv.put(
                self.namespace,
                self.key(key),
                data,
                ttl=None if seconds is None else _ttl(self.kv, seconds),
            )
        except Unavailable as exc:
            logger.warning("cache unavailable, not caching %s: %s", key, exc)

    def delete(self, key: str) -> bool:
        return self.kv.delete(self.namespace, self.key(key))

    def delete_many(self, keys: Iterable[str]) -> int:
        return self.kv.delete_many(self.namespace, [self.key(key) for key in keys])

    def get_or_set(self, key: str, loader: Callable[[], T], ttl: float | None = _MISSING) -> T:
        """Read through: the cached value, or the loader's (then cached).

        Concurrent misses for one key in this process call the loader once and share its
        result. A loader that raises is not cached: the error goes to every waiting caller.
        If the store is unavailable the loader is called directly.
        """
        self._resolve_ttl(ttl)  # a missing TTL is an error before anything is loaded
        found = self.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]

        def load() -> T:
            cached = self.get(key, _MISSING)  # another flight may have just stored it
            if cached is not _MISSING:
                return cached  # type: ignore[no-any-return]
            value = loader()
            self.set(key, value, ttl)
            return value

        return self._flights.run(key, load)


class SessionCacheClient:
    """Session data under ``session:{token}``, expiring with the session.

    A session is any JSON object; the data-structures spec's SessionData is ``{user_id, email,
    created, expires, ip, user_agent}``. An object whose ``expires`` (ISO 8601) has passed on the
    store's clock reads as no session, as does a value that is not a JSON object."""

    def __init__(
        self, kv: KVStore, *, namespace: str = "NIMBUS_SESSIONS", default_ttl: float = 86_400
    ) -> None:
        self.kv = kv
        self.namespace = namespace
        self.default_ttl = default_ttl

    def key(self, token: str) -> str:
        return validate_kv_key(f"session:{validate_identifier(token, what='session token')}")

    def get(self, token: str) -> dict[str, Any] | None:
        """The session's data, or ``None`` if missing, expired, unreadable, or the store is
        unavailable."""
        found = self._read(token, versioned=False)
        return None if found is None else found[0]

    def get_versioned(self, token: str) -> tuple[dict[str, Any], int] | None:
        """The session's data and the version it is stored under, for a compare-and-set
        ``set(..., if_version=version)``; ``None`` as for ``get``. The version is 0 where the
        store keeps none (``supports_cas`` false), and reading costs what ``get`` does there."""
        return self._read(token, versioned=self.kv.supports_cas)

    def _read(self, token: str, *, versioned: bool) -> tuple[dict[str, Any], int] | None:
        key = self.key(token)
        try:
            if versioned:
                entry = self.kv.get_entry(self.namespace, key)
                raw, version = (None, 0) if entry is None else (entry.value, entry.version)
            else:
                raw, version = self.kv.get(self.namespace, key), 0
        except Unavailable as exc:
            logger.warning("session cache unavailable: %s", exc)
            return None
        if raw is None:
            return None
        try:
            data = codec.loads(raw)
        except InvalidValue:
            data = None
        if not isinstance(data, dict):
            # The token is not logged: it is the session's credential.
            logger.warning("unreadable session value: reading it as no session")
            return None
        expires = data.get("expires")
        moment = _epoch(expires) if isinstance(expires, str) else None
        if moment is not None and moment <= self.kv.clock():
            return None
        return data, version

    def set(
        self,
        token: str,
        data: dict[str, Any],
        ttl: float | None = None,
        *,
        create: bool = False,
        if_version: int | None = None,
    ) -> int:
        """Store the session for ``ttl`` seconds; returns the new version. With ``create`` the
        token must be new, with ``if_version`` stored under that version (``Conflict``
        otherwise; both only where the store has compare-and-set: ``create`` is ignored
        without it, and ``if_version`` raises ``NotSupported``)."""
        if create and self.kv.supports_cas:
            if_version = 0
        return self.kv.put(
            self.namespace,
            self.key(token),
            codec.dumps(data),
            ttl=_ttl(self.kv, ttl or self.default_ttl),
            if_version=if_version,
        )

    def exists(self, token: str) -> bool:
        return self.kv.exists(self.namespace, self.key(token))

    def delete(self, token: str) -> bool:
        return self.kv.delete(self.namespace, self.key(token))


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    remaining: int
    reset_at: float  # epoch seconds (on the limiter's clock) when the current window ends
    limit: int
    checked_at: float = field(default_factory=time.time)  # on the limiter's clock

    @property
    def retry_after(self) -> int:
        """Whole seconds until a refused caller may try again (0 if allowed)."""
        return 0 if self.allowed else max(1, math.ceil(self.reset_at - self.checked_at))


class StartedCheck:
    """A request counted (or about to be, with the rest of its ``combine()``) by
    ``RateLimiterClient.start_check``; ``result(limit)`` decides it."""

    def __init__(
        self,
        limiter: RateLimiterClient,
        identifier: str,
        count: Pending[int | Pending[int]],
        reset_at: float,
        checked_at: float,
    ) -> None:
        self.limiter = limiter
        self.identifier = identifier
        self.count = count
        self.reset_at = reset_at
        self.checked_at = checked_at

    def result(self, limit: int) -> RateLimitResult:
        """Whether the request is within ``limit`` in its window. While the store cannot
        count, allowed (with a warning), or with ``fail_open=False`` ``Unavailable``."""
        if limit < 1:
            raise InvalidValue("limit and window must be at least 1")
        try:
            counted = self.count.result()
            count = counted.result() if isinstance(counted, Pending) else counted
        except Unavailable as exc:
            if not self.limiter.fail_open:
                raise
            logger.warning(
                "rate limiter unavailable (%s): letting %s through", exc, self.identifier
            )
            return RateLimitResult(True, limit, self.reset_at, limit, self.checked_at)
        return RateLimitResult(
            count <= limit, max(0, limit - count), self.reset_at, limit, self.checked_at
        )


class RateLimiterClient:
    """Fixed-window rate limits: ``check_limit("192.168.1.1", 5, 900, key_prefix="rl:login:")``
    counts this request under ``rl:login:192.168.1.1`` and says whether it is within 5 in the
    current 15 minutes. See the module docstring on windows and accuracy.

    ``clock`` defaults to the store's: windows end when their counter expires on the store, so
    a clock of your own must be the store's clock too. While the store is unavailable a check
    is allowed (with a warning), or with ``fail_open=False`` raises ``Unavailable``."""

    def __init__(
        self,
        kv: KVStore,
        *,
        namespace: str = "NIMBUS_CACHE",
        clock: Callable[[], float] | None = None,
        fail_open: bool = True,
    ) -> None:
        self.kv = kv
        self.namespace = namespace
        self.clock = clock or kv.clock
        self.fail_open = fail_open

    def key(self, identifier: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> str:
        """``{key_prefix}{identifier}``, the key a Worker following the spec reads."""
        prefix = rate_limit_prefix(key_prefix)
        return validate_kv_key(prefix + validate_identifier(identifier, what="identifier"))

    def check_limit(
        self, identifier: str, limit: int, window: int, key_prefix: str = DEFAULT_KEY_PREFIX
    ) -> RateLimitResult:
        """Count one request for ``identifier`` and say whether it is allowed."""
        if limit < 1:
            raise InvalidValue("limit and window must be at least 1")
        return self._check(identifier, window, key_prefix, self.kv.incr).result(limit)

    def start_check(
        self,
        combined: KVCombined,
        identifier: str,
        window: int,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> StartedCheck:
        """Count one request for ``identifier`` as part of ``combined`` (a ``kv.combine()`` of
        this limiter's store, gathering other calls), before its limit is known: the API
        counts a request in the same round trip that reads the API key naming its limit.
        ``result(limit)`` says whether it is allowed."""
        return self._check(identifier, window, key_prefix, combined.incr)

    def _check(
        self,
        identifier: str,
        window: int,
        key_prefix: str,
        incr: Callable[..., int | Pending[int]],
    ) -> StartedCheck:
        if window < 1:
            raise InvalidValue("limit and window must be at least 1")
        key = self.key(identifier, key_prefix)
        now = self.clock()
        reset_at = float(int(now // window) * window + window)

        def count() -> int | Pending[int]:
            return incr(self.namespace, key, ttl=_ttl(self.kv, reset_at - now))

        counted = Pending.run(count)  # now, or gathered to be sent with the rest
        return StartedCheck(self, identifier, counted, reset_at, now)

    def reset(self, identifier: str, key_prefix: str = DEFAULT_KEY_PREFIX) -> bool:
        """Forget the current count for ``identifier`` (the spec's ``reset(identifier,
        keyPrefix)``); ``False`` if there was none."""
        return self.kv.delete(self.namespace, self.key(identifier, key_prefix))
