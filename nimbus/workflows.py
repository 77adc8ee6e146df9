"""The platform's workflows over the domain models: batch upload, page status transitions that
keep batch summaries right, the processing queue, and page logs.

Every read-modify-write of a shared object (a batch's page map, a project's queue, a log) is a
compare-and-set retried on ``Conflict``, so concurrent workers never lose each other's changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from datamodel import DataModel, Rejected, Scope, ids
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects
from datastore import Conflict, codec

from .models import ApiKey, Batch, Page, PageLog, PageStatus, Project, Queue, key_hash
from .models.batch import batch_status, summarize
from .models.logs import MAX_ENTRIES, MAX_LOG_BYTES
from .models.page import TRANSITIONS

__all__ = [
    "MAX_ATTEMPTS",
    "ack",
    "append_log",
    "claim",
    "fail",
    "issue_api_key",
    "transition",
    "upload_batch",
    "upload_page",
]

MAX_ATTEMPTS = 3  # a failed item goes back to the queue until it has been tried this often
CLAIM_TIMEOUT = dt.timedelta(minutes=15)  # a claim not acked by then may be claimed again
_RETRIES = 8

T = TypeVar("T")


def _retry(update: Callable[[], T]) -> T:
    """Run a compare-and-set update, again from a fresh read whenever it hits ``Conflict``."""
    for _ in range(_RETRIES - 1):
        try:
            return update()
        except Conflict:
            continue
    return update()


def _record_page_in_batch(scope: Scope, page: Page, fields: dict[str, Any]) -> None:
    batch_id = page.get("batch_id")
    if not batch_id:
        return

    def update() -> Batch:
        batch = Batch.objects.bind(scope).get(project_id=page.get("project_id"), batch_id=batch_id)
        pages = batch.get("pages")
        pages[page.pk] = {**pages.get(page.pk, {}), **fields}
        summary = summarize(pages)
        batch.set({"pages": pages, "summary": summary})
        batch.set("status", batch_status(summary, batch.get("page_count")))
        return batch.save()  # type: ignore[return-value]

    _retry(update)


def transition(
    scope: Scope, page: Page, status: str, *, error: str | None = None, result: Any = None
) -> Page:
    """Move a page along uploaded -> queued -> processing -> done|failed (else ``Rejected``)."""
    current = page.get("status")
    if status not in TRANSITIONS.get(current, set()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, set()))) or "none (final)"
        raise Rejected(f"a page cannot go from {current!r} to {status!r}; allowed: {allowed}")
    stamp = now_iso()
    page.set("status", status)
    if result is not None:
        page.set("optimization", result)
    page.save()
    status_fields: dict[str, Any] = {"status": status, "updated": stamp}
    if status == "processing":
        status_fields["processing"] = {"started": stamp, "current_step": "queued", "progress": 0}
    if status == "done":
        status_fields["result"] = {"completed": stamp, "success": True}
    if status == "failed":
        status_fields["error"] = {
            "message": error or "failed",
            "code": "FAILED",
            "timestamp": stamp,
        }
    statuses = PageStatus.objects.bind(scope)
    record = statuses.get_or_none(project_id=page.get("project_id"), page_id=page.pk)
    if record is None:
        statuses.create(
            project_id=page.get("project_id"),
            page_id=page.pk,
            batch_id=page.get("batch_id"),
            **status_fields,
        )
    else:
        record.set(status_fields)
        record.save()
    entry: dict[str, Any] = {"status": status}
    if status == "processing":
        entry["started"] = stamp
    if status in ("done", "failed"):
        entry["completed"] = stamp
        started = _batch_started(scope, page)
        if started:
            entry["duration_ms"] = _millis_between(started, stamp)
    if error:
        entry["error"] = error
    _record_page_in_batch(scope, page, entry)
    return page


def _batch_started(scope: Scope, page: Page) -> str | None:
    batch = Batch.objects.bind(scope).get_or_none(
        project_id=page.get("project_id"), batch_id=page.get("batch_id") or "-"
    )
    return (batch.get("pages").get(page.pk) or {}).get("started") if batch else None


def _millis_between(start: str, end: str) -> int:
    parse = dt.datetime.fromisoformat
    delta = parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))
    return max(0, round(delta.total_seconds() * 1000))


BATCH_ID_ATTEMPTS = 300  # the free seconds a batch id is looked for in, from now on


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
    summary = summarize(page_map)
    batch = _create_batch(
        scope,
        project_id,
        page_count=len(items),
        status="queued",
        pages=page_map,
        summary=summary,
    )
    for item in items:
        item["batch_id"] = batch.get("batch_id")
    _queue_pages(scope, project_id, items, stamp)
    _retry(lambda: _count_usage(scope, project_id, len(items)))
    return batch


def upload_page(scope: Scope, project: Project, data: dict[str, Any]) -> tuple[Page, bool]:
    """Upload one page; returns it and whether it is new. A new path is stored as
    ``uploaded``; a path uploaded before (even if deleted since) is replaced, brought back
    and queued afresh, as a batch upload does it (outside any batch)."""
    project_id = project.pk
    stamp = now_iso()
    item = _page_item(project_id, data, stamp, status="uploaded")
    pages = Page.objects.bind(scope)
    try:
        return pages.create(**item), True  # create-only: refused if the path has a page
    except Conflict:
        pass
    item.update(status="queued", batch_id=None)
    _queue_pages(scope, project_id, [item], stamp)
    return pages.get(project_id=project_id, page_id=item["page_id"]), False


def _page_item(project_id: str, data: dict[str, Any], stamp: str, status: str) -> dict[str, Any]:
    return {
        "page_id": ids.page_id(project_id, data["source_path"]),
        "project_id": project_id,
        "batch_id": None,
        "source_path": data["source_path"],
        "extraction": data.get("extraction") or {},
        "priority": data.get("priority", 5),
        "uploaded": stamp,
        "status": status,
    }


def _create_batch(scope: Scope, project_id: str, **values: Any) -> Batch:
    """Create the batch under the first free id from now on in this project.

    A batch id (``batch_YYYYMMDD_HHMMSS``) is unique per project: the batch's KV key holds the
    project and is written create-only, so an id the project already has is refused and the
    next second is tried (ids then run ahead of the clock while a project takes more than one
    batch a second; ``created_at`` keeps the time). Other projects' batches never count."""
    batches = Batch.objects.bind(scope)
    moment = dt.datetime.now(dt.UTC)
    for offset in range(BATCH_ID_ATTEMPTS):
        batch_id = ids.batch_id(moment + dt.timedelta(seconds=offset))
        try:
            return batches.create(project_id=project_id, batch_id=batch_id, **values)
        except Conflict:
            continue
    raise Rejected(
        f"project {project_id!r} has no free batch id in the next {BATCH_ID_ATTEMPTS} seconds; "
        "try again later"
    )


