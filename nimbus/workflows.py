"""The platform's workflows over the domain models: batch and page uploads, API keys (issued
by ``nimbus.keys.issue_api_key``, re-exported here) and page logs. A page's status and its
queue entry move in ``nimbus.lifecycle``, the one state machine for them (an upload writes the
pages, then ``lifecycle.enqueue`` the rest of the move).

Every read-modify-write of a shared object (a batch's page map, a project's queue, a log) is a
compare-and-set retried on ``Conflict``, so concurrent workers never lose each other's changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from datamodel import DataModel, DoesNotExist, Rejected, Scope, ScopedManager, ids
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects
from datastore import Conflict

from . import lifecycle
from .keys import issue_api_key
from .lifecycle import MAX_ATTEMPTS
from .models import Batch, Page, PageLog, Project, Queue
from .models.batch import batch_status, summarize
from .models.logs import newest_within_bounds
from .usage import count_usage

__all__ = [
    "MAX_ATTEMPTS",
    "append_log",
    "delete_project",
    "issue_api_key",
    "restore_project",
    "upload_batch",
    "upload_page",
]

_RETRIES = 8

T = TypeVar("T")
M = TypeVar("M", bound=DataModel)


def _retry(update: Callable[[], T]) -> T:
    """Run a compare-and-set update, again from a fresh read whenever it hits ``Conflict``."""
    for _ in range(_RETRIES - 1):
        try:
            return update()
        except Conflict:
            continue
    return update()


BATCH_ID_ATTEMPTS = 300  # the ids a batch upload tries before it gives up
BATCH_ID_FORMAT = "batch_%Y%m%d_%H%M%S"  # datamodel.ids.batch_id's


def upload_batch(scope: Scope, project: Project, pages: list[dict[str, Any]]) -> Batch:
    """Create a batch and all its pages, queued, with bulk writes: the round trips do not grow
    with the number of pages (up to the stores' batch limits). A page whose path was uploaded
    before (even if deleted since) is replaced, brought back and queued afresh."""
    project_id = project.pk
    stamp = now_iso()
    items = [_page_item(project_id, data, stamp, status="queued") for data in pages]
    page_ids = [item["page_id"] for item in items]
    if len(set(page_ids)) != len(page_ids):
        raise Rejected("the same source_path appears more than once in this batch")
    page_map = {page_id: {"status": "queued", "uploaded": stamp} for page_id in page_ids}
    batch = _create_batch(scope, project_id, **_batch_values(page_map))
    for item in items:
        item["batch_id"] = batch.get("batch_id")
    _queue_pages(scope, project_id, items, stamp)
    count_usage(scope, project_id)
    return batch


def upload_page(scope: Scope, project: Project, data: dict[str, Any]) -> tuple[Page, bool]:
    """Upload one page, in a batch of its own; returns it and whether it is new. A new path is
    stored as ``uploaded`` (its batch ``uploading``); a path uploaded before (even if deleted
    since) is replaced, brought back and queued afresh, as a batch upload does it: it moves
    into the new batch and leaves the one it was in."""
    project_id = project.pk
    stamp = now_iso()
    item = _page_item(project_id, data, stamp, status="uploaded")
    pages = Page.objects.bind(scope)
    page = pages.new(**item)  # its values checked before the batch is created
    entry = {"status": "uploaded", "uploaded": stamp}
    batch = _create_batch(scope, project_id, **_batch_values({item["page_id"]: entry}))
    item["batch_id"] = batch.get("batch_id")
    page.set("batch_id", item["batch_id"])
    if _create(scope, page):  # refused if the path has a page
        lifecycle.enqueue(scope, [page], stamp=stamp)  # its status object and log entry
        count_usage(scope, project_id)
        return page, True
    # The path has a page: it is queued in the new batch, which nobody else knows of yet
    # (the page is written after), so its entry is set here without a move.
    batch.set(_batch_values({item["page_id"]: {**entry, "status": "queued"}}))
    batch.save()
    item["status"] = "queued"
    _queue_pages(scope, project_id, [item], stamp)
    count_usage(scope, project_id)  # a deleted page brought back counts again
    return pages.get(project_id=project_id, page_id=item["page_id"]), False


def _batch_values(page_map: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A batch's page map with the counts and status that follow from it."""
    return {
        "pages": page_map,
        "page_count": len(page_map),
        "summary": summarize(page_map),
        "status": batch_status(page_map),
    }


def _page_item(project_id: str, data: dict[str, Any], stamp: str, status: str) -> dict[str, Any]:
    return {
        "page_id": ids.page_id(project_id, data["source_path"]),
        "project_id": project_id,
        "batch_id": None,  # set once the upload's batch is created
        "source_path": data["source_path"],
        "extraction": data.get("extraction") or {},
        "priority": data.get("priority", 5),
        "uploaded": stamp,
        "status": status,
    }


def _create_batch(scope: Scope, project_id: str, **values: Any) -> Batch:
    """Create the batch under the first free id from now on in this project.

    A batch id (``batch_YYYYMMDD_HHMMSS``) is unique per project: the batch's KV key holds the
    project and is written create-only, so an id the project already has is refused and a
    later second is tried (ids then run ahead of the clock while a project takes more than one
    batch a second; ``created_at`` keeps the time). Other projects' batches never count. On a
    store without compare-and-set the refusal is a read first, best effort (``_create``).

    When the id of now is taken, the next try is the second after the project's latest batch
    (one SQL query), not the next second: a project that uploads many pages one by one runs
    its ids ahead of the clock, and trying every second up to them would cost a round trip
    each. Seconds taken meanwhile are skipped one by one, up to ``BATCH_ID_ATTEMPTS`` tries."""
    batches = Batch.objects.bind(scope)
    moment = dt.datetime.now(dt.UTC)
    for attempt in range(BATCH_ID_ATTEMPTS):
        batch = batches.new(project_id=project_id, batch_id=ids.batch_id(moment), **values)
        if _create(scope, batch):
            return batch
        if attempt == 0:
            moment = max(moment, _latest_batch_moment(batches, project_id))
        moment += dt.timedelta(seconds=1)
    raise Rejected(
        f"project {project_id!r} found no free batch id in {BATCH_ID_ATTEMPTS} tries; "
        "try again later"
    )


def _latest_batch_moment(batches: ScopedManager[Batch], project_id: str) -> dt.datetime:
    """The second named by the id of the project's latest batch (the epoch if it has none)."""
    latest = (
        batches.filter(project_id=project_id)
        .order_by("-created_at")
        .values_list("batch_id", flat=True)
        .first()
    )
    try:
        return dt.datetime.strptime(latest, BATCH_ID_FORMAT).replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return dt.datetime.fromtimestamp(0, dt.UTC)


def _create(scope: Scope, instance: DataModel) -> bool:
    """Save a new object create-only; ``False`` if its key is taken (even by a deleted one).
    Where the store cannot refuse a taken key (no compare-and-set: Cloudflare KV, where the
    last writer wins), the key is read first: best effort, as two writers racing between
    that read and their writes both create (the later one replaces the other)."""
    if not scope.connection.datastore.adapter.supports_cas:
        objects = type(instance).objects.bind(scope)
        if objects.get_many([instance.kv_id], include_deleted=True):
            return False
    try:
        instance.save()
    except Conflict:
        return False
    return True


def _queue_pages(scope: Scope, project_id: str, items: list[dict[str, Any]], stamp: str) -> None:
    """Store these pages (replacing those with the same path, deleted ones brought back), then
    make the rest of their upload move: status objects, queue items, logs, the batches they
    leave (``lifecycle.enqueue``, told the batches the replaced pages were in)."""
    replaced: list[Page] = []
    written = _retry(lambda: _upsert(scope, Page, items, replaced))
    left = {page.get("batch_id") for page in replaced}
    lifecycle.enqueue(scope, written, stamp=stamp, left=left)


def _upsert(
    scope: Scope, model: type[M], rows: list[dict[str, Any]], replaced: list[M] | None = None
) -> list[M]:
    """Create or replace many objects in one bulk read and one bulk write: uploading a page
    again (same path, same id) starts it afresh in the new batch. A soft-deleted one is
    restored first (the model layer's restore: its references must be live), so an upload
    brings back a deleted page instead of writing into a deleted object. The objects read
    before they are replaced are added to ``replaced`` (on every attempt)."""
    objects = model.objects.bind(scope)
    ids_ = [objects.kv_id(**{name: row[name] for name in model._meta.key_fields}) for row in rows]
    existing = objects.get_many(ids_, include_deleted=True)
    if replaced is not None:
        replaced.extend(existing.values())
    deleted = [instance for instance in existing.values() if instance.get("deleted_at")]
    if deleted:
        restore_objects(deleted, scope)
    instances = []
    for kv_id, row in zip(ids_, rows, strict=True):
        instance = existing.get(kv_id)
        if instance is None:
            instances.append(objects.new(**row))
        else:
            instance.set(row)
            instances.append(instance)
    return objects.bulk_save(instances)


def delete_project(scope: Scope, project_id: str) -> None:
    """Delete a project (soft) with what it holds: its pages, batches, status objects and logs
    (their references to it cascade) and its queue (``queue:{project_id}``, keyed by the
    project's id, so it cannot reference it: see ``models.queue``). ``DoesNotExist`` if the
    project is not there."""
    Project.objects.bind(scope).get(project_id).delete()
    _retry(lambda: _delete_queue(scope, project_id))


def _delete_queue(scope: Scope, project_id: str) -> None:
    queue = Queue.objects.bind(scope).get_or_none(project_id)
    if queue is not None:
        queue.delete()


def restore_project(scope: Scope, project_id: str) -> Project:
    """Undo a project's delete, with what that delete took with it (pages deleted on their own
    before stay deleted) and its queue, as they were; then count its usage again.
    ``DoesNotExist`` if the project is not there or not deleted."""
    projects = Project.objects.bind(scope)
    project = projects.get(project_id, include_deleted=True)
    if not project.get("deleted_at"):
        raise DoesNotExist(f"project {project_id!r} is not deleted")
    project.restore()
    _retry(lambda: _restore_queue(scope, project_id))
    count_usage(scope, project_id)
    return projects.get(project_id)


def _restore_queue(scope: Scope, project_id: str) -> None:
    queue = Queue.objects.bind(scope).get_or_none(project_id, include_deleted=True)
    if queue is not None and queue.get("deleted_at"):
        restore_objects([queue], scope)


def append_log(
    scope: Scope, project_id: str, page_id: str, entry: dict[str, Any]
) -> dict[str, Any]:
    """Append one entry to a page's log (the oldest are dropped past ``MAX_ENTRIES``)."""
    entry = {"timestamp": now_iso(), **entry}

    def update() -> PageLog:
        logs = PageLog.objects.bind(scope)
        log = logs.get_or_none(project_id=project_id, page_id=page_id)
        if log is None:
            return logs.create(
                project_id=project_id, page_id=page_id, entries=[entry], entry_count=1
            )
        entries = newest_within_bounds([*log.get("entries"), entry])
        log.set({"entries": entries, "entry_count": log.get("entry_count") + 1})
        return log.save()  # type: ignore[return-value]

    _retry(update)
    return entry
