"""The upload move (``enqueue``): the rest of an upload after it wrote its pages, in bulk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from datamodel import Scope
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects

from ..models import Page, PageStatus
from .queue import fresh_item, set_items
from .records import append_logs, drop_from_batches, log_entry, retry, status_fields
from .table import DELETED, NEW, Move, find_move


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
            values = status_fields(page.get("status"), stamp)
            values.update(batch_id=page.get("batch_id"), page_version=page.get("_version"))
            if record is None:
                records.append(statuses.new(project_id=project_id, page_id=pk, **values))
            else:
                record.set(values)
                records.append(record)
        statuses.bulk_save(records)

    if live:
        retry(write_statuses)
    items: dict[str, dict[str, Any] | None] = {pk: None for pk in gone}
    for pk, page in live.items():
        items[pk] = fresh_item(page, stamp) if page.get("status") == "queued" else None
    set_items(scope, project_id, items)
    left: dict[str, list[str]] = defaultdict(list)
    for pk, batch_id in previous.items():
        if batch_id and batch_id != live[pk].get("batch_id"):
            left[batch_id].append(pk)
    for pk, page in gone.items():
        if page.get("batch_id"):
            left[page.get("batch_id")].append(pk)
    if left:
        retry(lambda: drop_from_batches(scope, project_id, left))
    if live:
        append_logs(
            scope,
            project_id,
            {
                pk: log_entry(moves[pk], stamp, {"batch_id": page.get("batch_id")})
                for pk, page in live.items()
            },
        )
