"""settings.NIMBUS, environment URLs and override_settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from datastore import NotSupported
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from datastore.backends.redis import RedisKVStore
from datastore.backends.sqlite import SQLiteDatabase, SQLiteKVStore
from nimbus import conf
from tests.support import REDIS_URL, redis_or_skip


def test_defaults_in_tests_are_memory() -> None:
    assert isinstance(conf.kv_store(), MemoryKVStore)
    assert isinstance(conf.sql_database(), MemorySQLDatabase)
    assert conf.get_datastore().kv is conf.kv_store()


def test_project_default_is_embedded_sqlite() -> None:
    from nimbus import settings as project_settings

    nimbus: dict[str, Any] = project_settings.NIMBUS
    assert nimbus["KV"]["BACKEND"] == "datastore.backends.sqlite.SQLiteKVStore"
    assert nimbus["D1"]["BACKEND"] == "datastore.backends.sqlite.SQLiteDatabase"
    assert nimbus["KV"]["OPTIONS"]["path"].endswith("kv.sqlite3")


def test_override_settings_rebuilds_the_backends(tmp_path) -> None:
    before = conf.kv_store()
    path = str(tmp_path / "kv.sqlite3")
    override = {
        "KV": {"BACKEND": "datastore.backends.sqlite.SQLiteKVStore", "OPTIONS": {"path": path}},
        "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
    }
    with override_settings(NIMBUS=override):
        inside = conf.kv_store()
        assert isinstance(inside, SQLiteKVStore) and inside.path == path
        conf.get_datastore().auth("u1").put("PROJECT", "p1", {"n": 1})
    after = conf.kv_store()
    assert after is not before and isinstance(after, MemoryKVStore)
    assert SQLiteKVStore(path).get("NIMBUS_PROJECTS", "project:p1") is not None


def test_env_urls_override_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(conf.KV_URL_ENV, f"sqlite:///{tmp_path}/env-kv.sqlite3")
    monkeypatch.setenv(conf.D1_URL_ENV, f"sqlite:///{tmp_path}/env-meta.sqlite3")
    conf.reset()
    kv, sql = conf.kv_store(), conf.sql_database()
    assert isinstance(kv, SQLiteKVStore) and kv.path == f"{tmp_path}/env-kv.sqlite3"
    assert isinstance(sql, SQLiteDatabase) and sql.path == f"{tmp_path}/env-meta.sqlite3"


def test_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    redis_or_skip()
    monkeypatch.setenv(conf.KV_URL_ENV, f"{REDIS_URL}?key_prefix=conftest:")
    conf.reset()
    kv = conf.kv_store()
    assert isinstance(kv, RedisKVStore)
    assert (kv.url, kv.key_prefix) == (REDIS_URL, "conftest:")
    ds = conf.get_datastore()
    ds.auth("u1").put("PROJECT", "from-env", {"ok": True})
    assert ds.auth("u1").get("PROJECT", "from-env") == {"ok": True, "_auth": ["u1"]}
    assert ds.system().delete("PROJECT", "from-env")


@pytest.mark.parametrize(
    ("kv_url", "message"),
    [
        ("ftp://example", "unsupported scheme 'ftp'"),
        ("sqlite://host/path", "sqlite:///relative/path"),
        ("sqlite:///", "names no database file"),
    ],
)
def test_bad_urls_are_clear_errors(monkeypatch: pytest.MonkeyPatch, kv_url: str, message) -> None:
    monkeypatch.setenv(conf.KV_URL_ENV, kv_url)
    conf.reset()
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.kv_store()


MEMORY_D1 = {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"}
MEMORY_KV = {"BACKEND": "datastore.backends.memory.MemoryKVStore"}


@pytest.mark.parametrize(
    ("nimbus", "message"),
    [
        ({"D1": MEMORY_D1}, r"NIMBUS\['KV'\] must be a dict with a 'BACKEND'"),
        ({"KV": MEMORY_KV, "D1": {}}, r"NIMBUS\['D1'\] must be a dict"),
        ({"KV": {"BACKEND": "no.such.Backend"}, "D1": MEMORY_D1}, "cannot be imported"),
        ({"KV": {**MEMORY_KV, "OPTIONS": {"x": 1}}, "D1": MEMORY_D1}, "do not fit"),
        ({"KV": {**MEMORY_KV, "OPTIONS": "path"}, "D1": MEMORY_D1}, "must be a dict"),
        ({"KV": MEMORY_KV, "D1": MEMORY_D1, "ADAPTER": "s3"}, "must be 'kv' or 'sql'"),
        ("not a dict", "settings.NIMBUS must be a dict"),
    ],
)
def test_bad_settings_are_clear_errors(settings, nimbus: dict, message: str) -> None:
    settings.NIMBUS = nimbus
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.kv_store()


def test_sql_adapter_is_chosen_by_configuration(settings) -> None:
    """The same calling code runs on the D1 objects/lists tables."""

    def app_code() -> tuple[Any, Any]:
        db = conf.get_datastore().auth("user_123")
        db.put("PROJECT", "proj_456", {"name": "My Project"})
        db.list_add("projects", "user_123", "proj_456")
        return db.get("PROJECT", "proj_456"), db.get_list("projects", "user_123")

    on_kv = app_code()
    settings.NIMBUS = {**settings.NIMBUS, "ADAPTER": "sql"}
    on_sql = app_code()
    assert on_kv == on_sql
    rows = conf.sql_database().execute("SELECT class, id FROM objects")
    assert rows == [{"class": "project", "id": "proj_456"}]


def test_cloudflare_urls(monkeypatch: pytest.MonkeyPatch, cloudflare_api) -> None:
    """KV and D1 on the local Cloudflare API, configured only through the environment."""
    from urllib.parse import quote

    from datastore.backends.cloudflare import CloudflareD1Database, CloudflareKVStore
    from tests.cloudflare import local_api

    cloudflare_api.reset()
    base = quote(cloudflare_api.base_url, safe="")
    namespaces = ",".join(f"{name}={id_}" for name, id_ in local_api.NAMESPACE_IDS.items())
    monkeypatch.setenv(conf.TOKEN_ENV, local_api.API_TOKEN)
    monkeypatch.setenv(conf.KV_NAMESPACES_ENV, namespaces)
    monkeypatch.setenv(conf.KV_URL_ENV, f"cloudflare://{local_api.ACCOUNT_ID}?base_url={base}")
    monkeypatch.setenv(
        conf.D1_URL_ENV,
        f"d1://{local_api.ACCOUNT_ID}/{local_api.D1_DATABASE_ID}?base_url={base}",
    )
    conf.reset()
    assert isinstance(conf.kv_store(), CloudflareKVStore)
    assert isinstance(conf.sql_database(), CloudflareD1Database)
    assert conf.kv_store().status().healthy

    def app_code() -> tuple[Any, Any]:
        db = conf.get_datastore().auth("user_123")
        db.put("PROJECT", "proj_456", {"name": "My Project"})
        db.list_add("projects", "user_123", "proj_456")
        return db.get("PROJECT", "proj_456"), db.get_list("projects", "user_123")

    project, listed = app_code()
    assert project["name"] == "My Project" and listed == ["proj_456"]
    # objects in D1 need batches that are one transaction, which REST D1 does not promise
    monkeypatch.setenv(conf.ADAPTER_ENV, "sql")
    conf.reset()
    with pytest.raises(NotSupported, match="one transaction"):
        conf.get_datastore()


def test_cloudflare_urls_configure_the_request_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Both backends on one token share one budget, shared between processes by its store."""
    store = f"sqlite:///{tmp_path / 'budget.sqlite3'}"
    query = f"budget_limit=600&budget_period=120&budget_max_wait=5&budget_store={store}"
    monkeypatch.setenv(conf.TOKEN_ENV, "token-a")
    monkeypatch.setenv(conf.KV_NAMESPACES_ENV, "NIMBUS_PAGES=ns1")
    monkeypatch.setenv(conf.KV_URL_ENV, f"cloudflare://acct?{query}")
    monkeypatch.setenv(conf.D1_URL_ENV, f"d1://acct/db1?{query}")
    conf.reset()
    kv, sql = conf.kv_store(), conf.sql_database()
    assert kv.budget is sql.budget  # type: ignore[attr-defined]
    budget = kv.budget  # type: ignore[attr-defined]
    assert (budget.limit, budget.period, budget.max_wait) == (600, 120.0, 5.0)
    assert budget.store.path == str(tmp_path / "budget.sqlite3")
    monkeypatch.setenv(conf.KV_URL_ENV, "cloudflare://acct?budget_limit=many")
    conf.reset()
    with pytest.raises(ImproperlyConfigured, match="budget_limit must be a number"):
        conf.kv_store()
    conf.reset()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({conf.KV_URL_ENV: "cloudflare://acct"}, "CLOUDFLARE_API_TOKEN"),
        ({conf.KV_URL_ENV: "cloudflare://acct", conf.TOKEN_ENV: "t"}, "NIMBUS_KV_NAMESPACES"),
        (
            {
                conf.KV_URL_ENV: "cloudflare://acct",
                conf.TOKEN_ENV: "t",
                conf.KV_NAMESPACES_ENV: "NIMBUS_PAGES",
            },
            "expected NAME=id",
        ),
        ({conf.KV_URL_ENV: "cloudflare://", conf.TOKEN_ENV: "t"}, "cloudflare://ACCOUNT_ID"),
        ({conf.D1_URL_ENV: "d1://acct", conf.TOKEN_ENV: "t"}, "d1://ACCOUNT_ID/DATABASE_ID"),
    ],
)
def test_bad_cloudflare_config(monkeypatch: pytest.MonkeyPatch, env: dict, message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    conf.reset()
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.kv_store() if conf.KV_URL_ENV in env else conf.sql_database()


def test_datamodels_use_the_configured_stores() -> None:
    from datamodel import create_tables
    from tests.datamodel.models import Note

    create_tables(conf.sql_database(), [Note])
    note = Note.objects.auth("u1").create(body="configured")  # no explicit connection
    assert conf.kv_store().get("NIMBUS_NOTES", f"note:{note.pk}") is not None
    assert conf.sql_database().execute("SELECT slug FROM note_meta") == [{"slug": "configured"}]


GATEWAY_SECRET = "a-gateway-secret-of-some-length-0123456789"


def gateway_settings(url: str = "https://gw.example.com", **options: Any) -> dict[str, Any]:
    """NIMBUS with KV and D1 on one gateway (``namespaces`` for KV only)."""
    shared = {"url": url, **options}
    namespaces = shared.pop("namespaces", None)
    return {
        "KV": {
            "BACKEND": conf.GATEWAY_KV,
            "OPTIONS": {**shared, **({"namespaces": namespaces} if namespaces else {})},
        },
        "D1": {"BACKEND": conf.GATEWAY_D1, "OPTIONS": shared},
    }


def test_gateway_urls(monkeypatch: pytest.MonkeyPatch, cloudflare_api) -> None:
    """KV and D1 on the gateway Worker in Miniflare, configured only through the environment:
    one client for both, and every namespace the project uses."""
    from datastore.backends.gateway import GatewayD1Database, GatewayKVStore
    from tests.cloudflare import local_api
    from tests.datamodel.models import Note

    cloudflare_api.reset()
    url = "gateway+" + cloudflare_api.url.rstrip("/")
    monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, local_api.GATEWAY_SECRET)
    monkeypatch.setenv(conf.KV_URL_ENV, url)
    monkeypatch.setenv(conf.D1_URL_ENV, url)
    conf.reset()
    kv, sql = conf.kv_store(), conf.sql_database()
    assert isinstance(kv, GatewayKVStore) and isinstance(sql, GatewayD1Database)
    assert kv.client is sql.client and kv.client.url == cloudflare_api.url.rstrip("/")
    assert kv.client.limits.plan == "paid"
    assert kv.namespaces() == conf.project_namespaces()
    assert {"NIMBUS_USERS", "NIMBUS_PAGES", Note._meta.namespace} <= set(kv.namespaces())
    assert kv.status().healthy

    def app_code() -> tuple[Any, Any]:
        db = conf.get_datastore().auth("user_123")
        db.put("PROJECT", "proj_456", {"name": "My Project"})
        db.list_add("projects", "user_123", "proj_456")
        return db.get("PROJECT", "proj_456"), db.get_list("projects", "user_123")

    on_kv = app_code()
    monkeypatch.setenv(conf.ADAPTER_ENV, "sql")
    conf.reset()
    assert app_code() == on_kv
    assert conf.sql_database().execute("SELECT id FROM objects") == [{"id": "proj_456"}]


