"""manage.py nimbus_gateway: the wrangler configuration from the settings, and the status of
the running gateway (the Worker in Miniflare)."""

from __future__ import annotations

import json
import tomllib
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from datastore.routing import DEFAULT_CLASS_NAMESPACES
from nimbus import conf, gateway
from tests.datamodel.models import Note
from tests.nimbus.test_conf import GATEWAY_SECRET, gateway_settings

WORKER = Path(__file__).resolve().parents[2] / "worker"


def run(*args: str) -> str:
    out = StringIO()
    call_command("nimbus_gateway", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def bindings(config: dict[str, Any]) -> list[str]:
    return [entry["binding"] for entry in config["kv_namespaces"]]


def test_config_is_wrangler_toml_for_every_namespace() -> None:
    config = tomllib.loads(run("config"))
    assert config["main"] == "gateway.js" and config["name"] == "nimbus-gateway"
    assert config["compatibility_date"]
    assert bindings(config) == conf.project_namespaces()
    assert {"NIMBUS_USERS", "NIMBUS_PAGES", "NIMBUS_CACHE", Note._meta.namespace} <= set(
        bindings(config)
    )
    assert config["vars"]["NIMBUS_KV_NAMESPACES"].split(",") == bindings(config)
    assert config["vars"]["NIMBUS_GATEWAY_PLAN"] == "paid"
    assert all(
        entry["id"] == f"<{entry['binding']} namespace id>" for entry in config["kv_namespaces"]
    )
    [database] = config["d1_databases"]
    assert database == {
        "binding": "DB",
        "database_name": "nimbus",
        "database_id": "<nimbus database id>",
    }
    assert "NIMBUS_GATEWAY_SECRET" not in config["vars"]


def test_config_of_the_gateway_settings(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway KV store's namespaces and plan; JSON the same configuration."""
    monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, GATEWAY_SECRET)
    namespaces = ["NIMBUS_USERS", *conf.project_namespaces()]
    settings.NIMBUS = gateway_settings(plan="free", namespaces=namespaces)
    config = tomllib.loads(run("config", "--name", "gw", "--max-body-bytes", "1048576"))
    assert bindings(config) == sorted(set(namespaces))
    assert config["vars"] == {
        "NIMBUS_GATEWAY_PLAN": "free",
        "NIMBUS_KV_NAMESPACES": ",".join(sorted(set(namespaces))),
        "NIMBUS_GATEWAY_MAX_BODY_BYTES": "1048576",
    }
    assert config["name"] == "gw"
    as_json = json.loads(
        run("config", "--format", "json", "--name", "gw", "--max-body-bytes", "1048576")
    )
    assert as_json == config
    assert tomllib.loads(run("config", "--plan", "paid"))["vars"]["NIMBUS_GATEWAY_PLAN"] == "paid"


def test_config_takes_the_ids_of_the_rest_settings(settings) -> None:
    """Moving from the REST backends: the namespace and database ids are known."""
    ids = {name: f"id-{name.lower()}" for name in conf.project_namespaces()}
    ids["PAGES"] = ids.pop("NIMBUS_PAGES")  # the REST mapping may leave out NIMBUS_
    rest = {"account_id": "acct", "api_token": "token"}
    settings.NIMBUS = {
        "KV": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareKVStore",
            "OPTIONS": {**rest, "namespaces": ids},
        },
        "D1": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareD1Database",
            "OPTIONS": {**rest, "database_id": "db-123"},
        },
    }
    out = run("config", "--database-name", "nimbus-prod")
    assert "<" not in out  # no placeholder left
    config = tomllib.loads(out)
    assert {e["binding"]: e["id"] for e in config["kv_namespaces"]}[
        "NIMBUS_PAGES"
    ] == "id-nimbus_pages"
    assert config["d1_databases"][0]["database_id"] == "db-123"
    assert config["d1_databases"][0]["database_name"] == "nimbus-prod"


