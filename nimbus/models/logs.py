"""Per-page logs (``logs:{project_id}:{page_id}`` in NIMBUS_LOGS): an append-only entry list."""

from __future__ import annotations

from datamodel import CASCADE, DataModel, fields

LOG_LEVELS = ["info", "warn", "error"]
MAX_ENTRIES = 1000  # the oldest entries are dropped beyond this, keeping the object bounded


class PageLog(DataModel):
    page_id = fields.String(primary_key=True)
    project_id = fields.Reference("PROJECT", on_delete=CASCADE, required=True)
    entries = fields.JSON(default_factory=list)
    entry_count = fields.Integer(default=0)

    class Meta:
        name = "LOGS"
        namespace = "NIMBUS_LOGS"
        key_pattern = "logs:{project_id}:{page_id}"
        table = "logs_meta"
        sync_fields = ["entry_count"]
