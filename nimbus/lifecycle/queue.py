"""The project's queue (``queue:{project_id}``): each page's item, set in one compare-and-set
of the whole queue, retried from a fresh read.

An item carries the ``_version`` of its page that it was written for (``page_version``), as
the status object and the batch entry do: a move or an upload sets the item only if it does
not show a later version of the page already (``guarded``), so a late write never replaces
the item of a later move (an older upload's fresh item a newer upload's claimed one, say).
Items written before items had a version count as version 0."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from datamodel import Scope

from ..models import Page, Queue
from .records import retry
from .table import Move

CLAIM_TIMEOUT = dt.timedelta(minutes=15)  # a claim not acked by then may be claimed again


def claimable(item: dict[str, Any], now: dt.datetime) -> bool:
    claimed = item.get("claimed_at")
    if not claimed:
        return True
    claimed_at = dt.datetime.fromisoformat(claimed.replace("Z", "+00:00"))
    return now - claimed_at > CLAIM_TIMEOUT


Item = dict[str, Any]
# A page's new item, no item (``None``), or a function of its current item (or ``None``).
Change = Item | Callable[[Item | None], Item | None] | None


def fresh_item(page: Page, stamp: str) -> Item:
    return {
        "page_id": page.pk,
        "batch_id": page.get("batch_id"),
        "priority": page.get("priority"),
        "queued_at": stamp,
        "attempts": 0,
        "claimed_at": None,
        "page_version": page.get("_version"),
    }


def guarded(version: int, change: Change) -> Callable[[Item | None], Item | None]:
    """``change``, written for version ``version`` of the page, unless the current item was
    written for a later version (then it is kept as it is)."""

    def apply(item: Item | None) -> Item | None:
        if item is not None and (item.get("page_version") or 0) > version:
            return item
        new = change(item) if callable(change) else change
        return None if new is None else {**new, "page_version": version}

    return apply


def queue_item(scope: Scope, project_id: str, page_id: str) -> dict[str, Any] | None:
    queue = Queue.objects.bind(scope).get_or_none(project_id)
    items = queue.get("items") if queue is not None else []
    return next((dict(item) for item in items if item["page_id"] == page_id), None)


def set_items(
    scope: Scope,
    project_id: str,
    changes: Mapping[str, Change],
    *,
    stamp: str | None = None,
) -> list[dict[str, Any]]:
    """Set each page's queue item: a dict replaces it, ``None`` removes it, a function gets the
    current item (or ``None``) and returns the new one (or ``None``). One compare-and-set,
    retried from a fresh read. Returns the items set (or kept by a function). A queue deleted
    with its project is not written (its restore brings it back as it was deleted)."""

    def update() -> list[dict[str, Any]]:
        queues = Queue.objects.bind(scope)
        queue = queues.get_or_none(project_id, include_deleted=True)
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
        if (kept == items and stamp is None) or queue.get("deleted_at"):
            return written  # deleted with its project (a move racing that delete): left be
        queue.set("items", kept)
        if stamp is not None:
            queue.set("last_processed", stamp)
        queue.save()
        return written

    return retry(update)


def apply_queue(scope: Scope, project_id: str, page: Page, move: Move, stamp: str) -> Item | None:
    """Set the page's queue item as ``move.queue`` says, unless the item shows a later version
    of the page. Returns the item now in the queue (``None`` if none)."""
    version = page.get("_version")
    change: Change
    if move.queue == "remove":
        change = None
    elif move.queue == "add":
        change = fresh_item(page, stamp)
    elif move.queue == "release":

        def change(item: Item | None) -> Item:
            base = item if item is not None else fresh_item(page, stamp)
            return {**base, "claimed_at": None}

    elif move.queue == "claim":

        def change(item: Item | None) -> Item:
            base = item if item is not None else fresh_item(page, stamp)
            return {**base, "claimed_at": stamp, "attempts": base.get("attempts", 0) + 1}

    else:
        raise ValueError(f"unknown queue effect {move.queue!r}")
    claims = move.queue == "claim"
    written = set_items(
        scope, project_id, {page.pk: guarded(version, change)}, stamp=stamp if claims else None
    )
    return written[0] if written else None


class _Lost(Exception):
    """Another claimer took the expired claim first."""


def reclaim(
    scope: Scope, project_id: str, page_id: str, seen: str, stamp: str
) -> dict[str, Any] | None:
    """Take an expired claim again, unless another claimer did since it was read (then
    ``None``)."""

    def take(item: dict[str, Any] | None) -> dict[str, Any]:
        if item is None or item.get("claimed_at") != seen:
            raise _Lost
        return {**item, "claimed_at": stamp, "attempts": item.get("attempts", 0) + 1}

    try:
        return set_items(scope, project_id, {page_id: take}, stamp=stamp)[0]
    except _Lost:
        return None