def test_config_refuses_a_namespace_that_cannot_be_a_binding(settings) -> None:
    settings.NIMBUS = {**settings.NIMBUS, "NAMESPACES": {"PAGE": "nimbus-pages"}}
    with pytest.raises(CommandError, match="'nimbus-pages' cannot be a Worker binding"):
        run("config")


def test_status_of_the_running_gateway(monkeypatch: pytest.MonkeyPatch, cloudflare_api) -> None:
    from tests.cloudflare import local_api

    monkeypatch.setenv(conf.GATEWAY_SECRET_ENV, local_api.GATEWAY_SECRET)
    url = "gateway+" + cloudflare_api.url.rstrip("/")
    monkeypatch.setenv(conf.KV_URL_ENV, url)
    monkeypatch.setenv(conf.D1_URL_ENV, url)
    conf.reset()
    out = run("status")
    assert "plan: paid" in out and "D1: bound" in out and "d1_statements 1000" in out
    report = json.loads(run("status", "--json"))
    assert report["problems"] == [] and report["limits"]["kv_operations"] == 1000
    assert set(conf.project_namespaces()) <= set(report["namespaces"])

    monkeypatch.setenv(conf.KV_URL_ENV, url + "?plan=free")  # the gateway runs on paid
    monkeypatch.setenv(conf.D1_URL_ENV, url + "?plan=free")
    conf.reset()
    with pytest.raises(CommandError, match="1 problem"):
        run("status")
    problems = json.loads(_json_despite_failure())["problems"]
    assert problems == ["the gateway runs on plan paid, the settings say free"]


def _json_despite_failure() -> str:
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("nimbus_gateway", "status", "--json", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_status_reports_unbound_namespaces_and_wrong_secrets(
    settings, monkeypatch: pytest.MonkeyPatch, cloudflare_api
) -> None:
    from tests.cloudflare import local_api

    options = cloudflare_api.gateway_options()
    settings.NIMBUS = gateway_settings(
        options["url"].rstrip("/"),
        secret=local_api.GATEWAY_SECRET,
        namespaces=["NIMBUS_USERS", "NIMBUS_NOT_BOUND"],
    )
    err = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("nimbus_gateway", "status", stdout=StringIO(), stderr=err)
    assert "namespaces not bound to the gateway: NIMBUS_NOT_BOUND" in err.getvalue()

    settings.NIMBUS = gateway_settings(options["url"].rstrip("/"), secret="wrong")
    with pytest.raises(CommandError, match=r"the gateway did not answer: .*bad_signature"):
        run("status")


def test_status_needs_a_gateway() -> None:
    with pytest.raises(CommandError, match="neither the KV store nor the D1 database"):
        run("status")


def test_the_example_is_what_config_prints_for_the_project() -> None:
    """worker/wrangler.toml.example is ``manage.py nimbus_gateway config`` on the project's
    settings (the tests declare more models, so the project's deployment is rebuilt here)."""
    namespaces = dict.fromkeys(sorted(DEFAULT_CLASS_NAMESPACES.values()))
    deploy = gateway.Deployment("nimbus-gateway", "paid", namespaces, "nimbus", None)
    example = (WORKER / "wrangler.toml.example").read_text()
    assert example == gateway.render_toml(deploy)
    config = tomllib.loads(example)
    assert config["vars"]["NIMBUS_KV_NAMESPACES"].split(",") == bindings(config)
    assert (WORKER / config["main"]).is_file()


def test_the_worker_package_pins_the_tests_miniflare() -> None:
    tests_package = json.loads((WORKER.parent / "tests/cloudflare/package.json").read_text())
    worker_package = json.loads((WORKER / "package.json").read_text())
    pinned = tests_package["dependencies"]["miniflare"]
    assert worker_package["devDependencies"]["miniflare"] == pinned
    lock = json.loads((WORKER / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/miniflare"]["version"] == pinned
    # wrangler brings its own miniflare unless it is the release built on the same one
    wrangler = lock["packages"]["node_modules/wrangler"]
    assert wrangler["dependencies"]["miniflare"] == pinned
