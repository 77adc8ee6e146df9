"""System checks for the datastore configuration and the DataModel declarations.

Run by ``manage.py check`` (and before most commands). Declaration mistakes inside one model
already fail at import; these checks cover what only shows against the configuration.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from datamodel import registry
from datastore.backends.cloudflare import MAX_BOUND_PARAMETERS

from . import conf, key_usage, keys

D1_MAX_COLUMNS = 100
INSECURE_PREFIX = "django-insecure-"  # Django's mark of a key not to deploy with


@register(Tags.compatibility, "nimbus")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E001-E003, E011: NIMBUS settings and environment URLs."""
    try:
        settings = conf.load_settings()
    except ImproperlyConfigured as exc:
        return [
            Error(
                f"Invalid datastore configuration: {exc}",
                hint="See README, 'Configuration': NIMBUS = {'KV': {...}, 'D1': {...}}.",
                id="nimbus.E001",
            )
        ]
    errors: list[CheckMessage] = []
    for role, spec in (("KV", settings.kv), ("D1", settings.d1)):
        try:
            backend = import_string(spec.backend)
        except ImportError as exc:
            errors.append(
                Error(
                    f"NIMBUS[{role!r}] backend {spec.backend!r} cannot be imported: {exc}",
                    hint="Use a class from datastore.backends (memory, sqlite, redis, cloudflare).",
                    id="nimbus.E002",
                )
            )
            continue
        if (
            role == "D1"
            and settings.adapter == "sql"
            and not getattr(backend, "atomic_batches", True)
        ):
            errors.append(
                Error(
                    f"the 'sql' adapter keeps objects in {spec.backend}, whose batches are not "
                    "promised to be one transaction (D1 over the REST API): an object, its "
                    "version guard and its unique values would not land together",
                    hint="Keep objects in KV (ADAPTER 'kv', the default), or reach D1 through "
                    "the gateway Worker (gateway+https://...).",
                    id="nimbus.E011",
                )
            )
    namespaces = settings.kv.options.get("namespaces")
    if settings.kv.backend.endswith("CloudflareKVStore") and isinstance(namespaces, dict):
        for model in registry:
            namespace = model._meta.namespace
            if namespace not in namespaces and namespace.removeprefix("NIMBUS_") not in namespaces:
                errors.append(
                    Error(
                        f"{model._meta.name} stores objects in {namespace}, which has no "
                        "Cloudflare KV namespace id configured",
                        hint=f"Add {namespace}=<namespace id> to NIMBUS_KV_NAMESPACES.",
                        obj=model,
                        id="nimbus.E003",
                    )
                )
    return errors


@register(Tags.compatibility, "nimbus")
def check_gateway(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E010, W002: the gateway backends against the models and each other."""
    with contextlib.suppress(ImproperlyConfigured):  # reported by check_configuration
        settings = conf.load_settings()
        return _gateway_messages(settings.kv, settings.d1)
    return []


def _gateway_messages(kv: conf.BackendSpec, d1: conf.BackendSpec) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if kv.backend == conf.GATEWAY_KV:
        bound = set(kv.options.get("namespaces") or ())
        for model in registry:
            namespace = model._meta.namespace
            # as GatewayKVStore resolves it: the name, or the binding NIMBUS_{name}
            if namespace not in bound and f"NIMBUS_{namespace}" not in bound:
                messages.append(
                    Error(
                        f"{model._meta.name} stores objects in {namespace}, which the gateway "
                        "KV store's 'namespaces' leave out",
                        hint=f"Add {namespace} to NIMBUS['KV']['OPTIONS']['namespaces'] (and "
                        "to the gateway's bindings: manage.py nimbus_gateway config), or leave "
                        "'namespaces' out to list every namespace the project uses.",
                        obj=model,
                        id="nimbus.E010",
                    )
                )
    if conf.is_gateway(kv) or conf.is_gateway(d1):
        shared = ("url", "secret", "plan")
        one = {name: kv.options.get(name) for name in shared} if conf.is_gateway(kv) else None
        other = {name: d1.options.get(name) for name in shared} if conf.is_gateway(d1) else None
        if one != other:
            if one is None or other is None:
                problem = f"only the {'KV' if one else 'D1'} store is on the gateway"
            else:
                differ = [name for name in shared if one[name] != other[name]]
                problem = f"the KV and D1 gateway options differ in {', '.join(differ)}"
            messages.append(
                Warning(
                    f"{problem}: a save and its metadata, or a page and its objects, cannot "
                    "go in one gateway request",
                    hint="Put both KV and D1 on one gateway (NIMBUS_KV_URL and NIMBUS_D1_URL "
                    "= the same gateway+https://HOST, one NIMBUS_GATEWAY_SECRET and plan).",
                    id="nimbus.W002",
                )
            )
    return messages


@register(Tags.compatibility, "nimbus")
def check_key_usage(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E006: ``NIMBUS_KEY_USAGE_FLUSH_SECONDS`` is a number of seconds, at least 0."""
    try:
        key_usage.flush_interval()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Seconds between API-key usage writes per process; 0 writes after "
                "every request.",
                id="nimbus.E006",
            )
        ]
    return []


