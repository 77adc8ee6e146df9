"""The page lifecycle: one state machine for a page's status and everything that follows it.

A page's state shows in four places: the page's ``status``, its status object
(``status:{project_id}:{page_id}``), its entry in its batch's page map (and so the batch's
summary and status), and its item in the project's queue (``queue:{project_id}``). Every route
that changes a page's state makes one move of ``MOVES``: ``/status/`` (``set_status``),
``claim``, ``ack``, ``fail`` (a retry while attempts remain, else final), page delete
(``delete``), page restore (``restore``: the page comes back in the status it was deleted in)
and upload (``enqueue``, which the upload workflow calls for the pages it wrote).
Each row says from which state an event goes to which one, and what that does to the queue
item; the status object, the batch entry and the log follow from the target state. So after
every move:

* a page is in its project's queue iff its status is ``queued`` or ``processing``; it is
  claimable iff it is ``queued`` (its item unclaimed), or ``processing`` with a claim older
  than ``CLAIM_TIMEOUT`` (the worker is presumed lost; the claim is taken again);
* its status object and its batch entry show its status; a deleted page has no queue item, no
  batch entry (the batch's ``page_count`` and summary shrink) and a soft-deleted status object;
* an event the page's state does not allow is ``Rejected`` (409) with a message naming the
  states, and nothing is written.

Order of writes. There is no transaction across KV objects, so a move writes the page first:
its compare-and-set is the move's lock (of two moves from one state, one saves; the other reads
the page again and is checked again). Then it sets the page's queue item, status object, batch
entry and log entry, each a compare-and-set retried from a fresh read on ``Conflict`` (with a
short growing random pause: every worker shares the project's queue), so no "version
mismatch" reaches a user for work nobody else touched. The next move of the page may start as
soon as the page is written, so the late writes of one move could land after those of the
next: the status object and the batch entry carry the page's ``_version`` as
``page_version`` and are not overwritten by an older one (as the metadata upsert's version
guard), nor written back once the page was deleted or left the batch. The queue item is gated
instead: a worker's next move of a page needs the claim, which the previous move's queue write
makes or releases. Only a ``/status/`` move racing a worker's move of the same page can leave
the queue item behind the page. ``claim`` picks an item from the queue, then moves its page;
an item whose page is gone is dropped, one whose page is not in the state the item implies
(moving just now) is skipped. A process that dies between the page write and the rest leaves
them behind the page until the page's next move (``nimbus_sync`` does not reconcile them).

Cost of one move: the page (1 KV read, 1 save), the queue, status object, batch and log
(1 KV read and 1 save each, the queue only for moves that change it). ``enqueue`` is bulk:
its round trips do not grow with the number of pages.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from datamodel import DoesNotExist, Rejected, Scope, ValidationError
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects
from datastore import Conflict

from .models import Batch, Page, PageLog, PageStatus, Project, Queue
from .models.batch import batch_status, summarize
from .models.logs import newest_within_bounds
from .models.page import PAGE_STATUSES

__all__ = [
    "CLAIM_TIMEOUT",
    "DELETED",
    "MAX_ATTEMPTS",
    "MOVES",
    "NEW",
    "Move",
    "ack",
    "claim",
    "delete",
    "edit",
    "enqueue",
    "fail",
    "find_move",
    "reconcile",
    "restore",
    "set_status",
]

MAX_ATTEMPTS = 3  # a failed item goes back to the queue until it has been tried this often
CLAIM_TIMEOUT = dt.timedelta(minutes=15)  # a claim not acked by then may be claimed again
NEW = "new"  # the state before a page's first upload
DELETED = "deleted"  # the state after a page's delete
_RETRIES = 16

T = TypeVar("T")


@dataclass(frozen=True)
class Move:
    """One row of the state machine: ``event`` takes a page from ``source`` to ``target``.

    ``queue`` is what happens to the page's item in the project's queue: ``add`` (a fresh,
    unclaimed item: attempts 0), ``claim`` (claimed now, one more attempt), ``release``
    (unclaimed again, attempts kept), ``remove``. ``log`` is the page log's entry.
    """

    source: str
    event: str  # upload | status | claim | ack | retry | fail | delete | restore
    target: str
    queue: str
    log: str


MOVES: tuple[Move, ...] = (
    # An upload (a batch, or the same path uploaded again) starts the page afresh from any
    # state: a re-uploaded page is queued again with no attempts, whatever it was doing.
    Move(NEW, "upload", "queued", "add", "uploaded and queued"),
    Move(NEW, "upload", "uploaded", "remove", "uploaded"),  # a single page, on its own
    *(Move(s, "upload", "queued", "add", "uploaded again, queued afresh") for s in PAGE_STATUSES),
    Move(DELETED, "upload", "queued", "add", "uploaded again after its delete, queued"),
    # Moves through /status/: along uploaded -> queued -> processing -> done | failed.
    Move("uploaded", "status", "queued", "add", "queued"),
    Move("queued", "status", "processing", "claim", "processing"),
    Move("processing", "status", "done", "remove", "done"),
    Move("processing", "status", "failed", "remove", "failed"),
    # The queue's routes.
    Move("queued", "claim", "processing", "claim", "claimed"),
    Move("processing", "claim", "processing", "claim", "claimed again: the last claim expired"),
    Move("processing", "ack", "done", "remove", "done"),
    Move("processing", "retry", "queued", "release", "failed; queued for another attempt"),
    Move("processing", "fail", "failed", "remove", "failed; no attempts left"),
    # A delete takes the page out of its queue and its batch, from any state.
    *(Move(s, "delete", DELETED, "remove", "deleted") for s in PAGE_STATUSES),
    # A restore brings a deleted page back in the status it was deleted in (its project must
    # be live): its status object and batch entry come back, and a queued page re-enters the
    # queue afresh. A processing page's worker lost its item with the delete: the page comes
    # back claimed now, so its worker may still ack it, or it is claimed again after
    # CLAIM_TIMEOUT, like any claim nobody acks.
    Move(DELETED, "restore", "uploaded", "remove", "restored"),
    Move(DELETED, "restore", "queued", "add", "restored, queued again"),
    Move(DELETED, "restore", "processing", "claim", "restored, claimed again"),
    Move(DELETED, "restore", "done", "remove", "restored"),
    Move(DELETED, "restore", "failed", "remove", "restored"),
)

# The log step (the spec's "upload" | "queue" | "process") each event's entry is filed under.
_LOG_STEPS = {
    "upload": "upload",
    "status": "queue",
    "claim": "queue",
    "delete": "queue",
    "restore": "queue",
    "ack": "process",
    "retry": "process",
    "fail": "process",
}

_TABLE: dict[tuple[str, str], dict[str, Move]] = defaultdict(dict)
for _move in MOVES:
    _TABLE[(_move.source, _move.event)][_move.target] = _move

_VERBS = {
    "claim": "claimed",
    "ack": "acked",
    "retry": "failed",
    "fail": "failed",
    "delete": "deleted",
    "restore": "restored",
    "upload": "uploaded",
}


def find_move(source: str, event: str, target: str | None = None, *, page_id: str = "") -> Move:
    """The move ``event`` makes from ``source`` (to ``target``, for ``/status/``); ``Rejected``
    with a message naming the states if there is none."""
    moves = _TABLE.get((source, event), {})
    if target is None and len(moves) == 1:
        return next(iter(moves.values()))
    if target is not None and target in moves:
        return moves[target]
    name = f"page {page_id!r}" if page_id else "a page"
    if event == "status":
        targets = ", ".join(repr(t) for t in sorted(moves)) or f"nowhere: {source!r} is final"
        raise Rejected(f"{name} cannot go from {source!r} to {target!r}; it may go to {targets}")
    sources = sorted({move.source for move in MOVES if move.event == event} - {NEW, DELETED})
    raise Rejected(
        f"{name} is {source!r}: only a page that is {' or '.join(repr(s) for s in sources)} "
        f"can be {_VERBS.get(event, event)}"
    )


# -- the routes ------------------------------------------------------------------------------


def set_status(
    scope: Scope,
    project_id: str,
    page_id: str,
    status: str,
    *,
    error: str | None = None,
    result: Any = None,
) -> Page:
    """``POST .../pages/{page_id}/status/``: the ``status`` move to ``status``."""
    page, _ = _move_page(scope, project_id, page_id, "status", status, error=error, result=result)
    return page


def claim(scope: Scope, project_id: str) -> dict[str, Any] | None:
    """Take the highest-priority (then oldest) claimable item and move its page to
    ``processing``; ``None`` if nothing is claimable. Items whose page is gone are dropped."""
    queues = Queue.objects.bind(scope)
    pages = Page.objects.bind(scope)
    skipped: set[str] = set()
    for _ in range(_RETRIES * 4):
        queue = queues.get_or_none(project_id)
        if queue is None:
            return None
        now = dt.datetime.now(dt.UTC)
        candidates = [
            item
            for item in queue.get("items")
            if item["page_id"] not in skipped and _claimable(item, now)
        ]
        if not candidates:
            return None
        item = min(candidates, key=lambda i: (-i["priority"], i["queued_at"]))
        page = pages.get_or_none(project_id=project_id, page_id=item["page_id"])
        if page is None:  # deleted, with its queue item left behind: drop it
            _set_items(scope, project_id, {item["page_id"]: None})
            continue
        expected = "processing" if item.get("claimed_at") else "queued"
        if page.get("status") != expected:  # moving just now: leave it to that move
            skipped.add(page.pk)
            continue
        move = find_move(expected, "claim", page_id=page.pk)
        stamp = now_iso()
        if move.source == move.target:
            # an expired claim taken again: the page does not change, so the queue decides
            claimed = _reclaim(scope, project_id, page.pk, item["claimed_at"], stamp)
            if claimed is None:
                continue
        else:
            page.set("status", move.target)
            try:
                page.save()
            except Conflict:
                continue  # the page moved meanwhile: look again
            claimed = _apply_queue(scope, project_id, page, move, stamp)
        _follow(scope, page, move, stamp)
        return claimed
    return None


def ack(scope: Scope, project_id: str, page_id: str, result: Any = None) -> Page:
    """The worker finished: the page is done, its item leaves the queue."""
    page, _ = _move_page(scope, project_id, page_id, "ack", result=result)
    return page


def fail(scope: Scope, project_id: str, page_id: str, error: str) -> tuple[Page, bool]:
    """The worker failed: the page is queued again while attempts remain (``retry``), else it
    fails. Returns the page and whether it will be retried."""
    item = _queue_item(scope, project_id, page_id)
    retry = item is not None and item.get("attempts", 0) < MAX_ATTEMPTS
    page, _ = _move_page(scope, project_id, page_id, "retry" if retry else "fail", error=error)
    return page, retry


def delete(scope: Scope, project_id: str, page_id: str) -> None:
    """Delete a page (soft): its queue item goes, its batch no longer counts it, its status
    object is soft-deleted with it. ``DoesNotExist`` if it is not there."""
    _move_page(scope, project_id, page_id, "delete")


def restore(scope: Scope, project_id: str, page_id: str) -> Page:
    """Bring back a deleted page in the status it was deleted in: its status object is
    restored, its batch counts it again (if that batch is live), a queued page gets a fresh
    queue item and a processing one a claimed item. ``DoesNotExist`` if the page is not there
    or not deleted; ``Rejected`` while its project is deleted (restore the project first)."""
    project = Project.objects.bind(scope).get(project_id, include_deleted=True)
    pages = Page.objects.bind(scope)
    for attempt in range(_RETRIES):
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
        if attempt == _RETRIES - 1:
            raise Conflict(f"page {page_id!r} kept changing while it was restored")
        # restored by another request meanwhile (then 404: not deleted), or changed: again
        project = Project.objects.bind(scope).get(project_id, include_deleted=True)
    page = pages.get(project_id=project_id, page_id=page_id)
    stamp = now_iso()
    _apply_queue(scope, project_id, page, move, stamp)
    _follow(scope, page, move, stamp)
    return page


def edit(scope: Scope, project_id: str, page_id: str, values: Mapping[str, Any]) -> Page:
    """Change a page's own fields (``priority``, ``extraction``), not its status: saved from a
    fresh read on ``Conflict``. A queued or processing page's queue item takes the new
    priority. ``DoesNotExist`` if the page is not there."""
    pages = Page.objects.bind(scope)
    for attempt in range(_RETRIES):
        page = pages.get(project_id=project_id, page_id=page_id)
        page.set(dict(values))
        try:
            page.save()
        except Conflict:
            if attempt == _RETRIES - 1:
                raise
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
            continue
        break
    if "priority" in values and page.get("status") in ("queued", "processing"):
        priority = page.get("priority")

        def reprioritize(item: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if item is None else {**item, "priority": priority}

        _set_items(scope, project_id, {page.pk: reprioritize})
    return page


def enqueue(scope: Scope, pages: Sequence[Page], *, stamp: str | None = None) -> None:
    """The ``upload`` move, for pages an upload has just written (created, or replaced: same
    path, same id), all of one project, each saved with its new ``batch_id`` and the status
    the upload gives it: ``queued`` (a batch; a path uploaded again), or ``uploaded`` (a new
    page uploaded on its own). Call it right after writing the pages; it writes the rest of
    the move in bulk:

    * each page's status object (created, or restored if it had been deleted with its page);
    * its queue item: a fresh one for a ``queued`` page, replacing any earlier one, claimed or
      not (attempts start again; a worker still holding the old claim can no longer ack it);
      none for an ``uploaded`` page;
    * the page leaves the batch it was in before, if another (that batch's ``page_count`` and
      summary shrink); the new batch's page map is the upload's to write;
    * a log entry (step ``upload``).

    A page still soft-deleted (an upload that did not bring it back) is not queued and is
    dropped from its batch's page map, so nothing deleted is ever claimable or counted.

    Round trips do not grow with the number of pages: status objects 1 KV read + 1 save (and
    a restore if some were deleted), the queue 1 read + 1 save, the batches left behind 1
    read + 1 save when there are any, the logs 1 read + 1 save."""
    if not pages:
        return
    project_ids = {page.get("project_id") for page in pages}
    if len(project_ids) != 1:
        raise ValueError("enqueue() takes the pages of one project")
    for page in pages:
        if page.is_new() or page.get("status") not in ("queued", "uploaded"):
            raise ValueError(f"enqueue() takes saved, queued or uploaded pages, not {page!r}")
    (project_id,) = project_ids
    stamp = stamp or now_iso()
    live = {page.pk: page for page in pages if not page.get("deleted_at")}
    gone = {page.pk: page for page in pages if page.get("deleted_at")}
    statuses = PageStatus.objects.bind(scope)
    ids_ = {statuses.kv_id(project_id=project_id, page_id=pk): pk for pk in live}
    moves: dict[str, Move] = {}
    previous: dict[str, str | None] = {}

    def write_statuses() -> None:
        found = statuses.get_many(list(ids_), include_deleted=True)
        for kv_id, pk in ids_.items():
            record, page = found.get(kv_id), live[pk]
            source = NEW  # also for a page created just now beside a stale status object
            if record is not None and page.get("_version") != 1:
                source = DELETED if record.get("deleted_at") else record.get("status")
            if record is not None:
                previous[pk] = record.get("batch_id")
            moves[pk] = find_move(source, "upload", page.get("status"), page_id=pk)
        deleted = [record for record in found.values() if record.get("deleted_at")]
        if deleted:
            restore_objects(deleted, scope)
            found.update(statuses.get_many([record.kv_id for record in deleted]))
        records = []
        for kv_id, pk in ids_.items():
            record, page = found.get(kv_id), live[pk]
            values = _status_fields(page.get("status"), stamp)
            values.update(batch_id=page.get("batch_id"), page_version=page.get("_version"))
            if record is None:
                records.append(statuses.new(project_id=project_id, page_id=pk, **values))
            else:
                record.set(values)
                records.append(record)
        statuses.bulk_save(records)

    if live:
        _retry(write_statuses)
    items: dict[str, dict[str, Any] | None] = {pk: None for pk in gone}
    for pk, page in live.items():
        items[pk] = _fresh_item(page, stamp) if page.get("status") == "queued" else None
    _set_items(scope, project_id, items)
    left: dict[str, list[str]] = defaultdict(list)
    for pk, batch_id in previous.items():
        if batch_id and batch_id != live[pk].get("batch_id"):
            left[batch_id].append(pk)
    for pk, page in gone.items():
        if page.get("batch_id"):
            left[page.get("batch_id")].append(pk)
    if left:
        _retry(lambda: _drop_from_batches(scope, project_id, left))
    if live:
        _append_logs(
            scope,
            project_id,
            {
                pk: _log_entry(moves[pk], stamp, {"batch_id": page.get("batch_id")})
                for pk, page in live.items()
            },
        )


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
        _set_items(scope, project_id, fixes)
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
            record.set(_status_fields(row["status"], stamp))
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
            _recount(batch, entries)
            batch.save()  # a Conflict: the batch moved meanwhile; run it again
    return found


# -- one move --------------------------------------------------------------------------------


def _move_page(
    scope: Scope,
    project_id: str,
    page_id: str,
    event: str,
    target: str | None = None,
    *,
    error: str | None = None,
    result: Any = None,
) -> tuple[Page, Move]:
    """Read the page, find the move, write the page (again from a fresh read if it changed
    meanwhile), then the rest of the move."""
    pages = Page.objects.bind(scope)
    for attempt in range(_RETRIES):
        page = pages.get(project_id=project_id, page_id=page_id)
        move = find_move(page.get("status"), event, target, page_id=page_id)
        try:
            if move.target == DELETED:
                page.delete()
            else:
                page.set("status", move.target)
                if result is not None:
                    page.set("optimization", result)
                page.save()
        except Conflict:
            if attempt == _RETRIES - 1:
                raise
            continue
        break
    stamp = now_iso()
    _apply_queue(scope, project_id, page, move, stamp)
    _follow(scope, page, move, stamp, error=error, result=result)
    return page, move


def _follow(
    scope: Scope,
    page: Page,
    move: Move,
    stamp: str,
    *,
    error: str | None = None,
    result: Any = None,
) -> None:
    """After the page and its queue item: the status object, the batch entry, the log."""
    project_id = page.get("project_id")
    _retry(lambda: _write_status(scope, page, move, stamp, error=error, result=result))
    if page.get("batch_id"):
        _retry(lambda: _write_batch_entry(scope, page, move, stamp, error=error))
    data: dict[str, Any] = {"from": move.source, "to": move.target}
    if error:
        data["error"] = error
    _append_logs(scope, project_id, {page.pk: _log_entry(move, stamp, data)})


# -- the queue -------------------------------------------------------------------------------


def _claimable(item: dict[str, Any], now: dt.datetime) -> bool:
    claimed = item.get("claimed_at")
    if not claimed:
        return True
    claimed_at = dt.datetime.fromisoformat(claimed.replace("Z", "+00:00"))
    return now - claimed_at > CLAIM_TIMEOUT


def _fresh_item(page: Page, stamp: str) -> dict[str, Any]:
    return {
        "page_id": page.pk,
        "batch_id": page.get("batch_id"),
        "priority": page.get("priority"),
        "queued_at": stamp,
        "attempts": 0,
        "claimed_at": None,
    }


def _queue_item(scope: Scope, project_id: str, page_id: str) -> dict[str, Any] | None:
    queue = Queue.objects.bind(scope).get_or_none(project_id)
    items = queue.get("items") if queue is not None else []
    return next((dict(item) for item in items if item["page_id"] == page_id), None)


def _set_items(
    scope: Scope,
    project_id: str,
    changes: Mapping[str, dict[str, Any] | Callable[[dict[str, Any] | None], Any] | None],
    *,
    stamp: str | None = None,
) -> list[dict[str, Any]]:
    """Set each page's queue item: a dict replaces it, ``None`` removes it, a function gets the
    current item (or ``None``) and returns the new one (or ``None``). One compare-and-set,
    retried from a fresh read. Returns the items set."""

    def update() -> list[dict[str, Any]]:
        queues = Queue.objects.bind(scope)
        queue = queues.get_or_none(project_id)
        items = queue.get("items") if queue is not None else []
        current = {item["page_id"]: item for item in items}
        written: list[dict[str, Any]] = []
        for page_id, change in changes.items():
            new = change(current.get(page_id)) if callable(change) else change
            if new is None:
                current.pop(page_id, None)
            else:
                current[page_id] = new
                written.append(new)
        kept = [current[i["page_id"]] for i in items if i["page_id"] in current]
        seen = {item["page_id"] for item in kept}
        kept += [item for pid, item in current.items() if pid not in seen]
        if queue is None:
            if kept:
                queues.create(project_id=project_id, items=kept, last_processed=stamp)
            return written
        if kept == items and stamp is None:
            return written
        queue.set("items", kept)
        if stamp is not None:
            queue.set("last_processed", stamp)
        queue.save()
        return written

    return _retry(update)


def _apply_queue(
    scope: Scope, project_id: str, page: Page, move: Move, stamp: str
) -> dict[str, Any] | None:
    """Set the page's queue item as ``move.queue`` says. Returns the item (``None`` if gone)."""
    if move.queue == "remove":
        _set_items(scope, project_id, {page.pk: None})
        return None
    if move.queue == "add":
        return _set_items(scope, project_id, {page.pk: _fresh_item(page, stamp)})[0]
    if move.queue == "release":

        def release(item: dict[str, Any] | None) -> dict[str, Any]:
            base = item if item is not None else _fresh_item(page, stamp)
            return {**base, "claimed_at": None}

        return _set_items(scope, project_id, {page.pk: release})[0]

    if move.queue != "claim":
        raise ValueError(f"unknown queue effect {move.queue!r}")

    def take(item: dict[str, Any] | None) -> dict[str, Any]:
        base = item if item is not None else _fresh_item(page, stamp)
        return {**base, "claimed_at": stamp, "attempts": base.get("attempts", 0) + 1}

    return _set_items(scope, project_id, {page.pk: take}, stamp=stamp)[0]


