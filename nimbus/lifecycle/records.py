"""What follows a page's move: its status object, its batch entry and its log entry; and the
retry of a compare-and-set from a fresh read that every shared object needs."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from datamodel import Scope
from datamodel.deletion import restore_objects
from datastore import Conflict

from ..models import Batch, Page, PageLog, PageStatus
from ..models.batch import batch_status, summarize
from ..models.logs import newest_within_bounds
from .table import DELETED, LOG_STEPS, Move

RETRIES = 16

T = TypeVar("T")


DEFAULT_STEP = "ai_optimization"  # a processing page's step until its worker says another
FAILED = "FAILED"  # the error code when the route gives none


@dataclass(frozen=True)
class Detail:
    """What a route says about its move besides the target state, for the status object
    (NIMBUS_STATUS): ``step``, the processing step (``DEFAULT_STEP`` when none is given);
    ``changes`` and ``confidence`` of a done page's optimization; a failure's ``error``
    message and ``code`` (``FAILED`` when none is given)."""

    step: str | None = None
    changes: Any = None
    confidence: Any = None
    error: str | None = None
    code: str | None = None


NO_DETAIL = Detail()


def status_fields(status: str, stamp: str, detail: Detail = NO_DETAIL) -> dict[str, Any]:
    """A status object's fields for a page that is ``status`` since ``stamp``: ``processing``
    ``{started, current_step, progress}`` while processing, ``result`` ``{completed, success,
    changes, confidence}`` once done, ``error`` ``{message, code, timestamp}`` once failed
    (and when a failed attempt queues the page again)."""
    fields: dict[str, Any] = {
        "status": status,
        "updated": stamp,
        "processing": None,
        "result": None,
        "error": None,
    }
    if status == "processing":
        step = detail.step or DEFAULT_STEP
        fields["processing"] = {"started": stamp, "current_step": step, "progress": 0}
    if status == "done":
        fields["result"] = {
            "completed": stamp,
            "success": True,
            "changes": detail.changes,
            "confidence": detail.confidence,
        }
    if detail.error or status == "failed":
        fields["error"] = {
            "message": detail.error or "failed",
            "code": detail.code or FAILED,
            "timestamp": stamp,
        }
    return fields


def write_status(
    scope: Scope,
    page: Page,
    move: Move,
    stamp: str,
    detail: Detail = NO_DETAIL,
) -> None:
    """Show the move in the page's status object, unless a later move of the page (a higher
    ``page_version``) got there first, or the page was deleted since."""
    statuses = PageStatus.objects.bind(scope)
    keys = {"project_id": page.get("project_id"), "page_id": page.pk}
    record = statuses.get_or_none(**keys, include_deleted=True)
    if move.target == DELETED:
        if record is not None and not record.get("deleted_at"):
            record.delete()
        return
    if record is not None and record.get("deleted_at"):
        if move.event != "restore":
            return  # deleted since; an upload or a restore brings it back
        restore_objects([record], scope)
        record = statuses.get_or_none(**keys)
    version = page.get("_version")
    if record is not None and (record.get("page_version") or 0) > version:
        return
    values = status_fields(move.target, stamp, detail)
    values.update(batch_id=page.get("batch_id"), page_version=version)
    if record is None:
        statuses.create(**keys, **values)
    else:
        record.set(values)
        record.save()


def _millis_between(start: str, end: str) -> int:
    parse = dt.datetime.fromisoformat
    delta = parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))
    return max(0, round(delta.total_seconds() * 1000))


def recount(batch: Batch, pages: dict[str, dict[str, Any]]) -> None:
    summary = summarize(pages)
    batch.set({"pages": pages, "summary": summary, "page_count": len(pages)})
    batch.set("status", batch_status(pages))


def write_batch_entry(
    scope: Scope, page: Page, move: Move, stamp: str, detail: Detail = NO_DETAIL
) -> None:
    """Show the move in the page's entry of its batch's page map and recount the summary,
    unless a later move of the page (a higher ``page_version`` in the entry) got there
    first, or the page left the batch since (no entry: the upload writes them)."""
    batch = Batch.objects.bind(scope).get_or_none(
        project_id=page.get("project_id"), batch_id=page.get("batch_id")
    )
    if batch is None:
        return
    pages = dict(batch.get("pages"))
    current = pages.get(page.pk)
    if current is None and move.event == "restore":
        current = {"status": move.target, "uploaded": page.get("uploaded") or stamp}
    if current is None:
        return
    if move.target == DELETED:
        del pages[page.pk]
    else:
        version = page.get("_version")
        if (current.get("page_version") or 0) > version:
            return
        entry = {**current, "status": move.target, "page_version": version}
        if move.target == "processing":
            entry["started"] = stamp
            entry.pop("completed", None)
            entry.pop("duration_ms", None)
        if move.target in ("done", "failed"):
            entry["completed"] = stamp
            if entry.get("started"):
                entry["duration_ms"] = _millis_between(entry["started"], stamp)
        if detail.error:
            entry["error"] = detail.error
        pages[page.pk] = entry
    recount(batch, pages)
    batch.save()


def settle_batches(
    scope: Scope, project_id: str, batch_ids: Iterable[str], page_ids: Sequence[str], stamp: str
) -> None:
    """Make each of these batches count exactly those of these pages that are live in it now:
    an entry for each (showing the page's status, if the map had none), none for the others
    (taken into another batch by a later upload, or deleted); summaries recounted.

    The batches are read first, then the pages, in each compare-and-set attempt: an upload
    that writes one of the pages after that read settles the batches after it, and its save
    either comes after this one or makes this one conflict (then it is done again from fresh
    reads). So the batch that wrote a page last is the one that ends up counting it.
    One bulk read of the batches, one of the pages, one bulk save of those that change."""
    batches, pages = Batch.objects.bind(scope), Page.objects.bind(scope)
    batch_kv_ids = [batches.kv_id(project_id=project_id, batch_id=b) for b in sorted(batch_ids)]
    page_kv_ids = {pages.kv_id(project_id=project_id, page_id=pk): pk for pk in page_ids}
    if not batch_kv_ids or not page_kv_ids:
        return

    def update() -> None:
        found = batches.get_many(batch_kv_ids)
        if not found:
            return
        live = {
            page_kv_ids[kv_id]: page for kv_id, page in pages.get_many(list(page_kv_ids)).items()
        }
        changed = []
        for batch in found.values():
            entries = dict(batch.get("pages"))
            before = dict(entries)
            for pk in page_kv_ids.values():
                page = live.get(pk)
                if page is None or page.get("batch_id") != batch.get("batch_id"):
                    entries.pop(pk, None)
                elif pk not in entries:
                    entries[pk] = {
                        "status": page.get("status"),
                        "uploaded": page.get("uploaded") or stamp,
                        "page_version": page.get("_version"),
                    }
            if entries != before:
                recount(batch, entries)
                changed.append(batch)
        if changed:
            batches.bulk_save(changed)

    retry(update)


def log_entry(move: Move, stamp: str, data: dict[str, Any]) -> dict[str, Any]:
    failed = move.event in ("retry", "fail") or (move.event == "status" and move.target == "failed")
    return {
        "timestamp": stamp,
        "level": "error" if failed else "info",
        "step": LOG_STEPS[move.event],
        "message": move.log,
        "data": data,
    }


def append_logs(scope: Scope, project_id: str, entries: Mapping[str, dict[str, Any]]) -> None:
    """Append one entry to each page's log, in one bulk read and one bulk save."""
    logs = PageLog.objects.bind(scope)
    ids_ = {logs.kv_id(project_id=project_id, page_id=pk): pk for pk in entries}

    def update() -> None:
        found = logs.get_many(list(ids_))
        changed = []
        for kv_id, pk in ids_.items():
            log = found.get(kv_id)
            if log is None:
                new = logs.new(project_id=project_id, page_id=pk, entries=[entries[pk]])
                new.set("entry_count", 1)
                changed.append(new)
                continue
            log.set(
                {
                    "entries": newest_within_bounds([*log.get("entries"), entries[pk]]),
                    "entry_count": log.get("entry_count") + 1,
                }
            )
            changed.append(log)
        logs.bulk_save(changed)

    retry(update)


def retry(update: Callable[[], T]) -> T:
    """Run a compare-and-set update, again from a fresh read whenever it hits ``Conflict``,
    after a short random pause that grows (the project's queue is shared by every worker)."""
    for attempt in range(RETRIES - 1):
        try:
            return update()
        except Conflict:
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
    return update()
