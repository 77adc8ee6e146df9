"""The routes' moves: ``/status/``, ``claim``, ``ack``, ``fail``, page delete, restore and
edit, each read-check-write of the page first, then the rest of the move."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Mapping
from typing import Any

from datamodel import DoesNotExist, Rejected, Scope, ValidationError
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects
from datastore import Conflict

from ..models import Page, PageStatus, Project, Queue
from ..usage import count_usage
from .queue import apply_queue, claimable, guarded, queue_item, reclaim, set_items
from .records import (
    NO_DETAIL,
    RETRIES,
    Detail,
    append_logs,
    log_entry,
    retry,
    status_fields,
    write_batch_entry,
    write_status,
)
from .table import DELETED, MAX_ATTEMPTS, Move, find_move


def set_status(
    scope: Scope,
    project_id: str,
    page_id: str,
    status: str,
    *,
    error: str | None = None,
    result: Any = None,
    current_step: str | None = None,
) -> Page:
    """``POST .../pages/{page_id}/status/``: the ``status`` move to ``status``. ``error`` is
    a failure's message, ``current_step`` the step of a page moved to ``processing``, and
    ``result`` (to ``done``) the page's optimization, as ``ack`` takes it."""
    stamp = now_iso()
    done = status == "done" and result is not None
    optimization = _optimization(result, None, stamp) if done else None
    detail = _detail(optimization, error=error, step=current_step)
    page, _ = _move_page(
        scope, project_id, page_id, "status", status, detail, optimization, stamp=stamp
    )
    return page


def claim(
    scope: Scope, project_id: str, *, current_step: str | None = None
) -> dict[str, Any] | None:
    """Take the highest-priority (then oldest) claimable item and move its page to
    ``processing`` (its status object's ``current_step`` is ``current_step``, else
    ``DEFAULT_STEP``); ``None`` if nothing is claimable. Items whose page is gone, or out of
    the queue by a later move, are dropped."""
    queues = Queue.objects.bind(scope)
    pages = Page.objects.bind(scope)
    skipped: set[str] = set()
    for _ in range(RETRIES * 4):
        queue = queues.get_or_none(project_id)
        if queue is None:
            return None
        now = dt.datetime.now(dt.UTC)
        candidates = [
            item
            for item in queue.get("items")
            if item["page_id"] not in skipped and claimable(item, now)
        ]
        if not candidates:
            return None
        item = min(candidates, key=lambda i: (-i["priority"], i["queued_at"]))
        page = pages.get_or_none(project_id=project_id, page_id=item["page_id"])
        seen = item.get("page_version") or 0
        stale = page is not None and page.get("status") not in ("queued", "processing")
        if page is None or (stale and seen < page.get("_version")):
            # deleted, or out of the queue since, its item left behind (a late write of an
            # earlier move): drop that item
            set_items(scope, project_id, {item["page_id"]: guarded(seen, None)})
            continue
        expected = "processing" if item.get("claimed_at") else "queued"
        if page.get("status") != expected:  # moving just now: leave it to that move
            skipped.add(page.pk)
            continue
        move = find_move(expected, "claim", page_id=page.pk)
        stamp = now_iso()
        if move.source == move.target:
            # an expired claim taken again: the page does not change, so the queue decides
            claimed = reclaim(scope, project_id, page.pk, item["claimed_at"], stamp)
            if claimed is None:
                continue
        else:
            page.set("status", move.target)
            try:
                page.save()
            except Conflict:
                continue  # the page moved meanwhile: look again
            claimed = apply_queue(scope, project_id, page, move, stamp)
            if claimed is None or claimed.get("claimed_at") != stamp:
                continue  # a later move of the page wrote its item first: look again
        _follow(scope, page, move, stamp, Detail(step=current_step))
        return claimed
    return None