def _queue_pages(scope: Scope, project_id: str, items: list[dict[str, Any]], stamp: str) -> None:
    """Store these pages (replacing those with the same path, deleted ones brought back),
    their status objects, and their queue entries when they are queued."""
    _retry(lambda: _upsert(scope, Page, items))
    _retry(
        lambda: _upsert(
            scope,
            PageStatus,
            [
                {
                    "project_id": project_id,
                    "page_id": item["page_id"],
                    "batch_id": item["batch_id"],
                    "status": item["status"],
                    "updated": stamp,
                    "processing": None,
                    "result": None,
                    "error": None,
                }
                for item in items
            ],
        )
    )
    queue_items = [
        {
            "page_id": item["page_id"],
            "batch_id": item["batch_id"],
            "priority": item["priority"],
            "queued_at": stamp,
            "attempts": 0,
            "claimed_at": None,
        }
        for item in items
        if item["status"] == "queued"
    ]
    if queue_items:
        _retry(lambda: _add_to_queue(scope, project_id, queue_items))


def _upsert(scope: Scope, model: type[DataModel], rows: list[dict[str, Any]]) -> None:
    """Create or replace many objects in one bulk read and one bulk write: uploading a page
    again (same path, same id) starts it afresh in the new batch. A soft-deleted one is
    restored first (the model layer's restore: its references must be live), so an upload
    brings back a deleted page instead of writing into a deleted object."""
    objects = model.objects.bind(scope)
    ids_ = [objects.kv_id(**{name: row[name] for name in model._meta.key_fields}) for row in rows]
    existing = objects.get_many(ids_, include_deleted=True)
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
    objects.bulk_save(instances)


def _add_to_queue(scope: Scope, project_id: str, new_items: list[dict[str, Any]]) -> Queue:
    queues = Queue.objects.bind(scope)
    queue = queues.get_or_none(project_id)
    if queue is None:
        return queues.create(project_id=project_id, items=new_items)
    queued = {item["page_id"] for item in new_items}
    queue.set("items", [i for i in queue.get("items") if i["page_id"] not in queued] + new_items)
    return queue.save()  # type: ignore[return-value]


def _count_usage(scope: Scope, project_id: str, pages: int) -> Project:
    project = Project.objects.bind(scope).get(project_id)
    usage = dict(project.get("usage") or {})
    usage["total_pages"] = usage.get("total_pages", 0) + pages
    usage["total_batches"] = usage.get("total_batches", 0) + 1
    usage["last_activity"] = now_iso()
    project.set("usage", usage)
    return project.save()  # type: ignore[return-value]


