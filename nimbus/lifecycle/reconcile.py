"""Repairing what a half-done move left: ``reconcile`` sets a project's queue, status objects,
batch page maps and usage counters from its pages."""

from __future__ import annotations

from typing import Any

from datamodel import Scope
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects

from ..models import Batch, Page, PageStatus, Project, Queue
from ..models.batch import summarize
from ..usage import count_usage
from .queue import Change, Item, guarded, set_items
from .records import recount, status_fields
from .table import DELETED

Rows = dict[str, dict[str, Any]]  # the live pages' metadata rows by page id


def reconcile(scope: Scope, project_id: str, *, repair: bool = False) -> list[str]:
    """Where a live project's queue, status objects, batch page maps and usage counters
    disagree with its pages (a process that died between a move's page write and the rest, a
    write that bypassed the lifecycle, or data from before it); with ``repair=True`` they are
    set from the pages, which every move writes first. Returns one line per disagreement
    found. ``DoesNotExist`` if the project is not there (or deleted).

    * The queue gets a fresh item for a queued page without one and releases a queued page's
      claim; a processing page's item is claimed now (if it was not), so that it is claimed
      again after ``CLAIM_TIMEOUT`` like any claim nobody acks; an item naming another batch
      than its page's is corrected; items of other pages go.
    * A live page without a status object gets one (restored, if it was deleted); one that
      shows another status or batch is rewritten; the status objects of pages that are not
      live are deleted.
    * Batch entries of pages not live in that batch are dropped, missing ones added, those
      that show another status corrected, and every summary recounted.
    * ``usage.total_pages`` and ``usage.total_batches`` are counted again
      (``last_activity`` is left as it is).

    A system scope (``user_id`` ``None``) acts as the project's owner, so what a repair
    creates is the owner's, as if a route had made it. Repairs of the queue and the counters
    are compare-and-sets retried from a fresh read, and never replace a queue item written for
    a later version of its page; a batch or status object that changed since it was read makes
    the repair raise ``Conflict``: run it again.

    Reads: the project, the pages and the status objects' rows (SQL, streamed), the queue, the
    status objects and the batches (1 KV read each, per bulk-read chunk); repairs write each
    object that changes once."""
    project = Project.objects.bind(scope).get(project_id)
    if scope.user_id is None and project.get("user_id"):
        scope = Scope(scope.connection, project.get("user_id"))
    pages: Rows = {
        row["page_id"]: row
        for row in Page.objects.bind(scope)
        .filter(project_id=project_id)
        .values("page_id", "status", "batch_id", "priority", "_version")
    }
    stamp = now_iso()
    found = _queue(scope, project_id, pages, stamp, repair)
    found += _status_objects(scope, project_id, pages, stamp, repair)
    batch_ids = set(
        Batch.objects.bind(scope).filter(project_id=project_id).values_list("batch_id", flat=True)
    )
    found += _batches(scope, project_id, pages, batch_ids, stamp, repair)
    usage = project.get("usage") or {}
    for name, count, what in (
        ("total_pages", len(pages), "live pages"),
        ("total_batches", len(batch_ids), "live batches"),
    ):
        if usage.get(name) != count:
            found.append(f"project usage says {name} {usage.get(name)!r}, it has {count} {what}")
    if repair and any("project usage" in line for line in found):
        count_usage(scope, project_id, activity=False)
    return found