class _Lost(Exception):
    """Another claimer took the expired claim first."""


def _reclaim(
    scope: Scope, project_id: str, page_id: str, seen: str, stamp: str
) -> dict[str, Any] | None:
    """Take an expired claim again, unless another claimer did since it was read (then
    ``None``)."""

    def take(item: dict[str, Any] | None) -> dict[str, Any]:
        if item is None or item.get("claimed_at") != seen:
            raise _Lost
        return {**item, "claimed_at": stamp, "attempts": item.get("attempts", 0) + 1}

    try:
        return _set_items(scope, project_id, {page_id: take}, stamp=stamp)[0]
    except _Lost:
        return None


# -- the status object, the batch entry, the log ---------------------------------------------


def _status_fields(
    status: str, stamp: str, *, error: str | None = None, result: Any = None
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "status": status,
        "updated": stamp,
        "processing": None,
        "result": None,
        "error": None,
    }
    if status == "processing":
        fields["processing"] = {"started": stamp, "current_step": "queued", "progress": 0}
    if status == "done":
        fields["result"] = {"completed": stamp, "success": True}
        if isinstance(result, dict):
            for name in ("changes", "confidence"):
                if name in result:
                    fields["result"][name] = result[name]
    if error:
        fields["error"] = {"message": error, "code": "FAILED", "timestamp": stamp}
    return fields


