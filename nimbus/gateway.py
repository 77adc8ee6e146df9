"""The gateway Worker's deployment as the project's settings describe it: the wrangler
configuration ``manage.py nimbus_gateway config`` prints, and the check ``nimbus_gateway status``
makes against a running gateway."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import conf

__all__ = [
    "COMPATIBILITY_DATE",
    "Deployment",
    "GatewayReport",
    "deployment",
    "render_json",
    "render_toml",
    "status",
]

# The date the tests run the Worker with (tests/cloudflare/server.mjs).
COMPATIBILITY_DATE = "2026-04-01"
D1_BINDING = "DB"
CLOUDFLARE_KV = "datastore.backends.cloudflare.CloudflareKVStore"
CLOUDFLARE_D1 = "datastore.backends.cloudflare.CloudflareD1Database"
_BINDING = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")  # a binding is a JavaScript name


@dataclass(frozen=True)
class Deployment:
    """What the gateway needs bound: KV namespaces (binding -> Cloudflare id, ``None`` when the
    settings do not know it), the D1 database and the Workers plan."""

    name: str
    plan: str
    namespaces: Mapping[str, str | None]
    database_name: str
    database_id: str | None
    max_body_bytes: int | None = None

    def config(self) -> dict[str, Any]:
        """The wrangler configuration, placeholders (``<...>``) where an id is unknown."""
        variables: dict[str, Any] = {
            "NIMBUS_GATEWAY_PLAN": self.plan,
            "NIMBUS_KV_NAMESPACES": ",".join(self.namespaces),
        }
        if self.max_body_bytes is not None:
            variables["NIMBUS_GATEWAY_MAX_BODY_BYTES"] = str(self.max_body_bytes)
        return {
            "name": self.name,
            "main": "gateway.js",
            "compatibility_date": COMPATIBILITY_DATE,
            "vars": variables,
            "kv_namespaces": [
                {"binding": binding, "id": namespace_id or f"<{binding} namespace id>"}
                for binding, namespace_id in self.namespaces.items()
            ],
            "d1_databases": [
                {
                    "binding": D1_BINDING,
                    "database_name": self.database_name,
                    "database_id": self.database_id or f"<{self.database_name} database id>",
                }
            ],
        }


def _known_ids(kv: conf.BackendSpec) -> Mapping[str, str]:
    """Namespace ids from the REST backend's mapping (names with or without ``NIMBUS_``)."""
    if kv.backend != CLOUDFLARE_KV or not isinstance(kv.options.get("namespaces"), Mapping):
        return {}
    return {str(name): str(id_) for name, id_ in kv.options["namespaces"].items()}


