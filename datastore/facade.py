"""The Datastore facade: objects by class and id, lists by name and pointer, scoped by auth.

::

    ds = Datastore(kv=SQLiteKVStore("var/kv.sqlite3"))
    db = ds.auth("user_123")
    db.put("PROJECT", "proj_456", {"name": "My Project"})
    # KV key project:proj_456 in NIMBUS_PROJECTS -> {"name": "My Project", "_auth": ["user_123"]}

There is no unscoped access by accident: reads and writes go through ``ds.auth(user_id)`` or the
explicit ``ds.system()``. A scoped view never reads, changes, deletes or reveals an object whose
``_auth`` does not name its user: to it such an object does not exist. The one thing a taken id
cannot hide is that it is taken: writing to it raises ``Conflict`` without saying more.

Unique values are *reservations* (``_unique:{class}:{name}`` beside the class's objects, holding
the owner's id): ``put``/``put_many`` take ``claims`` and ``releases`` and write them in the same
batch as the objects, create-only, so a taken value refuses the write with ``Conflict``;
``delete_many`` takes ``releases``; ``reservation_owner`` says who holds one.

The same code runs on a KV store (``adapter="kv"``) or on the SQL ``objects``/``lists`` tables
(``adapter="sql"``), chosen by configuration.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .adapters.base import ObjectAdapter, ObjectWrite, StoredObject
from .adapters.kv import KVAdapter
from .adapters.sql import SQLAdapter
from .combined import CombinedReads
from .contract import KVCombined, KVStore, QueryResult, RoundTripCounter, SQLDatabase, Statement
from .errors import Conflict, InvalidValue, NotSupported
from .keys import RESERVATION_PREFIX, composite_key, reservation_key, validate_id
from .pending import Pending
from .routing import Routing

__all__ = ["Datastore", "ScopedDatastore"]

AUTH_FIELD = "_auth"


class Datastore:
    """Routes classes to namespaces and hands out scoped views (``auth``/``system``).

    ``clock`` is the SQL adapter's time source for TTLs (KV stores keep their own).
    """

    def __init__(
        self,
        kv: KVStore | None = None,
        *,
        sql: SQLDatabase | None = None,
        adapter: Literal["kv", "sql"] = "kv",
        routing: Routing | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.sql = sql
        self.routing = routing or Routing()
        self.adapter: ObjectAdapter
        if adapter == "kv":
            if kv is None:
                raise InvalidValue("the 'kv' adapter needs a KV store (kv=...)")
            self.adapter = KVAdapter(kv, self.routing)
        elif adapter == "sql":
            if sql is None:
                raise InvalidValue("the 'sql' adapter needs a SQL database (sql=...)")
            if not sql.atomic_batches:
                raise NotSupported(
                    f"the 'sql' adapter writes an object with its version guard, unique values "
                    f"and lists in one batch that must be one transaction, which {sql!r} does "
                    "not promise (D1 over the REST API): keep objects in KV (the 'kv' adapter) "
                    "or reach D1 through the gateway Worker"
                )
            self.adapter = SQLAdapter(sql, self.routing, clock=clock)
        else:
            raise InvalidValue(f"unknown adapter {adapter!r}: use 'kv' or 'sql'")

    composite_key = staticmethod(composite_key)

    @property
    def round_trips(self) -> RoundTripCounter:
        """The round-trip counter of the store the adapter writes objects to."""
        return self.adapter.round_trips

    def auth(self, user_id: str) -> ScopedDatastore:
        """A view that only sees objects whose ``_auth`` contains ``user_id``."""
        return ScopedDatastore(self, validate_id(user_id, what="user id"))

    def system(self) -> ScopedDatastore:
        """Unscoped access for admin and initialization code. Use deliberately."""
        return ScopedDatastore(self, None)

    def namespace_for(self, class_name: str) -> str:
        return self.routing.namespace_for(class_name)

    def close(self) -> None:
        for store in (self.kv, self.sql):
            if store is not None:
                store.close()

    def __repr__(self) -> str:
        return f"Datastore(adapter={self.adapter.name!r}, kv={self.kv!r}, sql={self.sql!r})"


class ScopedDatastore:
    """Object and list operations as one user (or as the system, ``user_id=None``)."""

    def __init__(self, datastore: Datastore, user_id: str | None) -> None:
        self._adapter = datastore.adapter
        self.user_id = user_id

    @property
    def is_system(self) -> bool:
        return self.user_id is None

    def _visible(self, stored: StoredObject | None) -> StoredObject | None:
        if stored is None:
            return None
        if self.user_id is not None and self.user_id not in stored.auth:
            return None
        return stored

    # -- objects -------------------------------------------------------------------------

    def combine(self, kv: KVCombined | None = None) -> CombinedReads:
        """Objects read together (and through ``.kv`` counters counted): one request where
        the store combines requests, else one read after the other (``datastore.combined``).
        Pass the ``kv.combine()`` of a store's own rate limiter to count in the same request
        when it is this datastore's KV store."""
        return CombinedReads(self._adapter, self._visible, kv)

    def get(self, class_name: str, object_id: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it is missing or not visible to this scope."""
        stored = self._visible(self._adapter.read(class_name, object_id))
        return stored.data if stored else None

    def get_many(self, class_name: str, object_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The visible objects among ``object_ids`` (in one bulk read per store limit)."""
        return {
            object_id: stored.data
            for object_id, stored in self.read_many(class_name, object_ids).items()
        }

    def read(self, class_name: str, object_id: str) -> StoredObject | None:
        """The visible object with its store version (for a later ``put(..., if_version=)``)."""
        return self._visible(self._adapter.read(class_name, object_id))

    def read_many(self, class_name: str, object_ids: Sequence[str]) -> dict[str, StoredObject]:
        """The visible objects among ``object_ids`` with their versions, in one bulk read."""
        _check_sequence(object_ids, "object_ids")
        found = self._adapter.read_many(class_name, list(dict.fromkeys(object_ids)))
        return {
            object_id: stored
            for object_id, stored in found.items()
            if self._visible(stored) is not None
        }

    def select_objects(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        *,
        statement: int,
        class_name: str,
        id_columns: Sequence[str],
    ) -> tuple[list[QueryResult], dict[str, StoredObject]]:
        """Run ``statements`` on ``database`` (as its ``batch``), then read the visible objects
        of ``class_name`` whose ids the rows of statement number ``statement`` hold (the
        ``id_columns`` joined as a composite key): a page of metadata rows with its objects.
        One round trip where the store combines requests (the gateway), else two."""
        results, found = self._adapter.select_objects(
            database, statements, statement, class_name, id_columns
        )
        return results, {
            object_id: stored
            for object_id, stored in found.items()
            if self._visible(stored) is not None
        }

    def scan(self, class_name: str, batch_size: int = 500) -> Iterator[dict[str, StoredObject]]:
        """Every visible object of a class, in batches of at most ``batch_size``: each batch is
        one page of ids and one bulk read, so memory stays bounded however many there are."""
        cursor: str | None = None
        while True:
            ids, cursor = self._adapter.list_ids(class_name, cursor, batch_size)
            if ids:
                yield self.read_many(class_name, ids)
            if cursor is None:
                return

    def exists(self, class_name: str, object_id: str) -> bool:
        return self._visible(self._adapter.read(class_name, object_id)) is not None

    def put(
        self,
        class_name: str,
        object_id: str,
        data: Mapping[str, Any],
        *,
        ttl: float | None = None,
        auth: Sequence[str] | None = None,
        if_version: int | None = None,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> int:
        """Store ``data`` (replacing any previous value); returns the new version.

        A new object is owned by this scope's user; an existing one keeps its owners. Only
        ``system()`` may set owners explicitly with ``auth=``; a system write of data without
        ``_auth`` stores an object with no owners list (readable only through ``system()``).

        With ``if_version`` (from an earlier ``read``; 0 to create) the write is a single
        compare-and-set with no ownership read: ``data`` must carry the ``_auth`` that was read,
        and a user scope may only write objects that name it. The store refuses the write with
        ``Conflict`` if the object changed since. Stores without compare-and-set
        (``supports_cas = False``) cannot refuse it: there the last writer wins.

        ``claims`` and ``releases`` move reservations with the object, as ``put_many``
        describes.
        """
        return self.start_put(
            class_name,
            object_id,
            data,
            ttl=ttl,
            auth=auth,
            if_version=if_version,
            claims=claims,
            releases=releases,
        ).result()

    def start_put(
        self,
        class_name: str,
        object_id: str,
        data: Mapping[str, Any],
        *,
        ttl: float | None = None,
        auth: Sequence[str] | None = None,
        if_version: int | None = None,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> Pending[int]:
        """``put``, with the write sent but its answer not yet read: ``result()`` returns the
        version or raises what ``put`` would. On Redis the caller works while the write is
        in flight; other stores answer before this returns."""
        versions = None if if_version is None else {object_id: if_version}
        return self.start_put_many(
            class_name,
            {object_id: data},
            ttl=ttl,
            auth=auth,
            if_versions=versions,
            claims=claims,
            releases=releases,
        ).then(operator.itemgetter(object_id))

    def put_many(
        self,
        class_name: str,
        objects: Mapping[str, Mapping[str, Any]],
        *,
        ttl: float | None = None,
        auth: Sequence[str] | None = None,
        create: bool = False,
        if_versions: Mapping[str, int] | None = None,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> dict[str, int]:
        """Store several objects all-or-nothing; returns the new version of each.

        Costs one bulk read (to check ownership) and one bulk write, per store batch limit.
        With ``if_versions`` (each object's version from an earlier ``read``, 0 for a new one)
        the write is one compare-and-set batch and needs no read, as ``put(if_version=)``
        describes; ``create=True`` means every object must be new.

        Reservations (unique values; see ``datastore.keys.reservation_key``) move with the
        objects: ``claims`` maps reservation names to the id of the object in ``objects`` that
        claims each, ``releases`` names reservations to delete. They are written in the same
        batch as the objects, claims create-only: where the store has compare-and-set a name
        already held (even by the same id: claim only values that changed) refuses the whole
        write with ``Conflict`` whose ``keys`` include the reservation's key, and nothing is
        written; the write costs no extra round trip. Without compare-and-set (Cloudflare KV)
        the claims are read first (one bulk read, only when there are claims) and one held by
        another id raises the same ``Conflict``; one held by the same id is fine. That check
        is best effort: two writers racing between the read and the write can both succeed.
        Objects, claims and releases must fit one store batch (``TooLarge`` otherwise), and
        claims cannot be combined with ``ttl`` (the reservation would outlive its object).
        Releases are not checked against their holder: the caller names the reservations its
        objects held.
        """
        return self.start_put_many(
            class_name,
            objects,
            ttl=ttl,
            auth=auth,
            create=create,
            if_versions=if_versions,
            claims=claims,
            releases=releases,
        ).result()

    def start_put_many(
        self,
        class_name: str,
        objects: Mapping[str, Mapping[str, Any]],
        *,
        ttl: float | None = None,
        auth: Sequence[str] | None = None,
        create: bool = False,
        if_versions: Mapping[str, int] | None = None,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> Pending[dict[str, int]]:
        """``put_many``, with the write sent but its answer not yet read (see ``start_put``)."""
        if not isinstance(objects, Mapping):
            raise InvalidValue("objects must be a mapping of id -> data")
        if auth is not None and not self.is_system:
            raise InvalidValue("only system() may set owners explicitly (auth=...)")
        owners = _validate_auth(auth) if auth is not None else None
        for object_id, data in objects.items():
            validate_id(object_id)
            if not isinstance(data, Mapping):
                raise InvalidValue(f"data for {object_id!r} must be a mapping (a JSON object)")
        moves = _Reservations.check(class_name, objects, claims, releases, ttl)
        if not objects:
            if moves.releases:
                raise InvalidValue("releases go with the objects that held them")
            return Pending.run(dict)
        if create:
            if_versions = dict.fromkeys(objects, 0)
        if if_versions is not None:
            return self._write_versioned(class_name, objects, if_versions, owners, ttl, moves)
        existing = self._adapter.read_many(class_name, list(objects))
        writes = []
        for object_id, data in objects.items():
            stored = existing.get(object_id)
            if stored is not None and self._visible(stored) is None:
                raise Conflict(f"id {object_id!r} is already taken", keys=[object_id])
            object_auth: list[str] | None
            if owners is not None:
                object_auth = owners
            elif stored is not None:
                object_auth = stored.auth if AUTH_FIELD in stored.data else None
            elif self.user_id is not None:
                object_auth = [self.user_id]
            else:
                object_auth = _data_auth(data)
            writes.append(
                ObjectWrite(
                    object_id,
                    _with_auth(data, object_auth),
                    stored.version if stored is not None else 0,
                )
            )
        return self._start_write(class_name, objects, writes, ttl, moves)

    def _start_write(
        self,
        class_name: str,
        objects: Mapping[str, Mapping[str, Any]],
        writes: list[ObjectWrite],
        ttl: float | None,
        moves: _Reservations,
    ) -> Pending[dict[str, int]]:
        object_ids = list(objects)  # as they are now, whatever the caller does meanwhile
        if moves.claims and not self._adapter.supports_cas:
            self._check_claims(class_name, moves.claims)
        pending = self._adapter.start_write_many(
            class_name, writes, ttl, claims=moves.claims, releases=moves.releases
        )
        if moves.claims:
            pending = _explain_taken(pending)
        return pending.then(lambda versions: dict(zip(object_ids, versions, strict=True)))

    def _check_claims(self, class_name: str, claims: Mapping[str, str]) -> None:
        """Without compare-and-set: refuse claims held by another object (one bulk read)."""
        held = self._adapter.reservation_owners(class_name, list(claims))
        taken = [
            reservation_key(class_name, name)
            for name, owner in held.items()
            if owner != claims[name]
        ]
        if taken:
            raise Conflict(_taken_message(taken), keys=taken)

    def _write_versioned(
        self,
        class_name: str,
        objects: Mapping[str, Mapping[str, Any]],
        if_versions: Mapping[str, int],
        owners: list[str] | None,
        ttl: float | None,
        moves: _Reservations,
    ) -> Pending[dict[str, int]]:
        writes = []
        for object_id, data in objects.items():
            if object_id not in if_versions:
                raise InvalidValue(f"if_versions has no version for {object_id!r}")
            expected = if_versions[object_id]
            object_owners: list[str] | None
            if owners is not None:
                object_owners = owners
            elif expected == 0 and self.user_id is not None:
                object_owners = [self.user_id]
            else:
                object_owners = _data_auth(data)
            if self.user_id is not None and self.user_id not in (object_owners or []):
                raise InvalidValue(
                    f"this user may not write {object_id!r}: it is not among its owners"
                )
            writes.append(ObjectWrite(object_id, _with_auth(data, object_owners), expected))
        return self._start_write(class_name, objects, writes, ttl, moves)

    def delete(self, class_name: str, object_id: str) -> bool:
        """Remove the object; ``False`` if it is missing or not visible to this scope."""
        return self.delete_many(class_name, [object_id]) == 1

    def delete_many(
        self, class_name: str, object_ids: Sequence[str], *, releases: Sequence[str] = ()
    ) -> int:
        """Remove the visible objects among ``object_ids``; returns how many were removed.

        ``releases`` names reservations to delete with them, in the same batch (atomic where
        the store is). That costs one bulk read (to count, and in a user scope to check
        visibility) and one batch. A user scope releases nothing unless it removes at least
        one object; ``system()`` releases them even when no object is given (repair).
        """
        _check_sequence(object_ids, "object_ids")
        ids = list(dict.fromkeys(object_ids))
        names = _Reservations.check(class_name, {}, None, releases, None).releases
        if names:
            found = self.read_many(class_name, ids) if ids else {}
            if not found and not self.is_system:
                return 0
            self._adapter.remove_and_release(
                class_name, ids if self.is_system else list(found), names
            )
            return len(found)
        if not ids:
            return 0
        if self.is_system:
            return self._adapter.remove_many(class_name, ids)
        visible = self.get_many(class_name, ids)
        return self._adapter.remove_many(class_name, list(visible)) if visible else 0

    # -- reservations --------------------------------------------------------------------

    def reservation_owner(self, class_name: str, name: str) -> str | None:
        """The id of the object holding reservation ``name`` of ``class_name``, or ``None``.

        A user scope sees only holders it can see: ``None`` there means free or held by an
        object this scope cannot see (a claim of it then raises ``Conflict``). One round trip,
        plus one in a user scope when the name is held.
        """
        return self.reservation_owners(class_name, [name]).get(name)

    def reservation_owners(self, class_name: str, names: Sequence[str]) -> dict[str, str]:
        """``reservation_owner`` for several names in one bulk read: name -> holder's id, for
        the names that are held (and, in a user scope, whose holder it can see)."""
        _check_sequence(names, "names")
        unique = list(dict.fromkeys(names))
        for name in unique:
            reservation_key(class_name, name)
        owners = self._adapter.reservation_owners(class_name, unique) if unique else {}
        if self.is_system or not owners:
            return owners
        visible = self.read_many(class_name, list(dict.fromkeys(owners.values())))
        return {name: owner for name, owner in owners.items() if owner in visible}

    # -- lists ---------------------------------------------------------------------------

    def list_items(self, list_name: str, pointer: str) -> list[str]:
        """The items of a list in insertion order (empty if missing or not visible)."""
        stored = self._adapter.read_list(list_name, pointer)
        if stored is None or not stored.items:
            return []
        if self.user_id is not None and self.user_id not in stored.auth:
            return []
        return stored.items

    get_list = list_items

    def list_add(self, list_name: str, pointer: str, item_id: str) -> bool:
        """Append ``item_id`` unless present; ``True`` if it was added.

        An empty or missing list has no owner, so adding to it makes this user its owner.
        A list owned by someone else is refused with ``Conflict`` (as with a taken id).
        """
        validate_id(item_id, what="list item")
        added = self._adapter.add_to_list(list_name, pointer, item_id, owner=self.user_id)
        if added is None:
            raise Conflict(f"list {list_name}:{pointer} is already taken")
        return added

    def list_remove(self, list_name: str, pointer: str, item_id: str) -> bool:
        """Remove ``item_id``; ``False`` if absent or the list is not visible."""
        validate_id(item_id, what="list item")
        return self._adapter.remove_from_list(list_name, pointer, item_id, owner=self.user_id)

    def list_clear(self, list_name: str, pointer: str) -> bool:
        """Delete the whole list; ``False`` if missing or not visible."""
        return self._adapter.clear_list(list_name, pointer, owner=self.user_id)

    composite_key = staticmethod(composite_key)

    def __repr__(self) -> str:
        who = "system" if self.is_system else repr(self.user_id)
        return f"<ScopedDatastore {who} on {self._adapter.name}>"


@dataclass(frozen=True)
class _Reservations:
    """The validated ``claims`` and ``releases`` of one write."""

    claims: dict[str, str]
    releases: list[str]

    @classmethod
    def check(
        cls,
        class_name: str,
        objects: Mapping[str, Any],
        claims: Mapping[str, str] | None,
        releases: Sequence[str],
        ttl: float | None,
    ) -> _Reservations:
        if claims is not None and not isinstance(claims, Mapping):
            raise InvalidValue("claims must be a mapping of reservation name -> object id")
        if isinstance(releases, str) or not isinstance(releases, Sequence):
            raise InvalidValue("releases must be a list of reservation names")
        claimed = dict(claims or {})
        released = list(dict.fromkeys(releases))
        for name, owner in claimed.items():
            reservation_key(class_name, name)
            if owner not in objects:
                raise InvalidValue(
                    f"claim {name!r} names {owner!r}, which is not among the objects written"
                )
            if name in released:
                raise InvalidValue(f"reservation {name!r} is both claimed and released")
        for name in released:
            reservation_key(class_name, name)
        if claimed and ttl is not None:
            raise InvalidValue("claims cannot be written with a ttl: they would outlive it")
        return cls(claimed, released)


def _taken_message(keys: Sequence[str]) -> str:
    return f"already reserved: {', '.join(map(repr, keys))}; nothing was written"


def _explain_taken(pending: Pending[list[int]]) -> Pending[list[int]]:
    """``pending``, whose ``Conflict`` says which reservations were taken, when some were."""

    def receive() -> list[int]:
        try:
            return pending.result()
        except Conflict as exc:
            taken = [key for key in exc.keys if key.startswith(RESERVATION_PREFIX)]
            if not taken:
                raise
            raise Conflict(_taken_message(taken), keys=exc.keys) from exc

    return Pending.run(receive) if pending.done() else Pending(receive)


def _data_auth(data: Mapping[str, Any]) -> list[str] | None:
    """Owners carried by ``data`` (``None``: a public object with no ``_auth`` at all)."""
    return _validate_auth(data[AUTH_FIELD]) if AUTH_FIELD in data else None


def _with_auth(data: Mapping[str, Any], owners: list[str] | None) -> dict[str, Any]:
    stored = {key: value for key, value in data.items() if key != AUTH_FIELD}
    if owners is not None:
        stored[AUTH_FIELD] = owners
    return stored


def _validate_auth(auth: Any) -> list[str]:
    if isinstance(auth, str) or not isinstance(auth, (list, tuple)):
        raise InvalidValue("auth must be a list of user ids")
    return [validate_id(user, what="user id") for user in auth]


def _check_sequence(values: Any, name: str) -> None:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidValue(f"{name} must be a list of ids, not {type(values).__name__}")