def _queue(scope: Scope, project_id: str, pages: Rows, stamp: str, repair: bool) -> list[str]:
    found: list[str] = []
    queue = Queue.objects.bind(scope).get_or_none(project_id)
    items = {item["page_id"]: item for item in (queue.get("items") if queue is not None else [])}
    fixes: dict[str, Change] = {}
    for page_id, item in items.items():
        status = pages[page_id]["status"] if page_id in pages else DELETED
        if status not in ("queued", "processing"):
            found.append(f"queue item of page {page_id!r}, which is {status!r}")
            fixes[page_id] = guarded(item.get("page_version") or 0, None)
    for page_id, row in pages.items():
        status, item = row["status"], items.get(page_id)
        if status not in ("queued", "processing"):
            continue
        fixed: Item | None = None
        if item is None:
            found.append(f"page {page_id!r} is {status!r} but not in the queue")
            item = fixed = {
                "page_id": page_id,
                "batch_id": row["batch_id"],
                "priority": row["priority"],
                "queued_at": stamp,
                "attempts": 0,
                "claimed_at": None,
            }
        if status == "queued" and item.get("claimed_at"):
            found.append(f"page {page_id!r} is 'queued' but its queue item is claimed")
            item = fixed = {**item, "claimed_at": None}
        if status == "processing" and not item.get("claimed_at"):
            found.append(f"page {page_id!r} is 'processing' but its queue item is not claimed")
            item = fixed = {**item, "claimed_at": stamp}
        if item.get("batch_id") != row["batch_id"]:
            found.append(
                f"queue item of page {page_id!r} names batch {item.get('batch_id')!r}, "
                f"the page is in {row['batch_id']!r}"
            )
            item = fixed = {**item, "batch_id": row["batch_id"]}
        if fixed is not None:
            fixes[page_id] = guarded(row["_version"], fixed)
    if repair and fixes:
        set_items(scope, project_id, fixes)
    return found


def _status_objects(
    scope: Scope, project_id: str, pages: Rows, stamp: str, repair: bool
) -> list[str]:
    found: list[str] = []
    statuses = PageStatus.objects.bind(scope)
    status_ids = {pk: statuses.kv_id(project_id=project_id, page_id=pk) for pk in pages}
    records = statuses.get_many(list(status_ids.values()), include_deleted=True)
    changed, deleted, created = [], [], []
    for page_id, row in pages.items():
        record = records.get(status_ids[page_id])
        if record is None or record.get("deleted_at"):
            found.append(f"page {page_id!r} has no status object")
        elif record.get("status") != row["status"]:
            found.append(
                f"status object of page {page_id!r} says {record.get('status')!r}, "
                f"the page {row['status']!r}"
            )
        elif record.get("batch_id") != row["batch_id"]:
            found.append(
                f"status object of page {page_id!r} names batch {record.get('batch_id')!r}, "
                f"the page is in {row['batch_id']!r}"
            )
        else:
            continue
        values = status_fields(row["status"], stamp)
        values.update(batch_id=row["batch_id"], page_version=row["_version"])
        if record is None:
            created.append(statuses.new(project_id=project_id, page_id=page_id, **values))
            continue
        if record.get("deleted_at"):
            deleted.append(record)
        changed.append((record.kv_id, values))
    others = statuses.filter(project_id=project_id).values_list("page_id", flat=True)
    orphans = sorted(set(others) - set(pages))
    for page_id in orphans:
        found.append(f"status object of page {page_id!r}, which is not live")
    if not repair:
        return found
    if deleted:
        restore_objects(deleted, scope)
    if changed:
        fresh = statuses.get_many([kv_id for kv_id, _ in changed])
        for kv_id, values in changed:
            fresh[kv_id].set(values)
        created += fresh.values()
    if created:
        statuses.bulk_save(created)
    for page_id in orphans:
        record = statuses.get_or_none(project_id=project_id, page_id=page_id)
        if record is not None:
            record.delete()
    return found


def _batches(
    scope: Scope, project_id: str, pages: Rows, live: set[str], stamp: str, repair: bool
) -> list[str]:
    found: list[str] = []
    batches = Batch.objects.bind(scope)
    for batch_id in sorted(live | {row["batch_id"] for row in pages.values() if row["batch_id"]}):
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
                entries[page_id] = {
                    "status": row["status"],
                    "uploaded": stamp,
                    "page_version": row["_version"],
                }
        counts = batch.get("summary") == summarize(entries) and batch.get("page_count") == len(
            entries
        )
        if entries == before and not counts:
            found.append(f"batch {batch_id!r} has a summary or page count not of its page map")
        if repair and (entries != before or not counts):
            recount(batch, entries)
            batch.save()  # a Conflict: the batch moved meanwhile; run it again
    return found
