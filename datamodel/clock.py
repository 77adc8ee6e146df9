"""The model layer's time source: canonical ISO-8601 UTC timestamps."""

from __future__ import annotations

import datetime as dt

from datastore import codec

__all__ = ["now_iso"]


def now_iso() -> str:
    """Now, in the stored timestamp form (``2024-09-02T13:45:00.000Z``)."""
    return codec.isoformat(dt.datetime.now(dt.UTC))
