"""Request bodies: validated field by field, so a bad request is a 400 naming each field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

from datastore import codec

from ..models.logs import LOG_LEVELS, MAX_ENTRY_BYTES
from ..models.page import PAGE_STATUSES

MAX_BATCH_PAGES = 1000
MAX_RATE_LIMIT = 1_000_000  # requests per minute
MAX_EXPIRY_DAYS = 36_500
CSRF_FIELD = "csrfmiddlewaretoken"  # what Django's {% csrf_token %} adds to every form
# Fields whose form input is spread over several names: ``settings.tone``, ``pages[0]name``.
_SPREAD_FIELDS = (serializers.BaseSerializer, serializers.ListField, serializers.DictField)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare (a typo is a 400, not silently ignored).

    Form data (the browsable API's HTML forms) is as strict, without counting what a form
    carries besides its fields: the CSRF token, and nested fields named ``settings.tone`` or
    ``pages[0]source_path``, which DRF hands to the nested serializer (strict in turn)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            names = self._form_names(data) if html.is_html_input(data) else iter(data)
            unknown = sorted(set(names) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)

    def _form_names(self, data: Mapping[str, Any]) -> Iterator[str]:
        for name in data:
            head = re.split(r"[.\[]", name, maxsplit=1)[0]
            if head != name and isinstance(self.fields.get(head), _SPREAD_FIELDS):
                yield head
            elif name != CSRF_FIELD or self.parent is not None:
                yield name


class JSONField(serializers.JSONField):
    """A JSON value; in a form, an optional field left blank is no value (not invalid JSON)."""

    def get_value(self, dictionary: Any) -> Any:
        value = super().get_value(dictionary)
        if html.is_html_input(dictionary) and value == "" and not self.required:
            return empty
        return value


class ProjectSettingsSerializer(StrictSerializer):
    tone = serializers.ChoiceField(["premium", "professional", "casual"], required=False)
    max_pages_per_batch = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    default_concurrency = serializers.IntegerField(min_value=1, max_value=100, required=False)
    ai_model = serializers.CharField(max_length=64, required=False)
    domain = serializers.CharField(max_length=253, required=False, allow_blank=True)


class ProjectSerializer(StrictSerializer):
    """Create or update a project."""

    name = serializers.CharField(max_length=200)
    settings = ProjectSettingsSerializer(required=False)


class BlockSerializer(StrictSerializer):
    id = serializers.CharField(max_length=100)
    type = serializers.CharField(max_length=32)
    content = serializers.CharField(allow_blank=True, max_length=100_000)
    attributes = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False
    )
    optimized_content = serializers.CharField(allow_blank=True, required=False)


class ExtractionSerializer(StrictSerializer):
    engine = serializers.CharField(max_length=32, required=False)
    main_selector = serializers.CharField(max_length=200, required=False)
    head = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    dimensions = serializers.DictField(required=False)
    above_fold_blocks = BlockSerializer(many=True, required=False)
    rest_of_page_blocks = BlockSerializer(many=True, required=False)
    selector_map = serializers.DictField(child=serializers.CharField(), required=False)


class PageSerializer(StrictSerializer):
    """A page to upload."""

    source_path = serializers.RegexField(
        r"^[^\x00-\x1f]{1,1024}$", help_text="e.g. dist/local/rolex-repair.html"
    )
    extraction = ExtractionSerializer(required=False)
    priority = serializers.IntegerField(min_value=1, max_value=10, default=5)


# A page's fields that PATCH does not take, and why: its status moves through /status/ (and
# the queue's routes), the rest is its identity or kept by the system.
PAGE_READ_ONLY = {
    "status": "Read-only: a page's status changes through POST .../status/.",
    **{
        name: "Read-only."
        for name in (
            "page_id",
            "project_id",
            "batch_id",
            "source_path",
            "uploaded",
            "optimization",
            "user_id",
            "created_at",
            "updated_at",
            "deleted_at",
            "_version",
            "_auth",
        )
    },
}


class PageUpdateSerializer(StrictSerializer):
    """A page's writable fields; each is optional."""

    priority = serializers.IntegerField(min_value=1, max_value=10, required=False)
    extraction = ExtractionSerializer(required=False, help_text="Replaces the extraction.")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            refused = {name: [PAGE_READ_ONLY[name]] for name in data if name in PAGE_READ_ONLY}
            if refused:
                names = self._form_names(data) if html.is_html_input(data) else iter(data)
                unknown = set(names) - set(self.fields) - set(PAGE_READ_ONLY)
                refused.update({name: ["Unknown field."] for name in sorted(unknown)})
                raise serializers.ValidationError(refused)
        return super().to_internal_value(data)


