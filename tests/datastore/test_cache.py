"""CacheClient, SessionCacheClient and RateLimiterClient on every KV backend."""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import re
import threading
import time

import pytest

from datastore import (
    CacheClient,
    Conflict,
    InvalidKey,
    InvalidValue,
    KVStore,
    NotSupported,
    RateLimiterClient,
    SessionCacheClient,
    Unavailable,
    codec,
)
from tests.support import KV_BACKENDS, Backend, FakeClock, FaultyStore, make_kv


def test_cache_get_set_delete(kv: KVStore) -> None:
    cache = CacheClient(kv, "content")
    assert cache.get("home") is None and cache.get("home", "dflt") == "dflt"
    cache.set("home", {"title": "Hi", "items": [1, 2]})
    assert cache.get("home") == {"title": "Hi", "items": [1, 2]}
    assert kv.exists("NIMBUS_CACHE", "cache:content:home")
    entry = kv.get_entry("NIMBUS_CACHE", "cache:content:home")
    assert entry is not None and entry.expires_at is not None  # every entry expires
    cache.set("other", 1)
    assert cache.delete_many(["home", "other", "nope"]) == 2
    assert cache.delete("home") is False


def test_a_ttl_is_required_unless_disabled(kv: KVStore) -> None:
    with pytest.raises(InvalidValue, match="TTL is required"):
        CacheClient(kv, "x", default_ttl=None).set("k", 1)
    with pytest.raises(InvalidValue):
        CacheClient(kv, "x").set("k", 1, ttl=-5)
    forever = CacheClient(kv, "x", default_ttl=None, require_ttl=False)
    forever.set("k", 1)
    assert kv.get_entry("NIMBUS_CACHE", "cache:x:k").expires_at is None  # type: ignore[union-attr]


def test_entries_expire(kv_backend: Backend) -> None:
    kv = kv_backend.store
    if kv.limits.min_ttl_seconds > 1:
        pytest.skip(f"{kv.backend_name} TTLs are at least {kv.limits.min_ttl_seconds}s")
    cache = CacheClient(kv, "short", default_ttl=1)
    cache.set("k", "v")
    kv_backend.advance(1.2)
    assert cache.get("k") is None


def test_get_or_set_calls_the_loader_once_under_concurrent_misses(kv: KVStore) -> None:
    cache = CacheClient(kv, "expensive")
    calls = []
    gate = threading.Event()

    def loader() -> dict:
        calls.append(1)
        gate.wait(2)
        return {"answer": 42}

    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_set("q", loader)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [{"answer": 42}] * 8
    assert cache.get("q") == {"answer": 42}


def test_a_loader_failure_is_never_cached(kv: KVStore) -> None:
    cache = CacheClient(kv, "flaky")
    attempts = []

    def loader() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("upstream down")
        return "ok"

    with pytest.raises(RuntimeError):
        cache.get_or_set("k", loader)
    assert cache.get("k") is None
    assert cache.get_or_set("k", loader) == "ok" and len(attempts) == 2


def test_an_unavailable_cache_falls_through_to_the_loader(
    kv: KVStore, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = FaultyStore(kv)
    faulty.failing = {"get", "put", "incr"}
    cache = CacheClient(faulty, "content")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="datastore.cache"):
        assert cache.get_or_set("k", lambda: "fresh") == "fresh"
    assert "cache unavailable" in caplog.text
    limiter = RateLimiterClient(faulty)  # type: ignore[arg-type]
    assert limiter.check_limit("user_1", 1, 60).allowed
    sessions = SessionCacheClient(faulty)  # type: ignore[arg-type]
    assert sessions.get("tok") is None


def test_a_rate_limiter_that_must_hold_raises_while_the_store_is_unavailable(
    kv: KVStore, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = FaultyStore(kv)
    faulty.failing = {"incr"}
    limiter = RateLimiterClient(faulty, fail_open=False)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="datastore.cache"), pytest.raises(Unavailable):
        limiter.check_limit("user_1", 1, 60)
    assert "letting" not in caplog.text  # nothing was let through


