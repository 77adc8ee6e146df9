"""One exception hierarchy for every backend.

Backends translate their client's exceptions into these, so callers never need to import
``redis``, ``sqlite3`` or ``httpx`` to handle a storage failure.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AccessDenied",
    "Conflict",
    "DatastoreError",
    "IntegrityError",
    "InvalidKey",
    "InvalidValue",
    "NotFound",
    "NotSupported",
    "QueryError",
    "RateLimited",
    "TooLarge",
    "Unavailable",
    "UnknownClass",
]


class DatastoreError(Exception):
    """Base class of every error raised by ``datastore``."""


class NotFound(DatastoreError):
    """The object does not exist (or is not visible to the current auth scope)."""


class Conflict(DatastoreError):
    """A compare-and-set precondition failed: the stored version is not the expected one.

    ``keys`` names every key whose precondition failed; nothing was written.
    """

    def __init__(self, message: str, *, keys: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


class InvalidKey(DatastoreError, ValueError):
    """A key, class name, id, namespace or list name is malformed."""


class InvalidValue(DatastoreError, ValueError):
    """A value, TTL or metadata argument cannot be stored as given."""


class TooLarge(InvalidValue):
    """A key, value, metadata blob or batch is over the backend's limit."""


class UnknownClass(InvalidKey):
    """The facade has no namespace configured for this object class."""


class NotSupported(DatastoreError):
    """The backend does not have this capability (see its ``supports_*`` flags)."""


class Unavailable(DatastoreError):
    """The backend cannot be reached or is temporarily failing; the operation may be retried."""


class RateLimited(Unavailable):
    """The backend refused the request for now (HTTP 429); ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessDenied(DatastoreError):
    """The backend rejected the credentials (for example an invalid Cloudflare API token)."""


class QueryError(DatastoreError):
    """A SQL statement failed (syntax, missing table, bad parameter count, ...)."""


class IntegrityError(QueryError):
    """A SQL statement violated a constraint (unique, not null, check)."""
