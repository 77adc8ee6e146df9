"""A request budget per Cloudflare API token, so the REST backends never trip Cloudflare's rate
limit (1,200 requests per 5 minutes per token; a breach blocks the account's API for 5 minutes).

Every request, retries included, takes one unit of the budget before it is sent. Past the
budget the caller waits for room, up to ``max_wait`` seconds in all, then gets ``RateLimited``
naming the budget, and nothing is sent.

Counting. The period is cut into 30 buckets (10 s for 300 s); a request counts in the bucket of
the moment it was sent, and is allowed while the buckets of the last period *plus one bucket*
hold at most ``limit``. So any span of ``period`` seconds sees at most ``limit`` requests
(slightly conservative: room comes back up to one bucket late). A unit is taken by incrementing
the current bucket first and then summing, and given back when the sum is over: two callers
racing for the last unit can both give up, never both send.

Sharing. The counters live in a ``KVStore``: by default one in memory, shared by every thread
of the process (one budget per token per process, whichever backend, KV or D1, uses it); with
``store`` a URL (``sqlite:///path`` or ``redis://...``) or a store, shared by every process that
uses it. Keys are ``cfbudget:{token id}:{bucket}`` in the ``NIMBUS_BUDGET`` namespace, where the
token id is a hash of the token (the token itself is never stored).

Cloudflare's answers correct it: ``Ratelimit: "default";r=50;t=30`` (remaining ``r``, window
reset in ``t`` s) counts the requests Cloudflare saw and this budget did not (other clients of
the token) in the current bucket, and holds everything for ``t`` s when ``r`` is 0; a 429's
``retry-after`` holds everything for that long.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..contract import KVStore
from ..errors import InvalidValue, RateLimited

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_PERIOD",
    "BudgetStatus",
    "RequestBudget",
    "budget_for",
]

DEFAULT_LIMIT = 1200
DEFAULT_PERIOD = 300.0
DEFAULT_MAX_WAIT = 60.0
BUCKETS = 30
NAMESPACE = "NIMBUS_BUDGET"
_RATELIMIT_ITEM = re.compile(r"r=(\d+)(?:.*?;\s*t=(\d+(?:\.\d+)?))?")


@dataclass(frozen=True)
class BudgetStatus:
    """The budget as seen now: requests left in the current period, and the hold, if any."""

    limit: int
    period: float
    remaining: int
    held_for: float  # seconds until requests may go out again (0: not held)

    def __str__(self) -> str:
        text = f"{self.remaining} of {self.limit} requests left per {self.period:g} s"
        return text + (f", held for {self.held_for:.0f} s" if self.held_for > 0 else "")


def token_id(api_token: str) -> str:
    return hashlib.sha256(api_token.encode()).hexdigest()[:16]


def open_store(store: str | KVStore | None) -> KVStore:
    """The counters' store: a ``KVStore``, a ``sqlite:///path`` or ``redis://`` URL, or (None)
    a store in memory, private to this process."""
    if store is None:
        from .memory import MemoryKVStore

        return MemoryKVStore()
    if not isinstance(store, str):
        return store
    if store.startswith("sqlite:///"):
        from .sqlite import SQLiteKVStore

        return SQLiteKVStore(store.removeprefix("sqlite:///"))  # sqlite:////abs is absolute
    if store.startswith(("redis://", "rediss://")):
        from .redis import RedisKVStore

        return RedisKVStore(store)
    raise InvalidValue(f"budget store {store!r}: use sqlite:///path or redis://host:port/db")


class RequestBudget:
    """At most ``limit`` requests per ``period`` seconds for one API token (see module doc)."""

    def __init__(
        self,
        api_token: str,
        *,
        limit: int = DEFAULT_LIMIT,
        period: float = DEFAULT_PERIOD,
        max_wait: float = DEFAULT_MAX_WAIT,
        store: str | KVStore | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidValue(f"budget limit must be a positive integer, not {limit!r}")
        if period <= 0 or max_wait < 0:
            raise InvalidValue("budget period must be positive and max_wait not negative")
        self.limit = limit
        self.period = float(period)
        self.max_wait = float(max_wait)
        self.bucket = self.period / BUCKETS
        self.clock = clock
        self.sleep = sleep
        self.store = open_store(store)
        self._prefix = f"cfbudget:{token_id(api_token)}:"
        self._ttl = max(60.0, self.period + 2 * self.bucket)
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting for room, in all (for progress reports)
        # called with (seconds, reason) before each wait: how long-running commands show pacing
        self.on_wait: Callable[[float, str], None] | None = None

    def describe(self) -> str:
        return f"{self.limit} requests per {self.period:g} s for this API token"

    # -- counters ------------------------------------------------------------------------

    def _index(self, moment: float) -> int:
        return math.floor(moment / self.bucket)

    def _window(self, index: int) -> list[str]:
        return [f"{self._prefix}{i}" for i in range(index - BUCKETS, index + 1)]

    def _read(self, index: int) -> tuple[list[int], float]:
        """The window's bucket counts (oldest first) and the moment a hold ends (0: none)."""
        hold_key = f"{self._prefix}hold"
        keys = self._window(index)
        found = self.store.get_many(NAMESPACE, [*keys, hold_key])
        counts = [int(found[key]) if key in found else 0 for key in keys]
        return counts, float(found[hold_key]) if hold_key in found else 0.0

    def _add(self, index: int, amount: int) -> None:
        self.store.incr(NAMESPACE, f"{self._prefix}{index}", amount, ttl=self._ttl)

    # -- the budget ----------------------------------------------------------------------

    def acquire(self, what: str = "request") -> None:
        """Take one request's unit, waiting for room up to ``max_wait``; ``RateLimited`` past
        that, before anything is sent."""
        waited = 0.0
        served_hold = 0.0
        while True:
            now = self.clock()
            index = self._index(now)
            self._add(index, 1)
            counts, hold = self._read(index)
            if hold > now and hold > served_hold:
                self._add(index, -1)
                wait, reason = hold - now, "Cloudflare asked to hold requests"
            elif sum(counts) <= self.limit:
                return
            else:
                self._add(index, -1)
                oldest = next(i for i, count in enumerate(counts) if count > 0)
                # room comes back when the oldest counted bucket, index - BUCKETS + oldest,
                # leaves the window: once the current bucket is BUCKETS + 1 past it
                leaves = (index + oldest + 1) * self.bucket
                wait, reason = max(leaves - now, 0.01), "the budget is spent"
            if waited + wait > self.max_wait:
                raise RateLimited(
                    f"Cloudflare API budget of {self.describe()}: {reason}; not sending {what} "
                    f"(room in {wait:.0f} s, past the maximum wait of {self.max_wait:g} s)",
                    retry_after=wait,
                )
            if self.on_wait is not None:
                self.on_wait(wait, reason)
            self.sleep(wait)
            waited += wait
            with self._lock:
                self.waited += wait
            if hold > now:
                served_hold = hold  # slept through it: only a later hold waits again

    def hold(self, seconds: float) -> None:
        """No request goes out for ``seconds`` (a 429's ``retry-after``), in every process."""
        until = self.clock() + max(0.0, seconds)
        self.store.put(NAMESPACE, f"{self._prefix}hold", repr(until).encode(), ttl=self._ttl)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Correct the count from Cloudflare's ``Ratelimit`` header, when it says less is left
        than this budget thinks."""
        value = headers.get("ratelimit")
        if not value:
            return
        items = [match for match in map(_RATELIMIT_ITEM.search, value.split(",")) if match]
        if not items:
            return
        lowest = min(items, key=lambda match: int(match.group(1)))
        remaining = int(lowest.group(1))
        if remaining == 0:
            self.hold(float(lowest.group(2) or self.period))
            return
        now = self.clock()
        counts, _ = self._read(self._index(now))
        unseen = (self.limit - remaining) - sum(counts)
        if unseen > 0:
            self._add(self._index(now), unseen)

    def status(self) -> BudgetStatus:
        now = self.clock()
        counts, hold = self._read(self._index(now))
        return BudgetStatus(
            self.limit, self.period, max(0, self.limit - sum(counts)), max(0.0, hold - now)
        )


_budgets: dict[tuple[Any, ...], RequestBudget] = {}
_budgets_lock = threading.Lock()


def budget_for(
    api_token: str,
    *,
    limit: int = DEFAULT_LIMIT,
    period: float = DEFAULT_PERIOD,
    max_wait: float = DEFAULT_MAX_WAIT,
    store: str | None = None,
) -> RequestBudget:
    """The process's budget for this token and these settings: every backend built with them
    shares it (and, with a ``store`` URL, every process using that store)."""
    key = (token_id(api_token), limit, float(period), float(max_wait), store)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RequestBudget(
                api_token, limit=limit, period=period, max_wait=max_wait, store=store
            )
        return budget