class BatchUploadSerializer(StrictSerializer):
    """A batch of pages, created in one request."""

    pages = PageSerializer(many=True, allow_empty=False, max_length=MAX_BATCH_PAGES)


class StatusSerializer(StrictSerializer):
    status = serializers.ChoiceField(PAGE_STATUSES)
    error = serializers.CharField(max_length=2000, required=False)
    current_step = serializers.CharField(
        max_length=100,
        required=False,
        help_text="With status processing: the step its status object shows.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "current_step" in attrs and attrs["status"] != "processing":
            raise serializers.ValidationError(
                {"current_step": ["only a move to 'processing' takes a current_step"]}
            )
        return attrs


class ApiKeyCreateSerializer(StrictSerializer):
    """A new key. A key creating a key passes on no more than it has: permissions, rate limit
    and expiry are within its own (and default to them)."""

    name = serializers.CharField(max_length=100)
    permissions = serializers.MultipleChoiceField(
        choices=["read", "write", "admin"],
        required=False,
        help_text="Default: read and write (those of them the creating key has).",
    )
    rate_limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_RATE_LIMIT,
        required=False,
        help_text="Requests per minute. Default and most: the creating key's own.",
    )
    expires_in_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        required=False,
        help_text="The key expires this many days from now (or give expires_at).",
    )
    expires_at = serializers.DateTimeField(
        required=False,
        help_text="When the key expires (ISO 8601). Default: never, or when the creating key does.",
    )

    def validate_permissions(self, value: Any) -> list[str]:
        return sorted(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "expires_in_days" in attrs and "expires_at" in attrs:
            raise serializers.ValidationError("Give expires_in_days or expires_at, not both.")
        return attrs


class LogEntrySerializer(StrictSerializer):
    level = serializers.ChoiceField(LOG_LEVELS, default="info")
    step = serializers.CharField(max_length=64)
    message = serializers.CharField(max_length=10_000)
    data = JSONField(required=False)
    duration_ms = serializers.IntegerField(min_value=0, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        size = len(codec.dumps(attrs))
        if size > MAX_ENTRY_BYTES:
            raise serializers.ValidationError(
                {"data": [f"a log entry may take {MAX_ENTRY_BYTES} bytes; this one takes {size}"]}
            )
        return attrs


class InitializeSerializer(StrictSerializer):
    dry_run = serializers.BooleanField(default=False, help_text="Only report what would change.")


class ClaimSerializer(StrictSerializer):
    current_step = serializers.CharField(
        max_length=100,
        required=False,
        help_text='The step the claimed page\'s status object shows (default "ai_optimization").',
    )


class OptimizationSerializer(StrictSerializer):
    """A page's optimization, as the data-structures spec lays it out (``completed`` is set
    by the ack)."""

    model = serializers.CharField(max_length=64, required=False, help_text='e.g. "gpt-4"')
    confidence = serializers.FloatField(min_value=0, max_value=1, required=False)
    changes = serializers.IntegerField(min_value=0, required=False)
    optimized_blocks = BlockSerializer(many=True, required=False)


class AckSerializer(StrictSerializer):
    result = JSONField(
        required=False, help_text="A free-form result, kept in the page's optimization."
    )
    optimization = OptimizationSerializer(
        required=False,
        help_text="The page's optimization; its changes and confidence show in the status.",
    )


class FailSerializer(StrictSerializer):
    error = serializers.CharField(max_length=2000)
    code = serializers.RegexField(
        r"^[A-Z][A-Z0-9_]{0,63}$",
        required=False,
        help_text='The error code, e.g. "AI_TIMEOUT" (default "FAILED").',
    )


class ProgressSerializer(StrictSerializer):
    """A processing page's progress; at least one of the two."""

    progress = serializers.IntegerField(min_value=0, max_value=100, required=False)
    current_step = serializers.CharField(max_length=100, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError(
                "give progress (0-100), current_step or both", code="required"
            )
        return attrs