def _claimable(item: dict[str, Any], now: dt.datetime) -> bool:
    claimed = item.get("claimed_at")
    if not claimed:
        return True
    claimed_at = dt.datetime.fromisoformat(claimed.replace("Z", "+00:00"))
    return now - claimed_at > CLAIM_TIMEOUT


def claim(scope: Scope, project_id: str) -> dict[str, Any] | None:
    """Take the highest-priority (then oldest) unclaimed item; ``None`` if there is none."""

    def update() -> dict[str, Any] | None:
        queue = Queue.objects.bind(scope).get_or_none(project_id)
        if queue is None:
            return None
        now = dt.datetime.now(dt.UTC)
        items = queue.get("items")
        candidates = [item for item in items if _claimable(item, now)]
        if not candidates:
            return None
        chosen = min(candidates, key=lambda item: (-item["priority"], item["queued_at"]))
        chosen["claimed_at"] = now_iso()
        chosen["attempts"] += 1
        queue.set({"items": items, "last_processed": chosen["claimed_at"]})
        queue.save()
        return dict(chosen)

    item = _retry(update)
    if item is not None:
        page = Page.objects.bind(scope).get(project_id=project_id, page_id=item["page_id"])
        if page.get("status") == "queued":
            transition(scope, page, "processing")
    return item


def _finish(scope: Scope, project_id: str, page_id: str, retry: bool) -> dict[str, Any]:
    """Take a claimed item off the queue (or release it for another try)."""

    def update() -> dict[str, Any]:
        queue = Queue.objects.bind(scope).get_or_none(project_id)
        items = queue.get("items") if queue is not None else []
        item = next((i for i in items if i["page_id"] == page_id and i.get("claimed_at")), None)
        if queue is None or item is None:
            raise Rejected(f"page {page_id!r} is not claimed in this project's queue")
        if retry:
            item["claimed_at"] = None
        else:
            items.remove(item)
        queue.set("items", items)
        queue.save()
        return dict(item)

    return _retry(update)


def ack(scope: Scope, project_id: str, page_id: str, result: Any = None) -> Page:
    """The worker finished: remove the item, the page is done."""
    _finish(scope, project_id, page_id, retry=False)
    page = Page.objects.bind(scope).get(project_id=project_id, page_id=page_id)
    return transition(scope, page, "done", result=result)


def fail(scope: Scope, project_id: str, page_id: str, error: str) -> tuple[Page, bool]:
    """The worker failed: retry while attempts remain, else the page fails. Returns the page and
    whether it will be retried."""
    queue = Queue.objects.bind(scope).get_or_none(project_id)
    item = next((i for i in (queue.get("items") if queue else []) if i["page_id"] == page_id), None)
    retry = item is not None and item["attempts"] < MAX_ATTEMPTS
    _finish(scope, project_id, page_id, retry=retry)
    page = Page.objects.bind(scope).get(project_id=project_id, page_id=page_id)
    if not retry:
        transition(scope, page, "failed", error=error)
    append_log(
        scope,
        project_id,
        page_id,
        {"level": "error", "step": "process", "message": error, "data": {"retry": retry}},
    )
    return page, retry


def _newest_within_bounds(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest entries that fit ``MAX_ENTRIES`` and ``MAX_LOG_BYTES`` together."""
    kept: list[dict[str, Any]] = []
    size = 0
    for entry in reversed(entries[-MAX_ENTRIES:]):
        size += len(codec.dumps(entry)) + 1
        if size > MAX_LOG_BYTES:
            break
        kept.append(entry)
    return kept[::-1]


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
        entries = _newest_within_bounds([*log.get("entries"), entry])
        log.set({"entries": entries, "entry_count": log.get("entry_count") + 1})
        return log.save()  # type: ignore[return-value]

    _retry(update)
    return entry


def issue_api_key(
    scope: Scope,
    *,
    name: str,
    permissions: list[str],
    user_email: str | None,
    user_is_admin: bool = False,
    rate_limit: int | None = None,
) -> tuple[ApiKey, str]:
    """Create an API key owned by ``scope``'s user. Returns the key and its secret
    (``sk_live_<hex32>``), which is not stored and cannot be shown again."""
    secret = ids.api_key()
    values: dict[str, Any] = {
        "key_hash": key_hash(secret),
        "name": name,
        "prefix": secret[:12],
        "permissions": permissions,
        "user_email": user_email,
        "user_is_admin": user_is_admin,
    }
    if rate_limit is not None:
        values["rate_limit"] = rate_limit
    return ApiKey.objects.bind(scope).create(**values), secret
