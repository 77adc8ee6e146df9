"""A project's usage counters (``usage`` on ``project:{project_id}``), counted, not added up.

``total_pages`` is the number of the project's live pages and ``total_batches`` of its live
batches, counted from the metadata tables after every change that can move them (an upload,
a page's delete or restore, the project's restore), so a re-upload never counts a page twice
and a lost update is put right by the next count. ``last_activity`` is the time of the last
such change.

The project is read before the pages are counted, and saved with compare-and-set: a writer
that changed the pages after our count updates the project after us, and if it read the
project before our save, its save conflicts and it reads and counts again. So the last save
holds a count that includes every change made before it.
"""

from __future__ import annotations

import random
import time

from datamodel import Scope
from datamodel.clock import now_iso
from datastore import Conflict

from .models import Batch, Page, Project

__all__ = ["count_usage", "counted"]

_RETRIES = 16


def counted(scope: Scope, project_id: str) -> dict[str, int]:
    """The project's live pages and batches as the metadata counts them (two SQL counts, the
    pages' from an index alone)."""
    return {
        "total_pages": Page.objects.bind(scope).filter(project_id=project_id).count(),
        "total_batches": Batch.objects.bind(scope).filter(project_id=project_id).count(),
    }


def count_usage(scope: Scope, project_id: str, *, activity: bool = True) -> Project | None:
    """Set the project's ``total_pages`` and ``total_batches`` from a fresh count (and
    ``last_activity`` to now, with ``activity``), retried from a fresh read on ``Conflict``.
    ``None`` if the project is not there (deleted meanwhile: its restore counts again)."""
    projects = Project.objects.bind(scope)
    for attempt in range(_RETRIES):
        project = projects.get_or_none(project_id)
        if project is None:
            return None
        usage = {**(project.get("usage") or {}), **counted(scope, project_id)}
        if activity:
            usage["last_activity"] = now_iso()
        project.set("usage", usage)
        try:
            return project.save()
        except Conflict:
            if attempt == _RETRIES - 1:
                raise
            time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
    return None
