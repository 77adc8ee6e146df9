"""The upload move (``enqueue``): the rest of an upload after it wrote its pages, in bulk."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from datamodel import Scope
from datamodel.clock import now_iso
from datamodel.deletion import restore_objects

from ..models import Page, PageStatus
from .queue import Change, fresh_item, guarded, set_items
from .records import append_logs, log_entry, retry, settle_batches, status_fields
from .table import DELETED, NEW, Move, find_move


def enqueue(
    scope: Scope,
    pages: Sequence[Page],
    *,
    stamp: str | None = None,
    left: Iterable[str | None] = (),
) -> None:
    """The ``upload`` move, for pages an upload has just written (created, or replaced: same path,
    same id), all of one project, each saved with its new ``batch_id`` and the status the upload
    gives it: ``queued`` (a batch of many; a path uploaded again), or ``uploaded`` (a new page
    uploaded on its own, in a batch of one). ``left`` names the batches the pages were in
    before, as the upload read them when it wrote them (every attempt's read). Call it right
    after writing the pages; it writes the rest of the move in bulk:

    * each page's status object (created, or restored if it had been deleted with its page);
    * its queue item: a fresh one for a ``queued`` page, replacing any earlier one, claimed or
      not (attempts start again; a worker still holding the old claim can no longer ack it);
      none for an ``uploaded`` page;
    * the batch page maps: each batch in ``left``, the pages' new batch and the batches their
      status objects name count exactly those of the pages that are live in them now, as the
      pages read afresh say (``records.settle_batches``); so of two uploads of the same path
      the batch that wrote the page last counts it, whichever upload gets here first;
    * a log entry (step ``upload``).

    The status object and the queue item are not overwritten when they already show a later
    version of the page (another upload's or a move's, written first). A page still
    soft-deleted (an upload that did not bring it back) is not queued and no batch counts it,
    so nothing deleted is ever claimable or counted.

    Round trips do not grow with the number of pages: status objects 1 KV read + 1 save (and
    a restore if some were deleted), the queue 1 read + 1 save, the batches 1 read, the pages
    1 read (and 1 save of the batches whose maps change), the logs 1 read + 1 save."""
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
    batch_ids = {batch_id for batch_id in left if batch_id}
    batch_ids |= {page.get("batch_id") for page in pages if page.get("batch_id")}

    def write_statuses() -> None:
        found = statuses.get_many(list(ids_), include_deleted=True)
        later = set()  # status objects that show a later version of their page already
        for kv_id, pk in ids_.items():
            record, page = found.get(kv_id), live[pk]
            source = NEW  # also for a page created just now beside a stale status object
            if record is not None and page.get("_version") != 1:
                source = DELETED if record.get("deleted_at") else record.get("status")
            if record is not None:
                if record.get("batch_id"):
                    batch_ids.add(record.get("batch_id"))
                if (record.get("page_version") or 0) > page.get("_version"):
                    later.add(kv_id)
            moves[pk] = find_move(source, "upload", page.get("status"), page_id=pk)
        deleted = [
            record
            for kv_id, record in found.items()
            if record.get("deleted_at") and kv_id not in later
        ]
        if deleted:
            restore_objects(deleted, scope)
            found.update(statuses.get_many([record.kv_id for record in deleted]))
        records = []
        for kv_id, pk in ids_.items():
            if kv_id in later:
                continue
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
    items: dict[str, Change] = {
        pk: guarded(page.get("_version"), None) for pk, page in gone.items()
    }
    for pk, page in live.items():
        item = fresh_item(page, stamp) if page.get("status") == "queued" else None
        items[pk] = guarded(page.get("_version"), item)
    set_items(scope, project_id, items)
    settle_batches(scope, project_id, batch_ids, [page.pk for page in pages], stamp)
    if live:
        append_logs(
            scope,
            project_id,
            {
                pk: log_entry(moves[pk], stamp, {"batch_id": page.get("batch_id")})
                for pk, page in live.items()
            },
        )
