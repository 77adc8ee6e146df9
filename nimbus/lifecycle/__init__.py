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

The status object shows what the routes say besides the state (``records.Detail``):
``processing`` ``{started, current_step, progress}`` (the step a claim or ``/status/`` names,
``ai_optimization`` by default, progress 0), ``result`` ``{completed, success, changes,
confidence}`` from the ack's optimization, ``error`` ``{message, code, timestamp}``. A
worker's progress report (``report_progress``) is not a move: the page stays ``processing``
and only its status object's ``processing`` changes (never over a later version's).

Order of writes. There is no transaction across KV objects, so a move writes the page first:
its compare-and-set is the move's lock (of two moves from one state, one saves; the other reads
the page again and is checked again). Then it sets the page's queue item, status object, batch
entry and log entry, each a compare-and-set retried from a fresh read on ``Conflict`` (with a
short growing random pause: every worker shares the project's queue), so no "version
mismatch" reaches a user for work nobody else touched. The next move of the page may start as
soon as the page is written, so the late writes of one move could land after those of the
next: the status object, the batch entry and the queue item carry the page's ``_version`` as
``page_version`` and are not overwritten by an older one (as the metadata upsert's version
guard), nor written back once the page was deleted or left the batch. A removed queue item
leaves no version behind, so a late write of an earlier move can bring one back for a page
that is out of the queue: ``claim`` picks an item from the queue, then moves its page; an item
whose page is gone, or out of the queue by a later move, is dropped, one whose page is not in
the state the item implies (moving just now) is skipped.

Every upload is a batch (a page uploaded on its own is a batch of one), so every page is in
one. An upload moves a page between batches: the batch whose upload wrote the page last must
count it, and the one it left must not. Each upload hands ``enqueue`` the batches its pages
were in when it read them to write them; ``enqueue`` then reads those batches and the pages
afresh (in that order) and makes each count exactly the pages that are in it now. Of two
uploads of the same paths, the later writer of a page reads the batch maps after its page
write, so whichever finishes last leaves them right. A process that dies between the page write
and the rest leaves them behind the page until the page's next move, or until ``reconcile``
sets them from the pages: ``manage.py nimbus_sync --check`` lists what it finds in every
project and ``--repair`` repairs it (with the project's usage counters).

Cost of one move: the page (1 KV read, 1 save), the queue, status object, batch and log
(1 KV read and 1 save each, the queue only for moves that change it). ``enqueue`` is bulk:
its round trips do not grow with the number of pages (it reads the pages once more, to
settle the batch maps). A page's delete and restore, like an upload, then count the project's
usage again (``nimbus.usage``: the project read and saved, two SQL counts).

The package: ``table`` (``MOVES``, ``find_move``), ``moves`` (the routes' moves), ``upload``
(``enqueue``), ``queue`` (queue items), ``records`` (status objects, batch entries, logs) and
``reconcile``; everything public is imported here (``from nimbus import lifecycle``).
"""

from __future__ import annotations

from .moves import ack, claim, delete, edit, fail, report_progress, restore, set_status
from .queue import CLAIM_TIMEOUT
from .reconcile import reconcile
from .table import DELETED, MAX_ATTEMPTS, MOVES, NEW, Move, find_move
from .upload import enqueue

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
    "report_progress",
    "restore",
    "set_status",
]
