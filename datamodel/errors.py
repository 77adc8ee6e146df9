"""Errors of the model layer. Storage failures keep their ``datastore.errors`` types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from datastore.errors import Conflict, DatastoreError

__all__ = [
    "DeclarationError",
    "DeleteConflict",
    "DoesNotExist",
    "ProtectedError",
    "Rejected",
    "SyncError",
    "ValidationError",
]


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


class ProtectedError(Exception):
    """A delete was refused before anything was written: objects still reference one of the
    objects to delete through a ``Reference(..., on_delete=PROTECT)``.

    ``model`` and ``object_id`` name the protected object (its KV id), ``field`` the reference
    (``PIN.workspace``), ``protected_ids`` the KV ids of a few of the referencing objects and
    ``count`` how many there are.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        object_id: str,
        field: str,
        protected_ids: Sequence[str],
        count: int,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.object_id = object_id
        self.field = field
        self.protected_ids = list(protected_ids)
        self.count = count


class DeleteConflict(Conflict):
    """A delete (or restore) finished only in part: some objects changed while it ran, again
    after being read afresh once, and were left as they were.

    ``failed_ids`` are the KV ids left unchanged (``failed`` groups them by model name): those
    that kept changing, and the objects they reference that were therefore not deleted either,
    so that no live object is left pointing at a deleted one. ``deleted`` counts the objects
    that were deleted (or restored).
    """

    def __init__(self, message: str, *, failed: Mapping[str, Sequence[str]], deleted: int) -> None:
        self.failed = {model: list(ids) for model, ids in failed.items() if ids}
        self.failed_ids = [object_id for ids in self.failed.values() for object_id in ids]
        self.deleted = deleted
        super().__init__(message, keys=self.failed_ids)
