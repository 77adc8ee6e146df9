"""Errors of the model layer. Storage failures keep their ``datastore.errors`` types."""

from __future__ import annotations

from collections.abc import Mapping

from datastore.errors import DatastoreError

__all__ = ["DeclarationError", "DoesNotExist", "Rejected", "SyncError", "ValidationError"]


class DeclarationError(TypeError):
    """A model declaration is wrong (raised at import, before any data is touched)."""


class ValidationError(ValueError):
    """Field values are invalid. ``errors`` maps each field name to its messages."""

    def __init__(self, errors: Mapping[str, list[str]] | str) -> None:
        if isinstance(errors, str):
            errors = {"__all__": [errors]}
        self.errors = {field: list(messages) for field, messages in errors.items()}
        summary = "; ".join(
            f"{field}: {', '.join(messages)}" for field, messages in self.errors.items()
        )
        super().__init__(summary)


class Rejected(Exception):
    """A ``before_*`` hook refused the operation; nothing was written."""


class DoesNotExist(LookupError):
    """No visible object matches (missing, deleted, or owned by someone else)."""


class SyncError(DatastoreError):
    """The object was saved to KV but its metadata row could not be written.

    KV is the source of truth: the object is safe and ``nimbus_sync --repair`` rebuilds the
    row from it.
    """