def test_sessions(kv: KVStore) -> None:
    sessions = SessionCacheClient(kv)
    sessions.set("tok_abc", {"user_id": "u1", "email": "u1@example.com"}, ttl=3600)
    assert sessions.get("tok_abc") == {"user_id": "u1", "email": "u1@example.com"}
    assert kv.exists("NIMBUS_SESSIONS", "session:tok_abc") and sessions.exists("tok_abc")
    if kv.supports_cas:
        with pytest.raises(Conflict):
            sessions.set("tok_abc", {}, create=True)
    assert sessions.delete("tok_abc") is True
    assert sessions.get("tok_abc") is None


def test_a_session_is_written_over_only_under_the_version_it_was_read_at(kv: KVStore) -> None:
    sessions = SessionCacheClient(kv)
    first = sessions.set("tok_cas", {"user_id": "u1"}, ttl=3600, create=True)
    assert sessions.get_versioned("tok_cas") == ({"user_id": "u1"}, first if kv.supports_cas else 0)
    if not kv.supports_cas:
        with pytest.raises(NotSupported):
            sessions.set("tok_cas", {}, ttl=3600, if_version=first)
        return
    second = sessions.set("tok_cas", {"user_id": "u2"}, ttl=3600, if_version=first)
    assert second > first
    with pytest.raises(Conflict):  # written meanwhile
        sessions.set("tok_cas", {"user_id": "u3"}, ttl=3600, if_version=first)
    sessions.delete("tok_cas")
    with pytest.raises(Conflict):  # deleted meanwhile: not written back
        sessions.set("tok_cas", {"user_id": "u3"}, ttl=3600, if_version=second)
    assert sessions.get_versioned("tok_cas") is None and not sessions.exists("tok_cas")


