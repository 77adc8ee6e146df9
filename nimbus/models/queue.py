"""A project's processing queue (``queue:{project_id}`` in NIMBUS_QUEUE), as the spec lays it
out: one object whose ``items`` a worker claims, highest priority first."""

from __future__ import annotations

from datamodel import DataModel, fields


class Queue(DataModel):
    project_id = fields.String(primary_key=True)
    items = fields.JSON(default_factory=list)
    last_processed = fields.Timestamp()

    class Meta:
        name = "QUEUE"
        namespace = "NIMBUS_QUEUE"
        key_pattern = "queue:{project_id}"
        table = "queue_meta"
