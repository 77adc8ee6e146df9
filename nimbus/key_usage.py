"""API-key usage counters: ``last_used`` and ``usage`` on ``apikey:{hash}`` (NIMBUS_KEYS).

Batched: at most one write per key per flush interval per process; ``last_used`` is accurate
to the flush interval.

Authenticating a request only records it here, in memory (``record``: no I/O), so the
counters cost the request no round trip of its own. Every request a key authenticates counts,
also one refused afterwards (403, 429). A flush writes what was recorded:

* after a response is finished (Django's ``request_finished``, sent once the response has
  been handed over), when the process's last flush is older than
  ``settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS`` (default 10; 0 flushes after every request);
* at process exit (``atexit``; a process killed without exiting loses its unwritten counts);
* whenever ``flush()`` is called (tests, operators' scripts).

The request itself never waits on a counter write. Per key, a flush is one compare-and-set
update of the ``ApiKey`` (a model save with system access: the KV object and its metadata row,
``last_used`` being a sync field), retried from a fresh read on ``Conflict``, so a change made
meanwhile (a rename, a revoke) is kept. It adds the recorded requests to
``usage.requests_total`` and to ``usage.requests_today``, which counts the requests of
``last_used``'s UTC day (it starts again when the stored ``last_used`` is on an earlier day),
and sets ``last_used`` to the latest request. A key deleted meanwhile is dropped, never written
back. A failed write is logged and its counts are kept for the next flush: never lost
silently, never raised into a request.

Cost of a flush: per key with recorded requests, one KV read, one KV write and one SQL write.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished
from django.dispatch import receiver

from datamodel import SyncError, clock
from datastore import Conflict

from .models import ApiKey

__all__ = [
    "DEFAULT_FLUSH_SECONDS",
    "Counts",
    "UsageRecorder",
    "flush",
    "flush_interval",
    "pending",
    "record",
    "reset",
    "updated_usage",
]

logger = logging.getLogger("nimbus.key_usage")

DEFAULT_FLUSH_SECONDS = 10
RETRIES = 8  # compare-and-set attempts per key and flush


@dataclass(frozen=True)
class Counts:
    """Requests recorded for one key and not written yet."""

    total: int
    last_used: str  # the latest request, ISO 8601 UTC
    day_count: int  # how many of them were on ``last_used``'s UTC day

    def __add__(self, other: Counts) -> Counts:
        last_used = max(self.last_used, other.last_used)
        day = last_used[:10]
        return Counts(
            self.total + other.total,
            last_used,
            sum(counts.day_count for counts in (self, other) if counts.last_used[:10] == day),
        )


def updated_usage(usage: Any, last_used: str | None, counts: Counts) -> tuple[dict[str, Any], str]:
    """The stored ``usage`` and ``last_used`` with ``counts`` added to them."""
    stored = dict(usage) if isinstance(usage, dict) else {}
    today = int(stored.get("requests_today") or 0)
    stored_day = last_used[:10] if last_used else ""
    new_day = counts.last_used[:10]
    if stored_day == new_day:
        today += counts.day_count
    elif stored_day < new_day:
        today = counts.day_count
    # else another writer stored a later day already: these requests are not of that day
    stored["requests_today"] = today
    stored["requests_total"] = int(stored.get("requests_total") or 0) + counts.total
    return stored, max(last_used or "", counts.last_used)


class UsageRecorder:
    """The per-process accumulator: ``record`` is thread-safe and does no I/O; ``flush``
    writes what was recorded (one flush at a time in a process)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()  # guards _pending and _last_flush
        self._flushing = threading.Lock()
        self._pending: dict[str, Counts] = {}
        self._last_flush = monotonic()

    def record(self, key_id: str, at: str | None = None) -> None:
        """Count one request authenticated by the key ``key_id`` (its hash), made ``at``
        (default: now)."""
        counts = Counts(1, at or clock.now_iso(), 1)
        with self._lock:
            previous = self._pending.get(key_id)
            self._pending[key_id] = counts if previous is None else previous + counts

    def pending(self) -> dict[str, Counts]:
        """The recorded counts not written yet, by key hash."""
        with self._lock:
            return dict(self._pending)

    def reset(self) -> None:
        """Forget what was recorded and start the flush interval again."""
        with self._lock:
            self._pending.clear()
            self._last_flush = self._monotonic()

    def flush_if_due(self, interval: float) -> int:
        """``flush()`` if something is recorded and the last flush is at least ``interval``
        seconds old (checked and claimed at once: threads finishing together flush once)."""
        with self._lock:
            now = self._monotonic()
            if not self._pending or now - self._last_flush < interval:
                return 0
            self._last_flush = now
        return self.flush()

    def flush(self) -> int:
        """Write every recorded count; returns how many keys were written. Failures are
        logged and their counts kept for the next flush; nothing is raised."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._last_flush = self._monotonic()
            written = 0
            for key_id, counts in batch.items():
                try:
                    written += _write(key_id, counts)
                except Exception:
                    logger.warning(
                        "usage of API key %s... not written (%d requests kept for the next flush)",
                        key_id[:12],
                        counts.total,
                        exc_info=True,
                    )
                    self._keep(key_id, counts)
            return written

    def _keep(self, key_id: str, counts: Counts) -> None:
        with self._lock:
            previous = self._pending.get(key_id)
            self._pending[key_id] = counts if previous is None else previous + counts


def _write(key_id: str, counts: Counts) -> int:
    """One compare-and-set update of the key, again from a fresh read on ``Conflict``; 1 if
    it was written, 0 if the key is gone (deleted: its counts are dropped)."""
    keys = ApiKey.objects.system()

    def update() -> int:
        key = keys.get_or_none(key_id)
        if key is None:
            return 0
        usage, last_used = updated_usage(key.get("usage"), key.get("last_used"), counts)
        key.set({"usage": usage, "last_used": last_used})
        try:
            key.save()
        except SyncError:
            # KV, the source of truth, has the counts; only the metadata row lags (repair).
            logger.warning("usage of API key %s... written; its metadata row was not", key_id[:12])
        return 1

    for _ in range(RETRIES - 1):
        try:
            return update()
        except Conflict:
            continue
    return update()


_recorder = UsageRecorder()


def record(key_id: str, at: str | None = None) -> None:
    """Count one request authenticated by the key ``key_id`` (in memory, no I/O)."""
    _recorder.record(key_id, at)


def flush() -> int:
    """Write the counts recorded in this process now; returns how many keys were written.
    Never raises: a key whose write failed keeps its counts for the next flush."""
    return _recorder.flush()


def pending() -> dict[str, Counts]:
    """The counts recorded in this process and not written yet, by key hash."""
    return _recorder.pending()


def reset() -> None:
    """Forget the counts not written yet and start the flush interval again (tests)."""
    _recorder.reset()


def flush_interval() -> float:
    """``settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS``: seconds, at least 0."""
    value = getattr(settings, "NIMBUS_KEY_USAGE_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ImproperlyConfigured(
            f"NIMBUS_KEY_USAGE_FLUSH_SECONDS must be a number of seconds >= 0, got {value!r}"
        )
    return float(value)


@receiver(request_finished)
def _flush_when_due(**kwargs: Any) -> None:
    # Runs after the response was handed over; a failure here must not reach the server.
    try:
        _recorder.flush_if_due(flush_interval())
    except Exception:
        logger.exception("API-key usage flush failed")


@atexit.register
def _flush_at_exit() -> None:
    if _recorder.pending():
        _recorder.flush()
