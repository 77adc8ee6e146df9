"""Per-page logs (``logs:{project_id}:{page_id}`` in NIMBUS_LOGS): an append-only entry list."""

from __future__ import annotations

from typing import Any

from datamodel import CASCADE, DataModel, fields
from datastore import codec

LOG_LEVELS = ["info", "warn", "error"]
# The spec keeps a page's log as one object (an append rewrites it), so it is bounded twice:
# the oldest entries are dropped past MAX_ENTRIES or past MAX_LOG_BYTES of encoded entries,
# and one entry may take at most MAX_ENTRY_BYTES.
MAX_ENTRIES = 1000
MAX_LOG_BYTES = 512 * 1024
MAX_ENTRY_BYTES = 16 * 1024


def newest_within_bounds(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest entries that fit ``MAX_ENTRIES`` and ``MAX_LOG_BYTES`` together."""
    kept: list[dict[str, Any]] = []
    size = 0
    for entry in reversed(entries[-MAX_ENTRIES:]):
        size += len(codec.dumps(entry)) + 1
        if size > MAX_LOG_BYTES:
            break
        kept.append(entry)
    return kept[::-1]


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
