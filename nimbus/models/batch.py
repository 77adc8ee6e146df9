"""Batches (``batch:{project_id}:{batch_id}`` in NIMBUS_BATCHES): a per-page status map and a
summary kept in step with it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from datamodel import DataModel, fields

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


def batch_status(summary: dict[str, Any], page_count: int) -> str:
    if page_count and summary["completed"] + summary["failed"] == page_count:
        return "failed" if summary["completed"] == 0 and summary["failed"] else "completed"
    if summary["pending"] < page_count:
        return "processing"
    return "queued"


class Batch(DataModel):
    batch_id = fields.String(primary_key=True)
    project_id = fields.String(required=True)
    page_count = fields.Integer(default=0)
    status = fields.Choice(BATCH_STATUSES, default="uploading")
    pages = fields.JSON(default_factory=dict)
    summary = fields.JSON(default_factory=lambda: summarize({}))

    class Meta:
        name = "BATCH"
        namespace = "NIMBUS_BATCHES"
        key_pattern = "batch:{project_id}:{batch_id}"
        table = "batch_meta"
        sync_fields = ["status", "page_count"]
        indexes = [("project_id", "created_at")]
