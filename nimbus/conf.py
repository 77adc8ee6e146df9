"""The configured datastore: ``settings.NIMBUS`` plus environment URLs, built once per process.

``settings.NIMBUS`` has the shape of ``CACHES``/``STORAGES``::

    NIMBUS = {
        "KV": {"BACKEND": "datastore.backends.redis.RedisKVStore",
               "OPTIONS": {"url": "redis://127.0.0.1:6379/0"}},
        "D1": {"BACKEND": "datastore.backends.sqlite.SQLiteDatabase",
               "OPTIONS": {"path": "var/metadata.sqlite3"}},
        "ADAPTER": "kv",          # objects in KV keys; "sql" puts them in the D1 tables
        "NAMESPACES": {...},      # optional: class -> KV namespace
    }

For deploys the environment wins: ``NIMBUS_KV_URL``, ``NIMBUS_D1_URL``, ``NIMBUS_ADAPTER``.
The gateway Worker (``worker/gateway.js``) is ``gateway+https://HOST`` for both, its secret in
``NIMBUS_GATEWAY_SECRET``; its KV store lists by default every namespace the project uses.
Backends are thread-safe, so one instance serves the whole process; a change of the ``NIMBUS``
setting (``override_settings``, pytest-django's ``settings``) closes and rebuilds them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from datamodel import Connection, registry
from datastore import Datastore, DatastoreError, KVStore, Routing, SQLDatabase
from datastore.routing import DEFAULT_CLASS_NAMESPACES

__all__ = [
    "BackendSpec",
    "NimbusSettings",
    "get_connection",
    "get_datastore",
    "kv_store",
    "load_settings",
    "parse_url",
    "project_namespaces",
    "reset",
    "sql_database",
]

KV_URL_ENV = "NIMBUS_KV_URL"
D1_URL_ENV = "NIMBUS_D1_URL"
ADAPTER_ENV = "NIMBUS_ADAPTER"
TOKEN_ENV = "CLOUDFLARE_API_TOKEN"
KV_NAMESPACES_ENV = "NIMBUS_KV_NAMESPACES"
GATEWAY_SECRET_ENV = "NIMBUS_GATEWAY_SECRET"
GATEWAY_KV = "datastore.backends.gateway.GatewayKVStore"
GATEWAY_D1 = "datastore.backends.gateway.GatewayD1Database"
GATEWAY_PLANS = ("free", "paid")
KV_CACHE_BACKEND = "nimbus.cache.KVCache"


@dataclass(frozen=True)
class BackendSpec:
    """A backend class path and the keyword arguments it is built with."""

    backend: str
    options: Mapping[str, Any]

    def build(self, role: str) -> Any:
        try:
            backend_class = import_string(self.backend)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"NIMBUS[{role!r}]['BACKEND'] = {self.backend!r} cannot be imported: {exc}"
            ) from exc
        try:
            return backend_class(**self.options)
        except TypeError as exc:
            raise ImproperlyConfigured(
                f"NIMBUS[{role!r}]['OPTIONS'] do not fit {self.backend}: {exc}"
            ) from exc
        except DatastoreError as exc:
            raise ImproperlyConfigured(f"NIMBUS[{role!r}] cannot be opened: {exc}") from exc


@dataclass(frozen=True)
class NimbusSettings:
    kv: BackendSpec
    d1: BackendSpec
    adapter: str
    namespaces: Mapping[str, str] | None


def _sqlite_path(url: str, netloc: str, path: str) -> str:
    # sqlite:///var/kv.sqlite3 is relative to the working directory, sqlite:////abs is absolute
    if netloc:
        raise ImproperlyConfigured(f"{url!r}: use sqlite:///relative/path or sqlite:////abs/path")
    if path in ("", "/"):
        raise ImproperlyConfigured(f"{url!r} names no database file")
    return path[1:] if path.startswith("/") else path


def _cloudflare_token() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ImproperlyConfigured(f"Cloudflare backends need the API token in {TOKEN_ENV}")
    return token


def _kv_namespaces() -> dict[str, str]:
    """``NIMBUS_KV_NAMESPACES``: ``NIMBUS_PAGES=<id>,NIMBUS_PROJECTS=<id>`` or a JSON object."""
    raw = os.environ.get(KV_NAMESPACES_ENV, "").strip()
    if not raw:
        raise ImproperlyConfigured(
            f"Cloudflare KV needs {KV_NAMESPACES_ENV}, e.g. NIMBUS_PAGES=<namespace id>,..."
        )
    if raw.startswith("{"):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{KV_NAMESPACES_ENV} is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ImproperlyConfigured(f"{KV_NAMESPACES_ENV} must be a JSON object")
        return {str(name): str(namespace_id) for name, namespace_id in parsed.items()}
    namespaces = {}
    for pair in raw.split(","):
        name, sep, namespace_id = pair.strip().partition("=")
        if not sep or not name or not namespace_id:
            raise ImproperlyConfigured(f"{KV_NAMESPACES_ENV}: expected NAME=id, got {pair!r}")
        namespaces[name] = namespace_id
    return namespaces


_BUDGET_OPTIONS = {
    "budget_limit": int,
    "budget_period": float,
    "budget_max_wait": float,
    "budget_store": str,
}


def _cloudflare_options(url: str, query: Mapping[str, str]) -> dict[str, Any]:
    """``base_url`` and the request budget's options from a Cloudflare URL's query."""
    options: dict[str, Any] = {"base_url": query["base_url"]} if "base_url" in query else {}
    for name, kind in _BUDGET_OPTIONS.items():
        if name in query:
            try:
                options[name] = kind(query[name])
            except ValueError as exc:
                raise ImproperlyConfigured(f"{url!r}: {name} must be a number") from exc
    return options


def _gateway_secret() -> str:
    secret = os.environ.get(GATEWAY_SECRET_ENV, "")
    if not secret:
        raise ImproperlyConfigured(
            f"the gateway backends need the gateway's shared secret in {GATEWAY_SECRET_ENV}"
        )
    return secret


def _gateway_plan(plan: object, where: str) -> str:
    if plan not in GATEWAY_PLANS:
        raise ImproperlyConfigured(
            f"{where}: the gateway plan must be 'free' or 'paid' (the Workers plan of the "
            f"account running it), not {plan!r}"
        )
    return str(plan)


def _gateway_root(url: str, where: str) -> str:
    """The gateway's ``https://HOST[:PORT]``: it answers at the root of its host."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ImproperlyConfigured(
            f"{where}: never put the gateway's secret in its URL; set {GATEWAY_SECRET_ENV}"
        )
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ImproperlyConfigured(
            f"{where}: the gateway URL must be https://HOST[:PORT], not {url!r} (the gateway "
            "answers at the root of its host: /v1/run, /v1/status)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _gateway_url(url: str, role: str) -> dict[str, Any]:
    """``gateway+https://HOST?plan=free`` -> the options both gateway backends share."""
    env = KV_URL_ENV if role == "KV" else D1_URL_ENV
    base, _, query_string = url.partition("?")
    query = dict(parse_qsl(query_string, keep_blank_values=True))
    unknown = sorted(set(query) - {"plan"})
    if unknown:
        raise ImproperlyConfigured(
            f"{env}: unknown option {unknown[0]!r} in the gateway URL (only ?plan=free|paid)"
        )
    return {
        "url": _gateway_root(base.split("+", 1)[1], env),
        "secret": _gateway_secret(),
        "plan": _gateway_plan(query.get("plan", "paid"), env),
    }


def parse_url(url: str, role: str) -> BackendSpec:
    """Turn ``NIMBUS_KV_URL`` / ``NIMBUS_D1_URL`` into a backend spec.

    KV: ``memory://``, ``sqlite:///path``, ``redis://host:port/db`` (``rediss://`` too;
    ``?key_prefix=app:`` sets the Redis key prefix), ``cloudflare://ACCOUNT_ID`` (token in
    ``CLOUDFLARE_API_TOKEN``, namespace ids in ``NIMBUS_KV_NAMESPACES``). D1: ``memory://``,
    ``sqlite:///path``, ``d1://ACCOUNT_ID/DATABASE_ID``. Cloudflare URLs take
    ``?base_url=...`` to point at another API endpoint, and the API token's request budget:
    ``budget_limit`` (requests, default 1200), ``budget_period`` (seconds, 300),
    ``budget_max_wait`` (seconds a request may wait for room, 60) and ``budget_store``
    (``sqlite:///path`` or ``redis://...`` to share the budget between processes).
    Both: ``gateway+https://HOST`` (the gateway Worker; secret in
    ``NIMBUS_GATEWAY_SECRET``, ``?plan=free`` on the Workers Free plan, default ``paid``).
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    scheme = parts.scheme.lower()
    if scheme in ("gateway+https", "gateway+http"):
        gateway = _gateway_url(url, role)
        return BackendSpec(GATEWAY_KV if role == "KV" else GATEWAY_D1, gateway)
    if role == "KV":
        if scheme == "memory":
            return BackendSpec("datastore.backends.memory.MemoryKVStore", {})
        if scheme == "sqlite":
            path = _sqlite_path(url, parts.netloc, parts.path)
            return BackendSpec("datastore.backends.sqlite.SQLiteKVStore", {"path": path})
        if scheme in ("redis", "rediss"):
            options: dict[str, Any] = {"url": url.split("?", 1)[0]}
            if "key_prefix" in query:
                options["key_prefix"] = query["key_prefix"]
            return BackendSpec("datastore.backends.redis.RedisKVStore", options)
        if scheme == "cloudflare":
            if not parts.netloc:
                raise ImproperlyConfigured(f"{url!r}: use cloudflare://ACCOUNT_ID")
            options = {
                "account_id": parts.netloc,
                "api_token": _cloudflare_token(),
                "namespaces": _kv_namespaces(),
                **_cloudflare_options(url, query),
            }
            return BackendSpec("datastore.backends.cloudflare.CloudflareKVStore", options)
    else:
        if scheme == "memory":
            return BackendSpec("datastore.backends.memory.MemorySQLDatabase", {})
        if scheme == "sqlite":
            path = _sqlite_path(url, parts.netloc, parts.path)
            return BackendSpec("datastore.backends.sqlite.SQLiteDatabase", {"path": path})
        if scheme == "d1":
            database_id = parts.path.strip("/")
            if not parts.netloc or not database_id or "/" in database_id:
                raise ImproperlyConfigured(f"{url!r}: use d1://ACCOUNT_ID/DATABASE_ID")
            options = {
                "account_id": parts.netloc,
                "api_token": _cloudflare_token(),
                "database_id": database_id,
                **_cloudflare_options(url, query),
            }
            return BackendSpec("datastore.backends.cloudflare.CloudflareD1Database", options)
    env = KV_URL_ENV if role == "KV" else D1_URL_ENV
    raise ImproperlyConfigured(f"{env}={url!r}: unsupported scheme {parts.scheme!r}")


def _spec(config: Mapping[str, Any], role: str) -> BackendSpec:
    env = KV_URL_ENV if role == "KV" else D1_URL_ENV
    if os.environ.get(env):
        return parse_url(os.environ[env], role)
    entry = config.get(role)
    if not isinstance(entry, Mapping) or "BACKEND" not in entry:
        raise ImproperlyConfigured(
            f"NIMBUS[{role!r}] must be a dict with a 'BACKEND' (and optional 'OPTIONS'), "
            f"or set {env}"
        )
    options = entry.get("OPTIONS", {})
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"NIMBUS[{role!r}]['OPTIONS'] must be a dict")
    return BackendSpec(str(entry["BACKEND"]), dict(options))


def project_namespaces(overrides: Mapping[str, str] | None = None) -> list[str]:
    """Every KV namespace the project uses: the Nimbus classes', every DataModel's, those of
    ``NIMBUS['NAMESPACES']`` (``overrides``) and each ``nimbus.cache.KVCache`` ``LOCATION``."""
    routes: dict[str, str] = {}
    for routed in (DEFAULT_CLASS_NAMESPACES, registry.routes(), overrides or {}):
        routes.update({class_name.upper(): namespace for class_name, namespace in routed.items()})
    caches = getattr(settings, "CACHES", {}) or {}
    locations = {
        entry.get("LOCATION") or "NIMBUS_CACHE"
        for entry in caches.values()
        if isinstance(entry, Mapping) and entry.get("BACKEND") == KV_CACHE_BACKEND
    }
    return sorted({*routes.values(), *locations})


def is_gateway(spec: BackendSpec) -> bool:
    """Whether ``spec`` builds one of the gateway backends (``GatewayKVStore``,
    ``GatewayD1Database``)."""
    return spec.backend in (GATEWAY_KV, GATEWAY_D1)


def _complete_gateway(
    spec: BackendSpec, role: str, namespaces: Mapping[str, str] | None
) -> BackendSpec:
    """A gateway spec with its defaults: the secret from ``NIMBUS_GATEWAY_SECRET``, plan
    ``paid`` and, for KV, every namespace the project uses."""
    if not is_gateway(spec):
        return spec
    options = dict(spec.options)
    where = f"NIMBUS[{role!r}]['OPTIONS']"
    if "client" not in options:  # a client built by hand is used as it is
        if not options.get("url"):
            raise ImproperlyConfigured(f"{where} need the gateway's 'url' (https://HOST)")
        options["url"] = _gateway_root(str(options["url"]), where)
        if not options.get("secret"):
            options["secret"] = _gateway_secret()
    options["plan"] = _gateway_plan(options.get("plan", "paid"), where)
    if spec.backend == GATEWAY_KV and not options.get("namespaces"):
        options["namespaces"] = project_namespaces(namespaces)
    return BackendSpec(spec.backend, options)


def load_settings() -> NimbusSettings:
    """Read and validate ``settings.NIMBUS`` and the environment overrides."""
    config = getattr(settings, "NIMBUS", None)
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured("settings.NIMBUS must be a dict with 'KV' and 'D1' entries")
    adapter = os.environ.get(ADAPTER_ENV) or config.get("ADAPTER", "kv")
    if adapter not in ("kv", "sql"):
        raise ImproperlyConfigured(f"NIMBUS adapter {adapter!r} must be 'kv' or 'sql'")
    namespaces = config.get("NAMESPACES")
    if namespaces is not None and not isinstance(namespaces, Mapping):
        raise ImproperlyConfigured("NIMBUS['NAMESPACES'] must map class names to namespaces")
    kv = _complete_gateway(_spec(config, "KV"), "KV", namespaces)
    d1 = _complete_gateway(_spec(config, "D1"), "D1", namespaces)
    return NimbusSettings(kv, d1, adapter, namespaces)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.kv: KVStore | None = None
        self.sql: SQLDatabase | None = None
        self.datastore: Datastore | None = None


_state = _State()


def kv_store() -> KVStore:
    """The process-wide KV store."""
    with _state.lock:
        if _state.kv is None:
            _state.kv = load_settings().kv.build("KV")
        return _state.kv


def sql_database() -> SQLDatabase:
    """The process-wide SQL database (local SQLite or D1)."""
    with _state.lock:
        if _state.sql is None:
            _state.sql = load_settings().d1.build("D1")
        return _state.sql


def get_datastore() -> Datastore:
    """The process-wide ``Datastore`` facade, on the configured adapter."""
    with _state.lock:
        if _state.datastore is None:
            config = load_settings()
            # Default Nimbus classes, then every declared DataModel, then explicit settings.
            classes = {**DEFAULT_CLASS_NAMESPACES, **registry.routes(), **(config.namespaces or {})}
            try:
                routing = Routing(classes=classes, lists=registry.list_routes())
            except DatastoreError as exc:
                raise ImproperlyConfigured(f"NIMBUS['NAMESPACES']: {exc}") from exc
            if config.adapter == "sql":
                datastore = Datastore(sql=sql_database(), adapter="sql", routing=routing)
                # CREATE TABLE IF NOT EXISTS: one idempotent batch per process.
                datastore.adapter.create_tables()  # type: ignore[attr-defined]
                _state.datastore = datastore
            else:
                _state.datastore = Datastore(kv_store(), sql=None, routing=routing)
        return _state.datastore


def get_connection() -> Connection:
    """The stores DataModels use: the datastore for objects, the SQL database for metadata."""
    return Connection(get_datastore(), sql_database())


def reset() -> None:
    """Close the backends; the next call builds them again from the current settings."""
    with _state.lock:
        for store in (_state.kv, _state.sql):
            if store is not None:
                store.close()
        _state.kv = _state.sql = _state.datastore = None


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "NIMBUS":
        reset()
