"""Batches (``batch:{project_id}:{batch_id}`` in NIMBUS_BATCHES): a per-page status map and a
summary kept in step with it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from datamodel import CASCADE, DataModel, fields

BATCH_STATUSES = ["uploading", "queued", "processing", "completed", "failed"]


def summarize(pages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The summary of a per-page status map (derived, so it can never drift from it)."""
    counts = Counter(page.get("status") for page in pages.values())
    durations = [page["duration_ms"] for page in pages.values() if page.get("duration_ms")]
    return {
        "completed": counts["done"],
        "failed": counts["failed"],
        "pending": sum(counts[status] for status in ("uploaded", "queued", "processing")),
        "average_time_ms": round(sum(durations) / len(durations)) if durations else 0,
    }


def batch_status(pages: dict[str, dict[str, Any]]) -> str:
    """The status of a batch with this per-page status map: ``uploading`` while every page is
    ``uploaded`` (a new page uploaded on its own is not queued), ``completed`` (or ``failed``,
    if none succeeded) once every page is done or failed, ``processing`` once some are, else
    ``queued``."""
    summary, page_count = summarize(pages), len(pages)
    if page_count and all(page.get("status") == "uploaded" for page in pages.values()):
        return "uploading"
    if page_count and summary["completed"] + summary["failed"] == page_count:
        return "failed" if summary["completed"] == 0 and summary["failed"] else "completed"
    if summary["pending"] < page_count:
        return "processing"
    return "queued"


class Batch(DataModel):
    """One upload: of many pages (``workflows.upload_batch``), or of one page on its own
    (``workflows.upload_page``), so that every page is in a batch.

    ``batch_id`` keeps the spec's shape, ``batch_YYYYMMDD_HHMMSS``, and is unique *per project*:
    the KV key ``batch:{project_id}:{batch_id}`` is the identity, written create-only, so a
    batch id taken in a project is refused (``Conflict``) rather than overwritten, and the
    upload takes the next free second instead (``workflows._create_batch``). Two projects (or
    two users) uploading in the same second get the same ``batch_id`` in different keys and
    never touch each other's batches.

    Because a ``batch_id`` alone repeats across projects, it cannot key the metadata row: the
    primary key is ``batch_key``, left out of the key pattern, so the model layer makes it the
    object's KV id ``{project_id}:{batch_id}``, unique as the KV key it mirrors (and
    ``Batch.objects.get(row["batch_key"])`` reads the object). ``project_id`` references the
    project: deleting the project deletes its batches with it (soft, as the project), and
    restoring it brings them back.
    """

    batch_key = fields.String(primary_key=True, max_length=80)
    batch_id = fields.String(required=True, max_length=40)
    project_id = fields.Reference("PROJECT", on_delete=CASCADE, required=True)
    page_count = fields.Integer(default=0)
    status = fields.Choice(BATCH_STATUSES, default="uploading")
    pages = fields.JSON(default_factory=dict)
    summary = fields.JSON(default_factory=lambda: summarize({}))
    created = fields.Timestamp(auto_now_add=True)  # the spec's name for the creation time

    class Meta:
        name = "BATCH"
        namespace = "NIMBUS_BATCHES"
        key_pattern = "batch:{project_id}:{batch_id}"
        table = "batch_meta"
        sync_fields = ["batch_id", "status", "page_count"]
        indexes = [("project_id", "created_at")]
