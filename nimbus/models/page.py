"""Pages (``page:{project_id}:{page_id}`` in NIMBUS_PAGES): extraction and optimization blocks.

``page_id`` is deterministic, ``page_`` + md5(project_id + source_path)[:12], so uploading the
same file again addresses the same page.
"""

from __future__ import annotations

from datamodel import CASCADE, DataModel, fields, ids

# The moves between them, and what each does to the queue, are nimbus.lifecycle.MOVES.
PAGE_STATUSES = ["uploaded", "queued", "processing", "done", "failed"]


class Page(DataModel):
    page_id = fields.String(primary_key=True, max_length=40)
    # deleting the project deletes its pages with it (soft, as the project), so no route
    # reaches a page of a deleted project; restoring the project brings them back
    project_id = fields.Reference("PROJECT", on_delete=CASCADE, required=True)
    batch_id = fields.String()
    source_path = fields.String(required=True, max_length=1024)
    uploaded = fields.Timestamp()
    status = fields.Choice(PAGE_STATUSES, default="uploaded")
    priority = fields.Integer(default=5)
    extraction = fields.JSON(default_factory=dict)
    optimization = fields.JSON(omit_none=True)  # the spec's optimization?: absent until acked

    class Meta:
        name = "PAGE"
        namespace = "NIMBUS_PAGES"
        key_pattern = "page:{project_id}:{page_id}"
        table = "page_meta"
        sync_fields = ["batch_id", "source_path", "status", "priority", "uploaded"]
        # One per page list the API runs (a project's pages, by status newest or highest
        # priority first, a batch's pages): the filters, deleted_at (every list has "deleted_at
        # IS NULL"), the ordering and the primary key, so no list sorts its rows; user_id last,
        # so a total is counted from the index alone in a user's scope too.
        indexes = [
            ("project_id", "deleted_at", "created_at", "page_id", "user_id"),
            ("project_id", "status", "deleted_at", "created_at", "page_id", "user_id"),
            ("project_id", "status", "deleted_at", "priority", "page_id", "user_id"),
            ("project_id", "batch_id", "deleted_at", "created_at", "page_id", "user_id"),
        ]

    def before_create(self) -> None:
        if not self.get("page_id"):
            self.set("page_id", ids.page_id(self.get("project_id"), self.get("source_path")))
