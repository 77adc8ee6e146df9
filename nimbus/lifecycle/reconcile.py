"""Repairing what a half-done move left: ``reconcile`` sets a project's queue, status objects
and batch page maps from its pages."""

from __future__ import annotations

from typing import Any

from datamodel import Scope
from datamodel.clock import now_iso

from ..models import Batch, Page, PageStatus, Queue
from ..models.batch import summarize
from .queue import set_items
from .records import recount, status_fields
from .table import DELETED


def reconcile(scope: Scope, project_id: str, *, repair: bool = False) -> list[str]:
    """Where a project's queue, status objects and batch page maps disagree with its pages'
    statuses (a process that died between a move's page write and the rest, or data from
    before this module); with ``repair=True`` they are set from the pages, which every move
    writes first. Returns one line per disagreement found.

    The queue gets a fresh item for a queued page without one and releases a queued page's
    claim; a processing page's item is claimed now (if it was not), so that it is claimed
    again after ``CLAIM_TIMEOUT`` like any claim nobody acks; items of other pages go. A
    status object or batch entry that shows another status is rewritten; batch entries of
    pages not live in that batch are dropped, and every summary recounted.

    Reads: the pages (SQL, streamed), the queue, the status objects and the batches (1 KV
    read each, per bulk-read chunk); repairs write each object that changes once."""
    pages = {
        row["page_id"]: row
        for row in Page.objects.bind(scope)
        .filter(project_id=project_id)
        .values("page_id", "status", "batch_id", "priority", "_version")
    }
    found: list[str] = []
    stamp = now_iso()
    queue = Queue.objects.bind(scope).get_or_none(project_id)
    items = {item["page_id"]: item for item in (queue.get("items") if queue is not None else [])}
    fixes: dict[str, dict[str, Any] | None] = {}
    for page_id in items:
        status = pages[page_id]["status"] if page_id in pages else DELETED
        if status not in ("queued", "processing"):
            found.append(f"queue item of page {page_id!r}, which is {status!r}")
            fixes[page_id] = None
    for page_id, row in pages.items():
        status, item = row["status"], items.get(page_id)
        if status not in ("queued", "processing"):
            continue
        if item is None:
            found.append(f"page {page_id!r} is {status!r} but not in the queue")
            item = {
                "page_id": page_id,
                "batch_id": row["batch_id"],
                "priority": row["priority"],
                "queued_at": stamp,
                "attempts": 0,
                "claimed_at": None,
            }
            fixes[page_id] = item
        if status == "queued" and item.get("claimed_at"):
            found.append(f"page {page_id!r} is 'queued' but its queue item is claimed")
            fixes[page_id] = {**item, "claimed_at": None}
        if status == "processing" and not item.get("claimed_at"):
            found.append(f"page {page_id!r} is 'processing' but its queue item is not claimed")
            fixes[page_id] = {**item, "claimed_at": stamp}
    if repair and fixes:
        set_items(scope, project_id, fixes)
    statuses = PageStatus.objects.bind(scope)
    status_ids = {
        page_id: statuses.kv_id(project_id=project_id, page_id=page_id) for page_id in pages
    }
    records = statuses.get_many(list(status_ids.values()))
    changed = []
    for page_id, row in pages.items():
        record = records.get(status_ids[page_id])
        if record is not None and record.get("status") != row["status"]:
            found.append(
                f"status object of page {page_id!r} says {record.get('status')!r}, "
                f"the page {row['status']!r}"
            )
            record.set(status_fields(row["status"], stamp))
            record.set({"batch_id": row["batch_id"], "page_version": row["_version"]})
            changed.append(record)
    if repair and changed:
        statuses.bulk_save(changed)
    batches = Batch.objects.bind(scope)
    batch_ids = set(batches.filter(project_id=project_id).values_list("batch_id", flat=True)) | {
        row["batch_id"] for row in pages.values() if row["batch_id"]
    }
    for batch_id in sorted(batch_ids):
        batch = batches.get_or_none(project_id=project_id, batch_id=batch_id)
        if batch is None:
            continue
        entries = dict(batch.get("pages"))
        before = dict(entries)
        for page_id in list(entries):
            row = pages.get(page_id)
            if row is None or row["batch_id"] != batch_id:
                found.append(f"batch {batch_id!r} counts page {page_id!r}, not live in it")
                del entries[page_id]
            elif entries[page_id].get("status") != row["status"]:
                found.append(
                    f"batch {batch_id!r} says page {page_id!r} is "
                    f"{entries[page_id].get('status')!r}, the page {row['status']!r}"
                )
                entries[page_id] = {**entries[page_id], "status": row["status"]}
        for page_id, row in pages.items():
            if row["batch_id"] == batch_id and page_id not in entries:
                found.append(f"batch {batch_id!r} does not count its page {page_id!r}")
                entries[page_id] = {"status": row["status"], "uploaded": stamp}
        if repair and (entries != before or batch.get("summary") != summarize(entries)):
            recount(batch, entries)
            batch.save()  # a Conflict: the batch moved meanwhile; run it again
    return found
