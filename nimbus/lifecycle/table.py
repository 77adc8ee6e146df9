"""The state machine's table: every move a page can make (``MOVES``) and how one is found."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from datamodel import Rejected

from ..models.page import PAGE_STATUSES

__all__ = ["DELETED", "LOG_STEPS", "MAX_ATTEMPTS", "MOVES", "NEW", "Move", "find_move"]

MAX_ATTEMPTS = 3  # a failed item goes back to the queue until it has been tried this often
NEW = "new"  # the state before a page's first upload
DELETED = "deleted"  # the state after a page's delete


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
    Move(NEW, "upload", "uploaded", "remove", "uploaded"),  # a new page alone: a batch of one
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
LOG_STEPS = {
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