def test_a_session_value_that_cannot_be_read_is_no_session(
    kv: KVStore, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = SessionCacheClient(kv)
    for raw in (b"not json", b"[1, 2]", b"\xff\xfe"):
        kv.put("NIMBUS_SESSIONS", "session:tok_bad", raw, ttl=3600)
        with caplog.at_level(logging.WARNING, logger="datastore.cache"):
            assert sessions.get("tok_bad") is None
    assert "unreadable session" in caplog.text


def test_a_session_past_its_expires_is_no_session(kv: KVStore) -> None:
    # Cloudflare KV keeps a key at least 60 s; the record's own "expires" is what counts.
    sessions = SessionCacheClient(kv)
    now = dt.datetime.fromtimestamp(kv.clock(), dt.UTC)
    past = codec.isoformat(now - dt.timedelta(seconds=1))
    future = codec.isoformat(now + dt.timedelta(hours=1))
    sessions.set("tok_old", {"user_id": "u1", "expires": past}, ttl=3600)
    sessions.set("tok_new", {"user_id": "u1", "expires": future}, ttl=3600)
    sessions.set("tok_odd", {"user_id": "u1", "expires": "soon"}, ttl=3600)
    assert sessions.get("tok_old") is None
    assert sessions.get("tok_new") == {"user_id": "u1", "expires": future}
    assert sessions.get("tok_odd") == {"user_id": "u1", "expires": "soon"}  # not a time: kept


def test_rate_limit_counts_and_resets(kv_backend: Backend) -> None:
    kv = kv_backend.store
    fake_clock = kv_backend.name in ("memory", "sqlite")
    window = 60 if fake_clock else 86_400  # a real clock: no window boundary mid-test
    limiter = RateLimiterClient(kv)  # on the store's clock
    results = [limiter.check_limit("key_1", 3, window) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0, 0]
    now = kv.clock()
    assert results[0].reset_at == (now // window + 1) * window  # the end of the current window
    assert limiter.check_limit("key_2", 3, window).allowed  # identifiers are independent
    assert limiter.reset("key_1") is True
    assert limiter.check_limit("key_1", 3, window).remaining == 2
    if fake_clock:
        kv_backend.advance(window)
        assert limiter.check_limit("key_1", 3, window).remaining == 2  # a new window


def test_retry_after_is_counted_on_the_limiter_clock() -> None:
    from datastore.backends.memory import MemoryKVStore

    clock = FakeClock(1_700_000_000.0)  # 40 s before the end of its 60 s window
    limiter = RateLimiterClient(MemoryKVStore(clock=clock), clock=clock)
    results = [limiter.check_limit("key_1", 1, 60) for _ in range(2)]
    assert [(r.allowed, r.retry_after) for r in results] == [(True, 0), (False, 40)]
    clock.advance(30)
    assert limiter.check_limit("key_1", 1, 60).retry_after == 10


def test_rate_limit_is_exact_under_concurrency(kv: KVStore) -> None:
    if not kv.supports_atomic_incr:
        pytest.skip(f"{kv.backend_name}: rate limits are approximate (no atomic increment)")
    limiter = RateLimiterClient(kv)
    allowed = []

    def hammer() -> None:
        for _ in range(20):
            allowed.append(limiter.check_limit("shared", 50, 3600).allowed)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 50 and len(allowed) == 160


def _hammer_process(store: KVStore, results: object) -> None:
    limiter = RateLimiterClient(store)
    count = sum(limiter.check_limit("proc", 30, 3600).allowed for _ in range(20))
    results.put(count)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", [b for b in KV_BACKENDS if b in ("sqlite", "redis")])
def test_rate_limit_is_exact_across_processes(name: str, tmp_path) -> None:
    store = make_kv(name, tmp_path).store
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_hammer_process, args=(store, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sum(results.get(timeout=5) for _ in workers) == 30
    store.close()


# -- the kv-clients spec's keys: rl:login:{ip}, session:{token}, cache:{feature}:{key} --------

IPS = ["192.168.1.1", "::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1", "fe80::1"]


def test_ip_identifiers_ipv6_included_are_accepted(kv: KVStore) -> None:
    limiter = RateLimiterClient(kv)
    sessions = SessionCacheClient(kv)
    for ip in IPS:
        assert limiter.check_limit(ip, 5, 86_400).remaining == 4
        assert limiter.check_limit(ip, 5, 86_400).remaining == 3
        sessions.set(ip, {"user_id": "u1"}, ttl=3600)
        assert sessions.get(ip) == {"user_id": "u1"} and sessions.exists(ip)
        assert kv.exists("NIMBUS_SESSIONS", f"session:{ip}")
    assert limiter.check_limit("::2", 5, 86_400).remaining == 4  # no two addresses share a key


def test_a_spec_key_prefix_is_the_start_of_the_key(kv: KVStore) -> None:
    """``keyPrefix: 'rl:login:'`` and ``'rl:login:192.168.1.1'``: the key is the prefix, then
    the identifier, as a Worker following the spec builds it; the value is the count."""
    limiter = RateLimiterClient(kv)
    for _ in range(2):
        limiter.check_limit("192.168.1.1", 5, 900, key_prefix="rl:login:")
    limiter.check_limit("::1", 5, 900, key_prefix="rl:login:")
    assert kv.get("NIMBUS_CACHE", "rl:login:192.168.1.1") == b"2"
    assert kv.get("NIMBUS_CACHE", "rl:login:::1") == b"1"
    entry = kv.get_entry("NIMBUS_CACHE", "rl:login:::1")
    assert entry is not None and entry.expires_at is not None  # the window ends with the key
    limiter.reset("192.168.1.1", "rl:login:")  # the spec's reset(identifier, keyPrefix)
    assert not kv.exists("NIMBUS_CACHE", "rl:login:192.168.1.1")
    # a bare name is short for rl:{name}:
    limiter.check_limit("key_1", 5, 60, key_prefix="login")
    assert kv.get("NIMBUS_CACHE", "rl:login:key_1") == b"1"
    limiter.check_limit("key_1", 5, 60)
    assert kv.get("NIMBUS_CACHE", "rl:api:key_1") == b"1"


def test_cache_feature_names_may_have_hyphens(kv: KVStore) -> None:
    settings = CacheClient(kv, "platform-settings", default_ttl=86_400)
    settings.set("all", {"theme": "dark"})
    assert settings.get("all") == {"theme": "dark"}
    assert kv.exists("NIMBUS_CACHE", "cache:platform-settings:all")
    buckets = CacheClient(kv, "creator-buckets")
    buckets.set("creator-uuid-1", ["a"])
    assert kv.exists("NIMBUS_CACHE", "cache:creator-buckets:creator-uuid-1")
    CacheClient(kv, "content").set("published:cat-uuid", [1])
    assert kv.exists("NIMBUS_CACHE", "cache:content:published:cat-uuid")


@pytest.mark.parametrize(
    "bad", ["", " ", "1.2.3.4 ", "a\x00b", "tab\t", "new\nline", "x" * 257, "é", "a/b"]
)
def test_unsafe_identifiers_are_refused(kv: KVStore, bad: str) -> None:
    with pytest.raises(InvalidKey):
        RateLimiterClient(kv).check_limit(bad, 5, 60, key_prefix="rl:login:")
    with pytest.raises(InvalidKey):
        SessionCacheClient(kv).set(bad, {})
    with pytest.raises(InvalidKey):
        CacheClient(kv, "content").set(bad, 1)


@pytest.mark.parametrize(
    "bad", ["", ":", "rl::login:", "rl:login", ":rl:", "rl:lo gin:", "rl:\x00:", "r" * 70, 60]
)
def test_unsafe_key_prefixes_are_refused(kv: KVStore, bad: object) -> None:
    with pytest.raises(InvalidKey, match="key prefix"):
        RateLimiterClient(kv).check_limit("1.2.3.4", 5, 60, key_prefix=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "-x", "a:b", "a b", "a.b", "x" * 65])
def test_unsafe_feature_names_are_refused(kv: KVStore, bad: str) -> None:
    with pytest.raises(InvalidKey, match="feature"):
        CacheClient(kv, bad)


# -- cache entries are the data-structures spec's CacheData {data, created, expires, type} ---


def _iso(epoch: float) -> str:
    return codec.isoformat(dt.datetime.fromtimestamp(epoch, dt.UTC))


def test_cache_entries_have_the_spec_shape(kv: KVStore) -> None:
    cache = CacheClient(kv, "content")
    before = kv.clock()
    cache.set("published:cat-uuid", {"items": [1, 2]}, ttl=300)
    after = kv.clock()
    entry = json.loads(kv.get("NIMBUS_CACHE", "cache:content:published:cat-uuid") or b"null")
    assert set(entry) == {"data", "created", "expires", "type"}
    assert entry["data"] == {"items": [1, 2]} and entry["type"] == "content"
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(iso, entry["created"]) and re.fullmatch(iso, entry["expires"])
    assert _iso(before) <= entry["created"] <= _iso(after)
    created = dt.datetime.fromisoformat(entry["created"])
    assert dt.datetime.fromisoformat(entry["expires"]) - created == dt.timedelta(seconds=300)
    assert cache.get("published:cat-uuid") == {"items": [1, 2]}
    typed = CacheClient(kv, "answers", value_type="ai_response")
    typed.set("q1", "42")
    assert json.loads(kv.get("NIMBUS_CACHE", "cache:answers:q1") or b"")["type"] == "ai_response"
    forever = CacheClient(kv, "settings", default_ttl=None, require_ttl=False)
    forever.set("all", {"a": 1})
    assert json.loads(kv.get("NIMBUS_CACHE", "cache:settings:all") or b"")["expires"] is None
    assert forever.get("all") == {"a": 1}


def test_cache_still_reads_entries_in_the_old_shape(kv: KVStore) -> None:
    """Entries written before CacheData held the bare JSON value: they read as before."""
    cache = CacheClient(kv, "content")
    kv.put("NIMBUS_CACHE", "cache:content:home", b'{"title":"Hi","items":[1,2]}', ttl=300)
    kv.put("NIMBUS_CACHE", "cache:content:data", b'{"data":1,"created":"x"}', ttl=300)
    kv.put("NIMBUS_CACHE", "cache:content:list", b"[1,2]", ttl=300)
    assert cache.get("home") == {"title": "Hi", "items": [1, 2]}
    assert cache.get("data") == {"data": 1, "created": "x"}
    assert cache.get("list") == [1, 2]
    assert cache.get_or_set("home", lambda: "not called") == {"title": "Hi", "items": [1, 2]}


def test_an_entry_past_its_expires_is_a_miss(kv: KVStore) -> None:
    """A Worker may write CacheData without a KV TTL: ``expires`` is what says it is stale."""
    now = kv.clock()
    stale = {"data": "old", "created": _iso(now - 600), "expires": _iso(now - 300), "type": "x"}
    kv.put("NIMBUS_CACHE", "cache:content:home", json.dumps(stale).encode())
    cache = CacheClient(kv, "content")
    assert cache.get("home") is None
    assert cache.get_or_set("home", lambda: "fresh") == "fresh"
    assert cache.get("home") == "fresh"