def ack(
    scope: Scope,
    project_id: str,
    page_id: str,
    result: Any = None,
    *,
    optimization: Mapping[str, Any] | None = None,
) -> Page:
    """The worker finished: the page is done, its item leaves the queue. The page's
    ``optimization`` becomes ``optimization`` (``model``, ``confidence``, ``changes``,
    ``optimized_blocks``, as given) over ``result`` (a free-form object, as this route took
    before), with ``completed`` set to now; the status object's ``result`` shows its
    ``changes`` and ``confidence``."""
    stamp = now_iso()
    done = _optimization(result, optimization, stamp)
    detail = _detail(done)
    page, _ = _move_page(scope, project_id, page_id, "ack", None, detail, done, stamp=stamp)
    return page


def fail(
    scope: Scope, project_id: str, page_id: str, error: str, *, code: str | None = None
) -> tuple[Page, bool]:
    """The worker failed: the page is queued again while attempts remain (``retry``), else it
    fails; its status object's ``error`` carries ``error`` and ``code`` (``FAILED`` if none).
    Returns the page and whether it will be retried."""
    item = queue_item(scope, project_id, page_id)
    again = item is not None and item.get("attempts", 0) < MAX_ATTEMPTS
    event = "retry" if again else "fail"
    page, _ = _move_page(scope, project_id, page_id, event, None, Detail(error=error, code=code))
    return page, again


def report_progress(
    scope: Scope,
    project_id: str,
    page_id: str,
    *,
    progress: int | None = None,
    current_step: str | None = None,
) -> PageStatus:
    """A worker's report on a processing page: its status object's ``processing`` takes the
    new ``progress`` (0-100) and ``current_step`` (either may be left out). Not a move: the
    page, its queue item, batch entry and log do not change. ``Rejected`` unless the page is
    ``processing``; the status object written (compare-and-set on a fresh read, and never over
    one that shows a later version of the page)."""
    pages, statuses = Page.objects.bind(scope), PageStatus.objects.bind(scope)
    for attempt in range(RETRIES):
        page = pages.get(project_id=project_id, page_id=page_id)
        if page.get("status") != "processing":
            raise Rejected(
                f"page {page_id!r} is {page.get('status')!r}: only a page that is "
                "'processing' can report progress"
            )
        record = statuses.get_or_none(project_id=project_id, page_id=page_id)
        version = page.get("_version")
        if record is not None and (record.get("page_version") or 0) > version:
            continue  # the page moved since it was read: read it again
        stamp = now_iso()
        current = record.get("processing") if record is not None else None
        if not current or record is None or record.get("page_version") != version:
            current = status_fields("processing", stamp)["processing"]
        processing = dict(current)
        if progress is not None:
            processing["progress"] = progress
        if current_step is not None:
            processing["current_step"] = current_step
        values = {
            **status_fields("processing", stamp),
            "processing": processing,
            "batch_id": page.get("batch_id"),
            "page_version": version,
        }
        try:
            if record is None:
                return statuses.create(project_id=project_id, page_id=page_id, **values)
            record.set(values)
            return record.save()
        except Conflict:
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
    raise Conflict(f"page {page_id!r} kept changing while its progress was reported")


def _optimization(
    result: Any, optimization: Mapping[str, Any] | None, stamp: str
) -> dict[str, Any]:
    """A done page's ``optimization``: ``optimization`` over ``result`` (a non-object result is
    kept under ``result``), ``completed`` at ``stamp``."""
    if result is None:
        base: dict[str, Any] = {}
    elif isinstance(result, Mapping):
        base = dict(result)
    else:
        base = {"result": result}
    return {**base, **(optimization or {}), "completed": stamp}


def _detail(
    optimization: Mapping[str, Any] | None, *, error: str | None = None, step: str | None = None
) -> Detail:
    done = optimization or {}
    return Detail(
        step=step, changes=done.get("changes"), confidence=done.get("confidence"), error=error
    )


def delete(scope: Scope, project_id: str, page_id: str) -> None:
    """Delete a page (soft): its queue item goes, its batch no longer counts it, its status
    object is soft-deleted with it; the project's usage counts it no more. ``DoesNotExist`` if
    it is not there."""
    _move_page(scope, project_id, page_id, "delete")
    count_usage(scope, project_id)


