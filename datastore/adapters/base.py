"""What the facade needs from a storage adapter: raw object and list primitives, no auth.

Auth is decided once, in ``datastore.facade``; adapters only store and fetch. Both adapters
offer compare-and-set on a per-object version so the facade's read-check-write sequences
cannot overwrite a concurrent change.

Reservations (``datastore.keys.reservation_key``) travel with the objects: ``claims`` (name ->
id of the object claiming it) are written create-only and ``releases`` deleted in the same
batch as the objects, so where the store is atomic (``supports_cas``) a taken name refuses the
whole write with ``Conflict`` naming the reservation's key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..contract import QueryResult, RoundTripCounter, SQLDatabase, Statement
from ..pending import Pending

__all__ = ["ObjectAdapter", "ObjectWrite", "StoredList", "StoredObject"]


@dataclass(frozen=True)
class StoredObject:
    """An object as stored: its JSON data (including ``_auth``) and version."""

    data: dict[str, Any]
    version: int

    @property
    def auth(self) -> list[str]:
        auth = self.data.get("_auth")
        return [user for user in auth if isinstance(user, str)] if isinstance(auth, list) else []


@dataclass(frozen=True)
class ObjectWrite:
    """One object write. ``if_version`` 0 means "must not exist", ``None`` means "any"."""

    object_id: str
    data: dict[str, Any]
    if_version: int | None


@dataclass(frozen=True)
class StoredList:
    """A list's items (in insertion order), its owners and a version for compare-and-set."""

    items: list[str]
    auth: list[str]
    version: int


class ObjectAdapter(Protocol):
    """Storage primitives for objects (by class and id) and lists (by name and pointer)."""

    name: str
    round_trips: RoundTripCounter
    supports_cas: bool  # whether the store itself refuses a stale version or a taken claim

    def read(self, class_name: str, object_id: str) -> StoredObject | None: ...

    def read_many(self, class_name: str, object_ids: Sequence[str]) -> dict[str, StoredObject]: ...

    def select_objects(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        statement: int,
        class_name: str,
        id_columns: Sequence[str],
    ) -> tuple[list[QueryResult], dict[str, StoredObject]]:
        """Run ``statements``, then read the objects whose ids the rows of statement number
        ``statement`` hold (``id_columns`` joined as a composite key). One round trip where the
        store combines requests with ``database`` (``KVStore.select_entries``), else two."""
        ...

    def write_many(
        self,
        class_name: str,
        writes: Sequence[ObjectWrite],
        ttl: float | None,
        *,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> list[int]:
        """Write all or nothing, with the ``claims`` (create-only) and ``releases`` in the same
        batch; ``Conflict`` if any ``if_version`` does not hold or a claimed name is held.
        Returns the objects' new versions."""
        ...

    def start_write_many(
        self,
        class_name: str,
        writes: Sequence[ObjectWrite],
        ttl: float | None,
        *,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> Pending[list[int]]:
        """``write_many``, sent without waiting for the answer where the store can pipeline."""
        ...

    def remove_many(self, class_name: str, object_ids: Sequence[str]) -> int: ...

    def remove_and_release(
        self, class_name: str, object_ids: Sequence[str], releases: Sequence[str]
    ) -> None:
        """Delete the objects and the named reservations in one batch (atomic where the store
        is). Reports nothing: the caller reads first when it needs to count."""
        ...

    def reservation_owners(self, class_name: str, names: Sequence[str]) -> dict[str, str]:
        """The id holding each of ``names`` that is held (one bulk read per store limit)."""
        ...

    def list_ids(
        self, class_name: str, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """One page of the ids of a class's objects and the cursor of the next page."""
        ...

    def read_list(self, list_name: str, pointer: str) -> StoredList | None: ...

    def add_to_list(
        self, list_name: str, pointer: str, item: str, *, owner: str | None
    ) -> bool | None:
        """Append ``item`` if absent. ``None`` if the list exists and ``owner`` may not write it;
        otherwise whether the item was added. ``owner=None`` is system access."""
        ...

    def remove_from_list(
        self, list_name: str, pointer: str, item: str, *, owner: str | None
    ) -> bool:
        """Remove ``item``; ``False`` if absent or not writable by ``owner``."""
        ...

    def clear_list(self, list_name: str, pointer: str, *, owner: str | None) -> bool:
        """Delete the list; ``False`` if absent or not writable by ``owner``."""
        ...
