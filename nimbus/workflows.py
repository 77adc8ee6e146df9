"""The platform's workflows over the domain models: batch upload, API keys and page logs. A
page's status and its queue entry move in ``nimbus.lifecycle``, the one state machine for them.

Every read-modify-write of a shared object (a batch's page map, a project's queue, a log) is a
compare-and-set retried on ``Conflict``, so concurrent workers never lose each other's changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from datamodel import DataModel, Rejected, Scope, ids
from datamodel.clock import now_iso
from datastore import Conflict

from . import lifecycle
from .lifecycle import MAX_ATTEMPTS
from .models import ApiKey, Batch, Page, PageLog, Project, key_hash
from .models.batch import summarize
from .models.logs import MAX_ENTRIES

__all__ = [
    "MAX_ATTEMPTS",
    "append_log",
    "issue_api_key",
    "upload_batch",
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


def upload_batch(scope: Scope, project: Project, pages: list[dict[str, Any]]) -> Batch:
    """Create a batch and all its pages, queued, with bulk writes: the round trips do not grow
    with the number of pages (up to the stores' batch limits)."""
    project_id = project.pk
    stamp = now_iso()
    batch_id = ids.batch_id()
    items = []
    for data in pages:
        page_id = ids.page_id(project_id, data["source_path"])
        items.append(
            {
                "page_id": page_id,
                "project_id": project_id,
                "batch_id": batch_id,
                "source_path": data["source_path"],
                "extraction": data.get("extraction") or {},
                "priority": data.get("priority", 5),
                "uploaded": stamp,
                "status": "queued",
            }
        )
    page_ids = [item["page_id"] for item in items]
    if len(set(page_ids)) != len(page_ids):
        raise Rejected("the same source_path appears more than once in this batch")
    page_map = {page_id: {"status": "queued", "uploaded": stamp} for page_id in page_ids}
    summary = summarize(page_map)
    batches = Batch.objects.bind(scope)
    for attempt in range(3):  # batch ids have one-second resolution
        try:
            batch = batches.create(
                project_id=project_id,
                batch_id=batch_id,
                page_count=len(items),
                status="queued",
                pages=page_map,
                summary=summary,
            )
            break
        except Conflict:
            if attempt == 2:
                raise
            time.sleep(1.05 - (time.time() % 1))
            batch_id = ids.batch_id()
            for item in items:
                item["batch_id"] = batch_id
    written = _upsert(scope, Page, items)
    lifecycle.enqueue(scope, written, stamp=stamp)  # status objects, queue items, logs
    _retry(lambda: _count_usage(scope, project_id, len(items)))
    return batch


def _upsert(scope: Scope, model: type[M], rows: list[dict[str, Any]]) -> list[M]:
    """Create or replace many objects in one bulk read and one bulk write: uploading a page
    again (same path, same id) starts it afresh in the new batch."""
    objects = model.objects.bind(scope)
    ids_ = [objects.kv_id(**{name: row[name] for name in model._meta.key_fields}) for row in rows]
    existing = objects.get_many(ids_, include_deleted=True)
    instances = []
    for kv_id, row in zip(ids_, rows, strict=True):
        instance = existing.get(kv_id)
        if instance is None:
            instances.append(objects.new(**row))
        else:
            instance.set(row)
            instances.append(instance)
    return objects.bulk_save(instances)


def _count_usage(scope: Scope, project_id: str, pages: int) -> Project:
    project = Project.objects.bind(scope).get(project_id)
    usage = dict(project.get("usage") or {})
    usage["total_pages"] = usage.get("total_pages", 0) + pages
    usage["total_batches"] = usage.get("total_batches", 0) + 1
    usage["last_activity"] = now_iso()
    project.set("usage", usage)
    return project.save()  # type: ignore[return-value]


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
        entries = [*log.get("entries"), entry][-MAX_ENTRIES:]
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
