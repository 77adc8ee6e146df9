"""Real-time page status (``status:{project_id}:{page_id}`` in NIMBUS_STATUS)."""

from __future__ import annotations

from datamodel import CASCADE, DataModel, fields

from .page import PAGE_STATUSES


class PageStatus(DataModel):
    page_id = fields.String(primary_key=True)
    project_id = fields.Reference("PROJECT", on_delete=CASCADE, required=True)
    status = fields.Choice(PAGE_STATUSES, required=True)
    batch_id = fields.String()
    updated = fields.Timestamp()
    # the spec's optional processing?, result? and error?: absent, not null, when they do not apply
    processing = fields.JSON(omit_none=True)
    result = fields.JSON(omit_none=True)
    error = fields.JSON(omit_none=True)
    # the page's _version this object shows: a move's late write never overwrites a later one
    page_version = fields.Integer()

    class Meta:
        name = "STATUS"
        namespace = "NIMBUS_STATUS"
        key_pattern = "status:{project_id}:{page_id}"
        table = "status_meta"
        sync_fields = ["status", "batch_id"]
