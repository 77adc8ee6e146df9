"""Errors of the model layer. Storage failures keep their ``datastore.errors`` types.

::

    TypeError
    └── DeclarationError            a model declaration is wrong (at import)
    ValueError
    └── ValidationError             field values, lookups or arguments are invalid
    LookupError
    ├── DoesNotExist                no visible object matches
    └── MultipleObjectsReturned     (datamodel.query) get(**lookups) matched several
    Exception
    └── Rejected                    a before_* hook refused the operation
    datastore.DatastoreError
    ├── datastore.Conflict
    │   └── PartialWrite            a query-level write left some objects unchanged
    ├── datastore.IntegrityError
    │   └── IntegrityError          a unique value is taken (nothing was written)
    └── SyncError                   saved to KV, metadata row not written (repairable)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datastore.errors import Conflict, DatastoreError
from datastore.errors import IntegrityError as StoreIntegrityError

__all__ = [
    "DeclarationError",
    "DeleteConflict",
    "DoesNotExist",
    "IntegrityError",
    "PartialWrite",
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


class IntegrityError(StoreIntegrityError):
    """A unique value (or combination) is already taken by another object; nothing was
    written. ``fields`` and ``values`` name it; ``holder`` is the KV id of the object that
    holds it, where known."""

    def __init__(
        self,
        model: str,
        fields: Sequence[str],
        values: Sequence[Any],
        holder: str | None = None,
    ) -> None:
        self.model = model
        self.fields = tuple(fields)
        self.values = tuple(values)
        self.holder = holder
        if len(self.fields) == 1:
            what = f"{self.fields[0]}={self.values[0]!r}"
        else:
            what = f"({', '.join(self.fields)})={self.values!r}"
        owner = f" (held by {holder})" if holder else ""
        super().__init__(f"{model}: {what} is already taken{owner}")


class PartialWrite(Conflict):
    """A query-level ``update()`` or ``delete()`` could not change every object: each of
    ``failed_ids`` kept changing underneath it (one retry from a fresh read each), or a
    unique value it needed was taken. ``done`` counts the objects that were written."""

    def __init__(self, message: str, *, done: int, failed_ids: Sequence[str]) -> None:
        super().__init__(message, keys=failed_ids)
        self.done = done
        self.failed_ids = list(failed_ids)


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


class DeleteConflict(PartialWrite):
    """A delete (or restore) finished only in part: some objects changed while it ran, again
    after being read afresh once, and were left as they were.

    ``failed_ids`` are the KV ids left unchanged (``failed`` groups them by model name): those
    that kept changing, and the objects they reference that were therefore not deleted either,
    so that no live object is left pointing at a deleted one. ``deleted`` counts the objects
    that were deleted (or restored).
    """

    def __init__(self, message: str, *, failed: Mapping[str, Sequence[str]], deleted: int) -> None:
        self.failed = {model: list(ids) for model, ids in failed.items() if ids}
        self.deleted = deleted
        failed_ids = [object_id for ids in self.failed.values() for object_id in ids]
        super().__init__(message, done=deleted, failed_ids=failed_ids)
