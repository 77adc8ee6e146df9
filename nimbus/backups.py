"""What ``nimbus_backup`` leaves out by default, and ``nimbus_restore`` does not count as data:
sign-in sessions and the caches (their values and the rate-limit counters)."""

from __future__ import annotations

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from datamodel import registry
from datamodel.backup import KeyRange
from datastore import CacheClient, RateLimiterClient, SessionCacheClient

from . import conf
from .cache import KVCache

__all__ = ["cache_ranges", "session_ranges"]

SESSION_PREFIX = "session:"  # SessionCacheClient's keys, session:{token}


def session_ranges() -> list[KeyRange]:
    """The ``session:`` keys of the sessions namespace (NIMBUS_SESSIONS)."""
    return [KeyRange(SessionCacheClient(conf.kv_store()).namespace, SESSION_PREFIX)]


def cache_ranges() -> list[KeyRange]:
    """The cache namespaces, whole: the KV clients' (NIMBUS_CACHE, also the rate limiter's)
    and the ``LOCATION`` of every ``nimbus.cache.KVCache`` in ``CACHES``. A namespace that
    also holds model objects is refused (``ImproperlyConfigured``) rather than left out."""
    kv = conf.kv_store()
    namespaces = {
        CacheClient(kv, "backup").namespace,
        RateLimiterClient(kv).namespace,
        *(cache.namespace for cache in caches.all() if isinstance(cache, KVCache)),
    }
    routed = dict(conf.load_settings().namespaces or {})
    for model in registry:
        namespace = routed.get(model._meta.kv_class, model._meta.namespace)
        if namespace in namespaces:
            raise ImproperlyConfigured(
                f"the cache namespace {namespace} also holds {model._meta.name} objects: "
                "give the cache its own LOCATION"
            )
    return [KeyRange(namespace) for namespace in sorted(namespaces)]