def _write_status(
    scope: Scope,
    page: Page,
    move: Move,
    stamp: str,
    *,
    error: str | None = None,
    result: Any = None,
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
    values = _status_fields(move.target, stamp, error=error, result=result)
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


def _recount(batch: Batch, pages: dict[str, dict[str, Any]]) -> None:
    summary = summarize(pages)
    batch.set({"pages": pages, "summary": summary, "page_count": len(pages)})
    batch.set("status", batch_status(summary, len(pages)))


def _write_batch_entry(
    scope: Scope, page: Page, move: Move, stamp: str, *, error: str | None = None
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
        if error:
            entry["error"] = error
        pages[page.pk] = entry
    _recount(batch, pages)
    batch.save()


def _drop_from_batches(scope: Scope, project_id: str, moved: Mapping[str, list[str]]) -> None:
    batches = Batch.objects.bind(scope)
    ids_ = [batches.kv_id(project_id=project_id, batch_id=batch_id) for batch_id in moved]
    changed = []
    for batch in batches.get_many(ids_).values():
        pages = dict(batch.get("pages"))
        dropped = [pk for pk in moved[batch.get("batch_id")] if pages.pop(pk, None) is not None]
        if dropped:
            _recount(batch, pages)
            changed.append(batch)
    if changed:
        batches.bulk_save(changed)


def _log_entry(move: Move, stamp: str, data: dict[str, Any]) -> dict[str, Any]:
    failed = move.event in ("retry", "fail") or (move.event == "status" and move.target == "failed")
    return {
        "timestamp": stamp,
        "level": "error" if failed else "info",
        "step": _LOG_STEPS[move.event],
        "message": move.log,
        "data": data,
    }


def _append_logs(scope: Scope, project_id: str, entries: Mapping[str, dict[str, Any]]) -> None:
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

    _retry(update)


def _retry(update: Callable[[], T]) -> T:
    """Run a compare-and-set update, again from a fresh read whenever it hits ``Conflict``,
    after a short random pause that grows (the project's queue is shared by every worker)."""
    for attempt in range(_RETRIES - 1):
        try:
            return update()
        except Conflict:
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
    return update()
