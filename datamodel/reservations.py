"""Which unique values an object holds, and how a save moves them (see ``constraints``).

A save claims the reservations of values it newly holds and releases those it no longer
holds, in the same atomic KV batch as the object; a taken value refuses the whole write and
is reported as ``IntegrityError`` naming the field and the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from datastore import Conflict
from datastore.keys import reservation_key

from .errors import IntegrityError

if TYPE_CHECKING:
    from datastore import ScopedDatastore

    from .constraints import UniqueConstraint
    from .options import Options

__all__ = ["Moves", "claim_existing", "held", "moves", "to_integrity_error"]

Held = dict[str, tuple["UniqueConstraint", tuple[Any, ...]]]


def held(meta: Options, values: Mapping[str, Any] | None) -> Held:
    """Reservation name -> (constraint, values) for every unique value ``values`` holds.
    A soft-deleted object holds none of the constraints that release on delete."""
    if values is None or not meta.unique_constraints:
        return {}
    deleted = values.get("deleted_at") is not None
    converters = {name: field.to_sql for name, field in meta.fields.items()}
    found: Held = {}
    for constraint in meta.unique_constraints:
        if deleted and constraint.release_on_delete:
            continue
        constrained = constraint.values(values)
        if constrained is not None:
            found[constraint.reservation(constrained, converters)] = (constraint, constrained)
    return found


class Moves:
    """The reservations a batch of saves claims (name -> object id) and releases."""

    def __init__(self, meta: Options) -> None:
        self.meta = meta
        self.claims: dict[str, str] = {}
        self.releases: list[str] = []
        self.wanted: Held = {}

    def add(self, kv_id: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> None:
        """One object going from ``before`` (``None``: new) to ``after``. Two objects of the
        batch claiming one value is refused here, before anything is sent."""
        old, new = held(self.meta, before), held(self.meta, after)
        for name, (constraint, values) in new.items():
            if name in old:
                continue
            if name in self.claims:
                raise IntegrityError(self.meta.name, constraint.fields, values, self.claims[name])
            self.claims[name] = kv_id
            self.wanted[name] = (constraint, values)
        self.releases.extend(name for name in old if name not in new)

    @property
    def size(self) -> int:
        return len(self.claims) + len(self.releases)


def moves(
    meta: Options, writes: Sequence[tuple[str, Mapping[str, Any] | None, Mapping[str, Any]]]
) -> Moves:
    """The moves of several saves: ``(kv_id, values before, values after)`` each."""
    result = Moves(meta)
    for kv_id, before, after in writes:
        result.add(kv_id, before, after)
    return result


def to_integrity_error(
    meta: Options, found: Moves, exc: Conflict, store: ScopedDatastore
) -> IntegrityError | None:
    """The ``IntegrityError`` for a write refused because a claimed value is taken (``None``
    when the conflict was about the objects themselves). Asks the store who holds it."""
    keys = set(exc.keys)
    for name, (constraint, values) in found.wanted.items():
        if reservation_key(meta.kv_class, name) in keys:
            holder = store.reservation_owner(meta.kv_class, name)
            return IntegrityError(meta.name, constraint.fields, values, holder)
    return None


def claim_existing(
    store: ScopedDatastore, meta: Options, constraint: UniqueConstraint, batch_size: int = 500
) -> int:
    """Claim ``constraint``'s reservations for the objects stored before it was declared, so
    a value an old object holds refuses a new one; returns how many were claimed.

    ``store`` is a system view. Per batch of objects: one bulk read of their reservations, then
    one KV write of the objects missing theirs (``batch_size`` objects and as many claims must
    fit one store batch), rewritten unchanged with compare-and-set on the
    version read and the claims in the same batch. A batch that meets a concurrent change is
    read again and tried once more; the values of a table with duplicates are never claimed
    (``initialize`` refuses its unique index first).
    """
    claimed = 0
    for batch in store.scan(meta.kv_class, batch_size):
        for attempt in (1, 2):
            missing = _missing_claims(store, meta, constraint, batch)
            if not missing:
                break
            try:
                store.put_many(
                    meta.kv_class,
                    {kv_id: batch[kv_id].data for kv_id in set(missing.values())},
                    if_versions={kv_id: batch[kv_id].version for kv_id in set(missing.values())},
                    claims=missing,
                )
            except Conflict:
                if attempt == 2:
                    raise
                batch = store.read_many(meta.kv_class, list(batch))
                continue
            claimed += len(missing)
            break
    return claimed


def _missing_claims(
    store: ScopedDatastore, meta: Options, constraint: UniqueConstraint, batch: Mapping[str, Any]
) -> dict[str, str]:
    """Reservation name -> object id, for the objects of ``batch`` whose value has none."""
    wanted: dict[str, str] = {}
    for kv_id, stored in batch.items():
        for name, (held_by, _) in held(meta, stored.data).items():
            if held_by == constraint:
                wanted[name] = kv_id
    if not wanted:
        return {}
    owners = store.reservation_owners(meta.kv_class, list(wanted))
    return {name: kv_id for name, kv_id in wanted.items() if name not in owners}
