"""Long-running commands (backup, sync, initialize) on the Cloudflare REST backends pace
themselves on the API token's request budget: for their duration a request may wait a whole
budget period for room instead of failing, each wait is announced, and progress lines show the
budget left and the time spent waiting. On other backends this does nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nimbus import conf

__all__ = ["budget_note", "paced"]


def _budgets() -> list[Any]:
    budgets: list[Any] = []
    for store in (conf.kv_store(), conf.sql_database()):
        budget = getattr(store, "budget", None)  # only the Cloudflare REST backends have one
        if budget is not None and all(budget is not other for other in budgets):
            budgets.append(budget)
    return budgets


@contextmanager
def paced(announce: Callable[[str], None]) -> Iterator[list[Any]]:
    """Within the block, requests wait for room (up to a budget period and one bucket) and
    every wait is announced through ``announce``; yields the budgets in use."""
    budgets = _budgets()
    saved = [(budget.max_wait, budget.on_wait) for budget in budgets]
    for budget in budgets:
        budget.max_wait = max(budget.max_wait, budget.period + budget.bucket)
        budget.on_wait = lambda seconds, reason, budget=budget: announce(
            f"  pacing: waiting {seconds:.0f} s, {reason} (Cloudflare API budget of "
            f"{budget.describe()})"
        )
    try:
        yield budgets
    finally:
        for budget, (max_wait, on_wait) in zip(budgets, saved, strict=True):
            budget.max_wait, budget.on_wait = max_wait, on_wait


def budget_note(budgets: list[Any]) -> str:
    """`` (Cloudflare API budget: 830 of 1200 requests left per 300 s, waited 12 s)`` or ``""``."""
    return "".join(
        f" (Cloudflare API budget: {budget.status()}, waited {budget.waited:.0f} s)"
        for budget in budgets
    )