def test_gateway_plan_in_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, GATEWAY_SECRET)
    monkeypatch.setenv(conf.KV_URL_ENV, "gateway+https://gw.example.com/?plan=free")
    monkeypatch.setenv(conf.D1_URL_ENV, "gateway+https://gw.example.com?plan=free")
    conf.reset()
    kv, sql = conf.kv_store(), conf.sql_database()
    assert kv.client is sql.client  # type: ignore[attr-defined]
    assert kv.client.url == "https://gw.example.com"  # type: ignore[attr-defined]
    assert (kv.client.limits.plan, kv.client.limits.d1_statements) == ("free", 50)  # type: ignore[attr-defined]


def test_gateway_settings(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """In settings the secret may come from NIMBUS_GATEWAY_SECRET and the namespaces default to
    the project's; KV and D1 built with the same url, secret and plan share one client."""
    monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, GATEWAY_SECRET)
    settings.NIMBUS = gateway_settings(plan="free")
    settings.CACHES = {
        **settings.CACHES,
        "extra": {"BACKEND": conf.KV_CACHE_BACKEND, "LOCATION": "NIMBUS_EXTRA_CACHE"},
    }
    kv, sql = conf.kv_store(), conf.sql_database()
    assert kv.client is sql.client  # type: ignore[attr-defined]
    assert kv.client.secret == GATEWAY_SECRET  # type: ignore[attr-defined]
    assert kv.client.limits.plan == "free"  # type: ignore[attr-defined]
    assert "NIMBUS_EXTRA_CACHE" in kv.namespaces()
    assert kv.namespaces() == conf.project_namespaces()

    settings.NIMBUS = gateway_settings(secret="another", namespaces=["NIMBUS_PAGES"])
    kv, sql = conf.kv_store(), conf.sql_database()
    assert kv.client is sql.client and kv.client.secret == "another"  # type: ignore[attr-defined]
    assert kv.namespaces() == ["NIMBUS_PAGES"]


