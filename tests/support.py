"""Helpers shared by the test suite: backend factories and a controllable clock."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

REDIS_URL = os.environ.get("NIMBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_service(name: str, reason: str) -> None:
    """Fail in CI, skip with the reason on a laptop."""
    message = f"{name} is not available: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (with CI=true a missing service is a failure, not a skip)")
    pytest.skip(message)


_redis_checked: dict[str, str | None] = {}


def redis_or_skip() -> None:
    """Make sure the test Redis answers; in CI a missing Redis fails the test."""
    if REDIS_URL not in _redis_checked:
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
            _redis_checked[REDIS_URL] = None
        except redis.RedisError as exc:
            _redis_checked[REDIS_URL] = str(exc)
    error = _redis_checked[REDIS_URL]
    if error is not None:
        require_service("Redis", f"{REDIS_URL}: {error}")


def flush_test_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


@dataclass
class Backend:
    """A store under test plus a way to let time pass for TTL tests."""

    name: str
    store: Any
    advance: Callable[[float], None]
    ordered_list: bool = True
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def make_kv(name: str, tmp_path: Any, cloudflare: Any = None) -> Backend:
    """Build a fresh, empty KV store of the named kind (``cloudflare``: a running local API)."""
    if name == "memory":
        from datastore.backends.memory import MemoryKVStore

        clock = FakeClock()
        return Backend(name, MemoryKVStore(clock=clock), clock.advance)
    if name == "sqlite":
        from datastore.backends.sqlite import SQLiteKVStore

        clock = FakeClock()
        return Backend(name, SQLiteKVStore(tmp_path / "kv.sqlite3", clock=clock), clock.advance)
    if name == "redis":
        from datastore.backends.redis import RedisKVStore

        redis_or_skip()
        flush_test_redis()
        return Backend(
            name,
            RedisKVStore(REDIS_URL, key_prefix="nimbus-test:"),
            lambda seconds: time.sleep(seconds),
            ordered_list=False,
        )
    if name == "cloudflare":
        from datastore.backends.cloudflare import CloudflareKVStore

        cloudflare.reset()
        return Backend(
            name,
            CloudflareKVStore(**cloudflare.kv_options()),
            lambda seconds: time.sleep(seconds),
            ordered_list=True,
        )
    if name == "gateway":
        from datastore.backends.gateway import GatewayKVStore

        cloudflare.reset()
        return Backend(
            name,
            GatewayKVStore(**cloudflare.gateway_options()),
            lambda seconds: time.sleep(seconds),
            ordered_list=True,
        )
    raise ValueError(name)


KV_BACKENDS = ["memory", "sqlite", "redis", "cloudflare", "gateway"]


FACADE_BACKENDS = [
    "kv-memory",
    "kv-sqlite",
    "kv-redis",
    "kv-cloudflare",
    "kv-gateway",
    "sql-memory",
    "sql-sqlite",
    "sql-gateway",
]
SQL_BACKENDS = ["memory", "sqlite", "d1", "gateway"]


def make_sql(name: str, tmp_path: Any, cloudflare: Any = None) -> Any:
    """A fresh, empty SQLDatabase of the named kind."""
    if name == "memory":
        from datastore.backends.memory import MemorySQLDatabase

        return MemorySQLDatabase()
    if name == "sqlite":
        from datastore.backends.sqlite import SQLiteDatabase

        return SQLiteDatabase(tmp_path / "meta.sqlite3")
    if name == "d1":
        from datastore.backends.cloudflare import CloudflareD1Database

        cloudflare.reset()
        return CloudflareD1Database(**cloudflare.d1_options())
    if name == "gateway":
        from datastore.backends.gateway import GatewayD1Database

        cloudflare.reset()
        options = cloudflare.gateway_options()
        return GatewayD1Database(options["url"], options["secret"])
    raise ValueError(name)


def needs_cloudflare(name: str) -> bool:
    return name.endswith(("cloudflare", "d1", "gateway"))


def make_datastore(name: str, tmp_path: Any, cloudflare: Any = None) -> tuple[Any, Backend]:
    """A ``Datastore`` on the named adapter and backend, with tables created."""
    from datastore import Datastore

    adapter, kind = name.split("-")
    if adapter == "kv":
        backend = make_kv(kind, tmp_path, cloudflare)
        return Datastore(backend.store), backend
    clock = FakeClock()
    sql = make_sql(kind, tmp_path, cloudflare)
    datastore = Datastore(sql=sql, adapter="sql", clock=clock)
    datastore.adapter.create_tables()  # type: ignore[attr-defined]
    return datastore, Backend(name, sql, clock.advance)


class FaultyStore:
    """Wraps a KV store or SQL database; methods named in ``failing`` raise ``Unavailable``.

    A failing ``put`` or ``put_many`` fails their sent-now-answered-later forms too
    (``start_put``, ``start_put_many``), whose ``Pending`` raises when its answer is read.
    """

    _STARTED = {"start_put": "put", "start_put_many": "put_many"}

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.failing: set[str] = set()

    def combine(self) -> Any:
        """Calls gathered on the wrapper, so its failures apply to them too."""
        from datastore.backends._combined import SequentialCombined

        return SequentialCombined(self)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def fail(*args: Any, **kwargs: Any) -> Any:
            from datastore import Unavailable

            raise Unavailable(f"injected failure in {name}")

        if name in self.failing:
            return fail
        if self._STARTED.get(name) in self.failing:
            from datastore import Pending

            return lambda *args, **kwargs: Pending.run(fail)
        return attribute
