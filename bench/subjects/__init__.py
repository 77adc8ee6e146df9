"""The things ``python -m bench ops`` compares, each doing the same work on pages:
this project, the raw clients by hand, Django's ORM and redis-om."""

from __future__ import annotations

import random
from typing import Any, Protocol

PROJECT_ID = "proj_bench000001"
USER_ID = "user_bench"
STATUSES = ["uploaded", "queued", "processing", "done", "failed"]
NOW = "2026-11-26T08:00:00.000Z"
# The sync fields a values page selects (``values_page``): dicts of these, no object.
VALUES_FIELDS = ("page_id", "status", "priority")


class Subject(Protocol):
    """One contender. Each operation works on pages numbered ``numbers``; ``round_trips`` is the
    count of storage round trips so far, KV and SQL (``None`` where it cannot be counted).

    The queries of a project's pages, each ``NotImplementedError`` where the contender has no
    queries: ``page`` (20 queued pages by ``-priority`` with the total), ``page_with_data``
    (the same with the objects), ``values_page`` (the same 20 as dicts of ``VALUES_FIELDS``,
    no total, no object) and ``aggregate_status`` (the count of pages per status, GROUP BY);
    the last two over the owner's pages for every contender (the project's runs in the owner's
    scope).
    """

    name: str

    def create(self, number: int) -> None: ...
    def get(self, number: int) -> None: ...
    def update(self, number: int) -> None: ...
    def soft_delete(self, number: int) -> None: ...
    def page(self) -> None: ...
    def page_with_data(self) -> None: ...
    def values_page(self) -> None: ...
    def aggregate_status(self) -> None: ...
    def bulk_create(self, numbers: range) -> None: ...
    def round_trips(self) -> tuple[int, int] | None: ...
    def close(self) -> None: ...


def page_id(number: int) -> str:
    return f"page_{number:012d}"


def page_values(number: int) -> dict[str, Any]:
    """One page as the API would upload it: a path, a priority, a status and an extraction of
    about 1 KB."""
    rng = random.Random(number)
    return {
        "page_id": page_id(number),
        "project_id": PROJECT_ID,
        "source_path": f"dist/local/section-{number % 50}/page-{number}.html",
        "status": STATUSES[number % len(STATUSES)],
        "priority": rng.randint(1, 10),
        "uploaded": NOW,
        "extraction": {
            "engine": "html",
            "head": {"title": f"Page {number}", "description": "A page of the benchmark site."},
            "above_fold_blocks": [
                {"id": f"block-{block}", "type": "p", "content": "Lorem ipsum dolor sit amet. " * 4}
                for block in range(6)
            ],
        },
    }
