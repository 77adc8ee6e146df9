"""Django's cache semantics, ported from Django's own BaseCacheTests, on ``nimbus.cache.KVCache``
over every KV backend."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.core.cache import caches

from nimbus import conf
from tests.support import make_kv, needs_cloudflare


@pytest.fixture(params=["memory", "sqlite", "redis", "cloudflare", "gateway"])
def cache(request, settings, tmp_path, monkeypatch):
    name = request.param
    cloudflare = request.getfixturevalue("cloudflare_api") if needs_cloudflare(name) else None
    store = make_kv(name, tmp_path, cloudflare).store
    monkeypatch.setattr(conf, "kv_store", lambda: store)
    settings.CACHES = {
        "default": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_CACHE"},
        "prefixed": {
            "BACKEND": "nimbus.cache.KVCache",
            "LOCATION": "NIMBUS_CACHE",
            "KEY_PREFIX": "other",
        },
        "a": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_CACHE", "KEY_PREFIX": "a"},
        "a:b": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_CACHE", "KEY_PREFIX": "a:b"},
        "custom": {
            "BACKEND": "nimbus.cache.KVCache",
            "LOCATION": "NIMBUS_CACHE",
            "KEY_FUNCTION": custom_key,
        },
        "small": {
            "BACKEND": "nimbus.cache.KVCache",
            "LOCATION": "NIMBUS_CACHE",
            "KEY_PREFIX": "small",
            "OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2},
        },
    }
    yield caches["default"]
    store.close()


def custom_key(key: str, key_prefix: str, version: int) -> str:
    return f"custom-{key_prefix}-{version}-{key}"


def short_timeout(cache) -> int:
    if cache.kv.limits.min_ttl_seconds > 1:
        pytest.skip("Cloudflare KV timeouts are at least 60 s")
    return 1


def test_simple(cache) -> None:
    cache.set("key", "value")
    assert cache.get("key") == "value"
    assert cache.get("missing") is None
    assert cache.get("missing", "default") == "default"


def test_add(cache) -> None:
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefixes_and_versions_separate_keys(cache) -> None:
    cache.set("somekey", "value")
    assert caches["prefixed"].get("somekey") is None
    cache.set("answer", 42, version=1)
    cache.set("answer", 37, version=2)
    assert cache.get("answer", version=1) == 42
    assert cache.get("answer", version=2) == 37
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=3) == 37 and cache.get("answer", version=2) is None


def test_get_many_set_many_delete_many(cache) -> None:
    assert cache.set_many({"a": "a", "b": "b", "c": "c"}) == []
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c"}
    assert cache.get_many([]) == {}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": "c"}


def test_delete_and_has_key(cache) -> None:
    cache.set("key1", "spam")
    assert cache.has_key("key1") and "key1" in cache
    assert cache.delete("key1") is True
    assert cache.delete("key1") is False
    assert cache.get("key1") is None and not cache.has_key("key1")
    cache.set("null", None)
    assert cache.has_key("null")


def test_incr_decr(cache) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.decr("answer", 12) == 40
    assert cache.decr("answer") == 39
    with pytest.raises(ValueError, match="not found"):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError):
        cache.decr("does_not_exist")
    for value in ("hello", None, 1.5):  # Django's backends raise TypeError for these
        cache.set("text", value)
        with pytest.raises(TypeError, match="does not hold an integer"):
            cache.incr("text")
        with pytest.raises(TypeError):
            cache.decr("text")


def test_data_types(cache) -> None:
    stuff = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "decimal": Decimal("1.25"),
        "date": dt.date(2024, 9, 2),
        "bytes": b"\x00\xffbinary",
        "unicode": "Iñtërnâtiônàlizætiøn ✓",
    }
    cache.set("stuff", stuff)
    assert cache.get("stuff") == stuff
    for key, value in stuff.items():
        cache.set(key, value)
        assert cache.get(key) == value and type(cache.get(key)) is type(value)


def test_expiration(cache) -> None:
    timeout = short_timeout(cache)
    cache.set("expire1", "very quickly", timeout)
    cache.add("expire2", "very quickly", timeout)
    time.sleep(timeout + 0.3) if cache.kv.backend_name == "redis" else _advance(cache, timeout)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"


def _advance(cache, seconds: float) -> None:
    cache.kv.clock.advance(seconds + 0.3)


def test_forever_and_zero_timeouts(cache) -> None:
    cache.set("forever", "value", None)
    assert cache.kv.get_entry("NIMBUS_CACHE", cache.kv_key("forever")).expires_at is None
    cache.set("key", "value", 0)
    assert cache.get("key") is None
    assert cache.add("key2", "value", 0) is True and cache.get("key2") is None
    cache.set("neg", "value", -1)
    assert cache.get("neg") is None


def test_touch(cache) -> None:
    cache.set("expire1", "very quickly", timeout=600)
    assert cache.touch("expire1", timeout=3600) is True
    entry = cache.kv.get_entry("NIMBUS_CACHE", cache.kv_key("expire1"))
    assert entry.expires_at > time.time() + 1800 or cache.kv.backend_name in ("memory", "sqlite")
    assert cache.touch("expire1", timeout=None) is True
    assert cache.kv.get_entry("NIMBUS_CACHE", cache.kv_key("expire1")).expires_at is None
    assert cache.touch("nonexistent") is False
    assert cache.get("expire1") == "very quickly"


def test_get_or_set(cache) -> None:
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get_or_set("projector", 43) == 42
    assert cache.get_or_set("callable", lambda: "computed") == "computed"


def test_clear_removes_only_this_caches_keys(cache) -> None:
    cache.set("a", 1)
    caches["prefixed"].set("a", 2)
    cache.kv.put("NIMBUS_CACHE", "cache:other-client:x", b"1")
    cache.clear()
    assert cache.get("a") is None
    assert caches["prefixed"].get("a") == 2
    assert cache.kv.get("NIMBUS_CACHE", "cache:other-client:x") == b"1"


def test_close_keeps_the_store_usable(cache) -> None:
    cache.set("k", "v")
    cache.close()
    assert cache.get("k") == "v"


def test_clear_removes_the_keys_of_a_custom_key_function(cache) -> None:
    custom = caches["custom"]
    custom.set("a", 1)
    assert custom.get("a") == 1 and cache.get("a") is None
    cache.set("b", 2)
    custom.clear()  # the same KEY_PREFIX (none): both caches' keys go
    assert custom.get("a") is None and cache.get("b") is None
    assert cache.kv.list("NIMBUS_CACHE").keys == []


def test_clear_of_one_prefix_keeps_a_longer_prefix_that_starts_with_it(cache) -> None:
    short, longer = caches["a"], caches["a:b"]
    short.set("x", "short")
    longer.set("x", "longer")
    longer.set("1:x", "longer, a key that looks like a version")
    short.clear()
    assert short.get("x") is None
    assert longer.get("x") == "longer"
    assert longer.get("1:x") == "longer, a key that looks like a version"
    longer.clear()
    assert cache.kv.list("NIMBUS_CACHE").keys == []


def test_the_layout_keeps_the_prefix_apart_from_the_key(cache) -> None:
    assert cache.kv_key("k") == "django::1:k"
    assert caches["prefixed"].kv_key("k", version=2) == "django:other:2:k"
    assert caches["a:b"].kv_key("k") == "django:a%3Ab:1:k"
    assert caches["custom"].kv_key("k") == "django::custom--1-k"


def test_key_warnings_are_djangos_about_djangos_key(cache) -> None:
    from django.core.cache import CacheKeyWarning

    with pytest.warns(CacheKeyWarning) as caught:
        cache.set("key with spaces", 1)
    assert str(caught[0].message) == (
        "Cache key contains characters that will cause errors if used with memcached: "
        "':1:key with spaces'"
    )
    with pytest.warns(CacheKeyWarning):
        assert cache.get("key with spaces") == 1  # a warning, as in Django: the key works


def test_max_entries_culls_one_entry_in_cull_frequency(cache) -> None:
    small = caches["small"]
    for number in range(10):
        small.set(f"k{number}", number)
    assert sum(small.has_key(f"k{number}") for number in range(10)) == 10
    small.set("k10", 10)  # the cache holds MAX_ENTRIES: half of them go first
    kept = [number for number in range(11) if small.has_key(f"k{number}")]
    assert kept == [5, 6, 7, 8, 9, 10]  # the first in key order went
    for number in range(11, 15):
        small.set(f"k{number}", number)
    assert len(small._keys()) == 10
    small.set("k15", 15)
    assert len(small._keys()) == 6
    small.clear()
    assert cache.kv.list("NIMBUS_CACHE").keys == []  # the count went with the entries


def test_without_max_entries_a_write_is_one_put(cache) -> None:
    with cache.kv.round_trips.track() as trips:
        for number in range(400):
            cache.set(f"k{number}", number)
    assert trips.count == 400
    assert cache.get("k0") == 0  # no limit (Django's default of 300 is locmem's)
    assert not any(key.startswith("django-entries:") for key in cache.kv.list("NIMBUS_CACHE").keys)