def deployment(
    *,
    name: str = "nimbus-gateway",
    plan: str | None = None,
    database_name: str = "nimbus",
    max_body_bytes: int | None = None,
) -> Deployment:
    """The gateway the configured project needs: the namespaces of its gateway KV store (or,
    on another backend, every namespace the project uses), with the ids the Cloudflare REST
    settings hold, and the plan of its gateway backends (``paid`` unless said)."""
    settings = conf.load_settings()
    kv, d1 = settings.kv, settings.d1
    if kv.backend == conf.GATEWAY_KV:
        bindings = sorted(kv.options["namespaces"])
    else:
        bindings = conf.project_namespaces(settings.namespaces)
    bad = [binding for binding in bindings if not _BINDING.fullmatch(binding)]
    if bad:
        raise ImproperlyConfigured(
            f"namespace {bad[0]!r} cannot be a Worker binding (a JavaScript name: letters, "
            "digits, '_' and '$', not starting with a digit); rename it in the settings"
        )
    ids = _known_ids(kv)
    namespaces = {
        binding: ids.get(binding) or ids.get(binding.removeprefix("NIMBUS_"))
        for binding in bindings
    }
    if plan is None:
        gateway = kv if conf.is_gateway(kv) else d1
        plan = str(gateway.options.get("plan", "paid")) if conf.is_gateway(gateway) else "paid"
    database_id = str(d1.options["database_id"]) if d1.backend == CLOUDFLARE_D1 else None
    return Deployment(name, plan, namespaces, database_name, database_id, max_body_bytes)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def render_toml(deploy: Deployment) -> str:
    """``wrangler.toml`` for the gateway, with comments saying what to fill and run."""
    config = deploy.config()
    missing = [binding for binding, namespace_id in deploy.namespaces.items() if not namespace_id]
    lines = ["# The Nimbus gateway Worker (worker/gateway.js): manage.py nimbus_gateway config"]
    if missing or deploy.database_id is None:
        lines.append('# Replace each "<... id>" with the id wrangler prints when it creates it:')
    if missing:
        lines.append(
            f"#   npx wrangler kv namespace create {missing[0]}"
            + ("   (and each other namespace below)" if len(missing) > 1 else "")
        )
    if deploy.database_id is None:
        lines.append(f"#   npx wrangler d1 create {deploy.database_name}")
    lines += [
        "# The shared secret is never in this file: npx wrangler secret put NIMBUS_GATEWAY_SECRET",
        "# Then, in worker/: npx wrangler deploy",
        *(f"{key} = {_toml(config[key])}" for key in ("name", "main", "compatibility_date")),
        "",
        "[vars]",
        "# free or paid, the account's Workers plan (D1 queries per invocation: 50 or 1,000)",
        *(f"{key} = {_toml(value)}" for key, value in config["vars"].items()),
    ]
    if deploy.max_body_bytes is None:
        lines.append('# NIMBUS_GATEWAY_MAX_BODY_BYTES = "33554432"  # the default: 32 MiB')
    for table in ("kv_namespaces", "d1_databases"):
        for entry in config[table]:
            lines += ["", f"[[{table}]]", *(f"{k} = {_toml(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def render_json(deploy: Deployment) -> str:
    """``wrangler.json`` for the gateway (the same configuration, no comments)."""
    return json.dumps(deploy.config(), indent=2) + "\n"


@dataclass(frozen=True)
class GatewayReport:
    """A running gateway's own description (``GET /v1/status``) against the settings."""

    url: str
    described: Mapping[str, Any]
    configured: list[str]
    problems: list[str]

    @property
    def bound(self) -> list[str]:
        return list(self.described.get("namespaces") or [])

    @property
    def limits(self) -> Mapping[str, Any]:
        return dict(self.described.get("limits") or {})

    @property
    def plan(self) -> str | None:
        return self.described.get("plan") or self.limits.get("plan")


def status() -> GatewayReport:
    """Ask the configured gateway for its status (one signed request) and list what does not
    fit the settings: configured namespaces it does not bind, no D1 database, another plan or
    a smaller body limit than the client's. ``DatastoreError`` if it cannot be reached."""
    settings = conf.load_settings()
    if conf.is_gateway(settings.kv):
        store: Any = conf.kv_store()
        configured = list(store.namespace_names)
    elif conf.is_gateway(settings.d1):
        store, configured = conf.sql_database(), []
    else:
        raise ImproperlyConfigured(
            "neither the KV store nor the D1 database is on the gateway "
            f"({conf.KV_URL_ENV}/{conf.D1_URL_ENV}=gateway+https://HOST)"
        )
    client = store.client
    described = client.status()
    report = GatewayReport(client.url, described, configured, [])
    missing = [name for name in configured if name not in report.bound]
    if missing:
        report.problems.append(f"namespaces not bound to the gateway: {', '.join(missing)}")
    if not described.get("d1"):
        report.problems.append(f"no D1 database bound as {D1_BINDING}")
    if described.get("version") != 1:
        report.problems.append(f"protocol version {described.get('version')}, not 1")
    if report.plan != client.limits.plan:
        report.problems.append(
            f"the gateway runs on plan {report.plan}, the settings say {client.limits.plan}"
        )
    body = report.limits.get("max_body_bytes")
    if isinstance(body, int) and body < client.limits.max_body_bytes:
        report.problems.append(
            f"the gateway takes bodies of at most {body} bytes, the client sends up to "
            f"{client.limits.max_body_bytes}"
        )
    return report
