"""What the API answers, described for the OpenAPI schema. The views build plain dicts; these
serializers only give the schema their shapes.

A stored object's shape comes from its model's fields: the full KV object on a detail (every
field, ``_auth`` left out), its metadata row in a list (the sync fields).
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from datamodel import DataModel
from datamodel import fields as model_fields

from ..models import ApiKey, Batch, Page, PageStatus, Project
from ..models.logs import LOG_LEVELS

__all__ = [
    "ApiKeyCreated",
    "ApiKeyListItem",
    "BatchListItem",
    "BatchObject",
    "Error",
    "FailResult",
    "InitializeReport",
    "LogEntry",
    "Me",
    "PageListItem",
    "PageObject",
    "PageStatusObject",
    "ProjectListItem",
    "ProjectObject",
    "QueueItem",
    "Status",
]

HIDDEN = {"_auth"}  # the owners list never leaves the server (support.public)


def _nullable(field: model_fields.Field) -> bool:
    """Whether a stored object may hold null: a field that is neither required, defaulted
    nor set on save."""
    automatic = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    return not (field.required or field.has_default or automatic)


def _field(field: model_fields.Field) -> serializers.Field:
    """The serializer field that describes values of a model field."""
    options: dict[str, Any] = {"required": True, "allow_null": _nullable(field)}
    if field.help_text:
        options["help_text"] = field.help_text
    if isinstance(field, model_fields.Choice):
        return serializers.ChoiceField(list(field.choices or ()), **options)
    if isinstance(field, model_fields.Timestamp):
        return serializers.DateTimeField(**options)
    if isinstance(field, model_fields.String):
        return serializers.CharField(**options)
    if isinstance(field, model_fields.Boolean):
        return serializers.BooleanField(**options)
    if isinstance(field, model_fields.Integer):
        return serializers.IntegerField(**options)
    if isinstance(field, model_fields.Number):
        return serializers.FloatField(**options)
    if isinstance(field, model_fields.Array):
        child = _field(field.of) if field.of is not None else serializers.JSONField()
        return serializers.ListField(child=child, **options)
    return serializers.JSONField(**options)


def stored(
    model: type[DataModel],
    name: str,
    *,
    row: bool = False,
    extra: dict[str, serializers.Field] | None = None,
) -> type[serializers.Serializer]:
    """The shape of ``model``'s objects as the API shows them: every field (its metadata row's
    columns with ``row``), plus ``extra``; the schema names it ``name``."""
    meta = model._meta
    names = meta.sync_fields if row else list(meta.fields)
    declared: dict[str, Any] = {
        field: _field(meta.fields[field]) for field in names if field not in HIDDEN
    }
    declared.update(extra or {})
    what = "as listed: its metadata row" if row else "as stored: the full object"
    declared["__doc__"] = f"A {meta.name.lower()} {what}."
    declared["__module__"] = __name__
    return type(name, (serializers.Serializer,), declared)


ProjectObject = stored(Project, "Project")
ProjectListItem = stored(Project, "ProjectListItem", row=True)
PageObject = stored(Page, "Page")
PageListItem = stored(Page, "PageListItem", row=True)
PageStatusObject = stored(PageStatus, "PageStatus")
BatchObject = stored(Batch, "Batch")
BatchListItem = stored(Batch, "BatchListItem", row=True)
ApiKeyListItem = stored(ApiKey, "ApiKeyListItem", row=True)
ApiKeyCreated = stored(
    ApiKey,
    "ApiKeyCreated",
    extra={"key": serializers.CharField(help_text="The secret: shown in this response only.")},
)


class LogEntry(serializers.Serializer):
    """One entry of a page's log."""

    timestamp = serializers.DateTimeField()
    level = serializers.ChoiceField(LOG_LEVELS)
    step = serializers.CharField()
    message = serializers.CharField()
    data = serializers.JSONField(required=False)
    duration_ms = serializers.IntegerField(required=False)


class QueueItem(serializers.Serializer):
    """A claimed queue item."""

    page_id = serializers.CharField()
    batch_id = serializers.CharField(allow_null=True)
    priority = serializers.IntegerField()
    queued_at = serializers.DateTimeField()
    attempts = serializers.IntegerField()
    claimed_at = serializers.DateTimeField()
    page_version = serializers.IntegerField(
        required=False, help_text="The page's _version this item was written for."
    )


class FailResult(serializers.Serializer):
    """A failed attempt: whether the page goes back to the queue, and the page."""

    retry = serializers.BooleanField()
    page = PageObject()


class KeyInfo(serializers.Serializer):
    id = serializers.CharField(help_text="The key's SHA-256 (its id at /api/keys/{id}/).")
    name = serializers.CharField(allow_null=True)
    prefix = serializers.CharField(allow_null=True)
    permissions = serializers.ListField(child=serializers.CharField())
    rate_limit = serializers.IntegerField(allow_null=True)
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When the key expires; null: never."
    )


class Me(serializers.Serializer):
    """Who is calling, and with which key."""

    user_id = serializers.CharField()
    email = serializers.CharField(allow_null=True)
    is_admin = serializers.BooleanField()
    authenticated_by = serializers.ChoiceField(["api_key", "session"])
    key = KeyInfo(required=False, help_text="Present when authenticated by an API key.")


class KVStatus(serializers.Serializer):
    backend = serializers.CharField()
    healthy = serializers.BooleanField()
    namespaces = serializers.ListField(child=serializers.CharField())
    size = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)


class SQLStatus(serializers.Serializer):
    backend = serializers.CharField()
    healthy = serializers.BooleanField()
    detail = serializers.CharField(allow_blank=True)


class Status(serializers.Serializer):
    """Health of the datastore; admins also see the backends."""

    healthy = serializers.BooleanField()
    kv = KVStatus(required=False)
    d1 = SQLStatus(required=False)
    adapter = serializers.CharField(required=False)


class InitializeReport(serializers.Serializer):
    """The initialize report (``data``), or why it could not run (``error``)."""

    success = serializers.BooleanField()
    data = serializers.JSONField(required=False, help_text="tablesCreated, columnsAdded, ...")
    error = serializers.CharField(required=False)


class Error(serializers.Serializer):
    """DRF's error shape."""

    detail = serializers.CharField()