def test_project_namespaces_follow_the_routes(settings) -> None:
    settings.NIMBUS = {**settings.NIMBUS, "NAMESPACES": {"project": "NIMBUS_PROJECTS_V2"}}
    namespaces = conf.project_namespaces(conf.load_settings().namespaces)
    assert "NIMBUS_PROJECTS_V2" in namespaces and "NIMBUS_PROJECTS" not in namespaces
    assert namespaces == sorted(set(namespaces))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({conf.KV_URL_ENV: "gateway+https://gw.example.com"}, "NIMBUS_GATEWAY_SECRET"),
        (
            {conf.KV_URL_ENV: "gateway+https://gw:secret@gw.example.com"},
            "never put the gateway's secret in its URL",
        ),
        ({conf.KV_URL_ENV: "gateway+https://gw.example.com/base"}, "root of its host"),
        ({conf.D1_URL_ENV: "gateway+https://"}, "must be https://HOST"),
        ({conf.KV_URL_ENV: "gateway+ftp://gw.example.com"}, r"unsupported scheme .gateway\+ftp."),
        ({conf.KV_URL_ENV: "gateway+https://gw.example.com?plan=pro"}, "'free' or 'paid'"),
        ({conf.D1_URL_ENV: "gateway+https://gw.example.com?secret=x"}, "unknown option 'secret'"),
    ],
)
def test_bad_gateway_urls(monkeypatch: pytest.MonkeyPatch, env: dict, message: str) -> None:
    if message != "NIMBUS_GATEWAY_SECRET":
        monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, GATEWAY_SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    conf.reset()
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.kv_store() if conf.KV_URL_ENV in env else conf.sql_database()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "NIMBUS_GATEWAY_SECRET"),
        ({"secret": "s", "url": ""}, r"NIMBUS\['KV'\]\['OPTIONS'\] need the gateway's 'url'"),
        ({"secret": "s", "url": "https://gw.example.com/v1"}, "root of its host"),
        ({"secret": "s", "plan": "enterprise"}, "'free' or 'paid'"),
    ],
)
def test_bad_gateway_settings(settings, options: dict, message: str) -> None:
    settings.NIMBUS = gateway_settings(**options)
    with pytest.raises(ImproperlyConfigured, match=message):
        conf.kv_store()