def restore(scope: Scope, project_id: str, page_id: str) -> Page:
    """Bring back a deleted page in the status it was deleted in: its status object is
    restored, its batch counts it again (if that batch is live), a queued page gets a fresh
    queue item and a processing one a claimed item; the project's usage counts it again.
    ``DoesNotExist`` if the page is not there
    or not deleted; ``Rejected`` while its project is deleted (restore the project first)."""
    project = Project.objects.bind(scope).get(project_id, include_deleted=True)
    pages = Page.objects.bind(scope)
    for attempt in range(RETRIES):
        page = pages.get(project_id=project_id, page_id=page_id, include_deleted=True)
        if not page.get("deleted_at"):
            raise DoesNotExist(f"page {page_id!r} is not deleted")
        if project.get("deleted_at"):
            raise Rejected(
                f"page {page_id!r} cannot be restored: its project {project_id!r} is deleted; "
                "restore the project first"
            )
        move = find_move(DELETED, "restore", page.get("status"), page_id=page_id)
        try:
            restored = restore_objects([page], scope)
        except Conflict:
            restored = 0
        except ValidationError:  # its project was deleted since it was read: say so
            project = Project.objects.bind(scope).get(project_id, include_deleted=True)
            if not project.get("deleted_at"):
                raise
            continue
        if restored:
            break
        if attempt == RETRIES - 1:
            raise Conflict(f"page {page_id!r} kept changing while it was restored")
        # restored by another request meanwhile (then 404: not deleted), or changed: again
        project = Project.objects.bind(scope).get(project_id, include_deleted=True)
    page = pages.get(project_id=project_id, page_id=page_id)
    stamp = now_iso()
    apply_queue(scope, project_id, page, move, stamp)
    _follow(scope, page, move, stamp)
    count_usage(scope, project_id)
    return page


def edit(scope: Scope, project_id: str, page_id: str, values: Mapping[str, Any]) -> Page:
    """Change a page's own fields (``priority``, ``extraction``), not its status: saved from a
    fresh read on ``Conflict``. A queued or processing page's queue item takes the new
    priority. ``DoesNotExist`` if the page is not there."""
    pages = Page.objects.bind(scope)
    for attempt in range(RETRIES):
        page = pages.get(project_id=project_id, page_id=page_id)
        page.set(dict(values))
        try:
            page.save()
        except Conflict:
            if attempt == RETRIES - 1:
                raise
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            continue
        break
    if "priority" in values and page.get("status") in ("queued", "processing"):
        priority = page.get("priority")

        def reprioritize(item: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if item is None else {**item, "priority": priority}

        set_items(scope, project_id, {page.pk: guarded(page.get("_version"), reprioritize)})
    return page


def _move_page(
    scope: Scope,
    project_id: str,
    page_id: str,
    event: str,
    target: str | None = None,
    detail: Detail = NO_DETAIL,
    optimization: dict[str, Any] | None = None,
    *,
    stamp: str | None = None,
) -> tuple[Page, Move]:
    """Read the page, find the move, write the page (again from a fresh read if it changed
    meanwhile; ``optimization`` with it, if given), then the rest of the move."""
    pages = Page.objects.bind(scope)
    for attempt in range(RETRIES):
        page = pages.get(project_id=project_id, page_id=page_id)
        move = find_move(page.get("status"), event, target, page_id=page_id)
        try:
            if move.target == DELETED:
                page.delete()
            else:
                page.set("status", move.target)
                if optimization is not None:
                    page.set("optimization", optimization)
                page.save()
        except Conflict:
            if attempt == RETRIES - 1:
                raise
            continue
        break
    stamp = stamp or now_iso()
    apply_queue(scope, project_id, page, move, stamp)
    _follow(scope, page, move, stamp, detail)
    return page, move


def _follow(scope: Scope, page: Page, move: Move, stamp: str, detail: Detail = NO_DETAIL) -> None:
    """After the page and its queue item: the status object, the batch entry, the log."""
    project_id = page.get("project_id")
    retry(lambda: write_status(scope, page, move, stamp, detail))
    if page.get("batch_id"):
        retry(lambda: write_batch_entry(scope, page, move, stamp, detail))
    data: dict[str, Any] = {"from": move.source, "to": move.target}
    if detail.error:
        data["error"] = detail.error
    append_logs(scope, project_id, {page.pk: log_entry(move, stamp, data)})
