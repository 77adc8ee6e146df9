"""A project's processing queue (``queue:{project_id}`` in NIMBUS_QUEUE), as the spec lays it
out: one object whose ``items`` a worker claims, highest priority first.

``project_id`` is the primary key and the key pattern's one field, so it cannot be a
``Reference`` to the project as ``Page.project_id`` is: the model layer refuses a Reference
primary key at declaration, and a primary key can be left out of the key pattern (the row
keyed by the KV id, as ``Batch`` does) only when the pattern has two fields or more. So no
cascade reaches the queue: ``workflows.delete_project`` deletes it (soft) with its project and
``workflows.restore_project`` brings it back; a move racing the delete does not write into it
(``lifecycle.queue.set_items``)."""

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