def gateway_checks() -> dict[str, list[str]]:
    from django.core.checks import run_checks

    found: dict[str, list[str]] = {}
    for message in run_checks():
        if message.id in ("nimbus.E010", "nimbus.W002"):
            found.setdefault(message.id, []).append(message.msg)
    return found


def test_gateway_checks(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """W002 when KV and D1 cannot combine requests; E010 when the KV store's namespaces leave
    out a model's."""
    monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, GATEWAY_SECRET)
    settings.NIMBUS = gateway_settings()
    assert gateway_checks() == {}

    settings.NIMBUS = {**gateway_settings(), "D1": MEMORY_D1}
    assert gateway_checks() == {
        "nimbus.W002": [
            "only the KV store is on the gateway: a save and its metadata, or a page and its "
            "objects, cannot go in one gateway request"
        ]
    }
    other = gateway_settings("https://other.example.com", plan="free")
    settings.NIMBUS = {**gateway_settings(), "D1": other["D1"]}
    [warning] = gateway_checks()["nimbus.W002"]
    assert warning.startswith("the KV and D1 gateway options differ in url, plan:")

    settings.NIMBUS = gateway_settings(namespaces=["NIMBUS_USERS", "NIMBUS_PAGES"])
    errors = gateway_checks()["nimbus.E010"]
    assert "PROJECT stores objects in NIMBUS_PROJECTS, which the gateway KV store's " in "".join(
        errors
    )
    assert not any("NIMBUS_USERS" in e or "NIMBUS_PAGES" in e for e in errors)


def test_the_sql_adapter_on_rest_d1_is_a_check_error(settings, monkeypatch) -> None:
    from nimbus.checks import check_configuration

    settings.NIMBUS = {
        "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
        "D1": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareD1Database",
            "OPTIONS": {"account_id": "a", "api_token": "t", "database_id": "d"},
        },
        "ADAPTER": "sql",
    }
    assert [message.id for message in check_configuration()] == ["nimbus.E011"]
    settings.NIMBUS = {**settings.NIMBUS, "ADAPTER": "kv"}
    assert check_configuration() == []