@register(Tags.security, "nimbus")
def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E007: the development secret key (or any key marked ``django-insecure-``) is
    refused while DEBUG is off."""
    if django_settings.DEBUG or not str(django_settings.SECRET_KEY).startswith(INSECURE_PREFIX):
        return []
    return [
        Error(
            f"SECRET_KEY is a development key ({INSECURE_PREFIX}...) while DEBUG is off: "
            "set DJANGO_SECRET_KEY",
            hint="Set DJANGO_SECRET_KEY to a long random value, e.g. the output of python -c "
            "'from django.core.management.utils import get_random_secret_key as k; print(k())'.",
            id="nimbus.E007",
        )
    ]


@register(Tags.compatibility, "nimbus")
def check_api_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E009: ``NIMBUS_MAX_KEYS_PER_USER`` is a positive whole number."""
    try:
        keys.max_keys_per_user()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="The most live API keys one user may have (revoked keys do not count).",
                id="nimbus.E009",
            )
        ]
    return []


@register(Tags.models, "nimbus")
def check_models(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """nimbus.E004-E005, W001: DataModel declarations against D1's limits and the settings."""
    messages: list[CheckMessage] = []
    overrides: dict[str, str] = {}
    with contextlib.suppress(ImproperlyConfigured):  # reported by check_configuration
        overrides = dict(conf.load_settings().namespaces or {})
    for model in registry:
        meta = model._meta
        if len(meta.sync_fields) > min(D1_MAX_COLUMNS, MAX_BOUND_PARAMETERS):
            messages.append(
                Error(
                    f"{meta.name} syncs {len(meta.sync_fields)} columns; D1 allows at most "
                    f"{D1_MAX_COLUMNS} columns and {MAX_BOUND_PARAMETERS} parameters per row",
                    hint="Keep large or rarely queried fields KV-only.",
                    obj=model,
                    id="nimbus.E004",
                )
            )
        routed = overrides.get(meta.kv_class)
        if routed is not None and routed != meta.namespace:
            messages.append(
                Error(
                    f"NIMBUS['NAMESPACES'] routes {meta.kv_class} to {routed}, but "
                    f"{meta.name} declares {meta.namespace}",
                    hint="Change one of them so that both agree.",
                    obj=model,
                    id="nimbus.E005",
                )
            )
    if os.environ.get("ADMIN_EMAIL") and not os.environ.get("ADMIN_PASSWORD"):
        messages.append(
            Warning(
                "ADMIN_EMAIL is set but ADMIN_PASSWORD is not: the admin user seed will fail",
                hint="Set ADMIN_PASSWORD, or unset ADMIN_EMAIL to skip the admin seed.",
                id="nimbus.W001",
            )
        )
    return messages
