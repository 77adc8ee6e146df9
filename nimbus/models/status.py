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
    processing = fields.JSON()
    result = fields.JSON()
    error = fields.JSON()
    # the page's _version this object shows: a move's late write never overwrites a later one
    page_version = fields.Integer()

    class Meta:
        name = "STATUS"
        namespace = "NIMBUS_STATUS"
        key_pattern = "status:{project_id}:{page_id}"
        table = "status_meta"
        sync_fields = ["status", "batch_id"]
