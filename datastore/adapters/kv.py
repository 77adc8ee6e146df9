"""The KV adapter: objects under ``{class}:{id}``, lists as JSON arrays under ``{list}:{pointer}``.

This is the layout a Worker reads with ``env.NIMBUS_PROJECTS.get("project:proj_456", "json")``.
Reservations live beside the objects of their class, under ``_unique:{class}:{name}``, holding
the owner's id as a JSON string; a write with claims or releases is a single ``put_many`` of
``PutItem``s and ``DeleteItem``s (claims create-only where the store has compare-and-set).
A list's owners are kept in the key's metadata (``{"_auth": [...]}``) so the value stays the
plain array of the spec. List changes are read-modify-write with compare-and-set where the store
supports it (retried on a concurrent change); without CAS the last writer wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from .. import codec
from ..contract import (
    BatchItem,
    DeleteItem,
    Entry,
    KVStore,
    PutItem,
    QueryResult,
    SQLDatabase,
    Statement,
)
from ..errors import InvalidValue, TooLarge
from ..keys import list_key, object_key, reservation_key
from ..pending import Pending
from ..routing import Routing
from .base import ObjectWrite, StoredList, StoredObject

__all__ = ["KVAdapter", "decode_entry"]


class KVAdapter:
    """Objects and lists on a ``KVStore``."""

    name = "kv"

    def __init__(self, kv: KVStore, routing: Routing) -> None:
        self.kv = kv
        self.routing = routing
        self.round_trips = kv.round_trips
        self.supports_cas = kv.supports_cas

    # -- objects -------------------------------------------------------------------------

    def read(self, class_name: str, object_id: str) -> StoredObject | None:
        # get_entries with one key: one round trip on every backend, Cloudflare's bulk read
        # included (its single-key read would need a second request for metadata).
        key = object_key(class_name, object_id)
        entry = self.kv.get_entries(self.routing.namespace_for(class_name), [key]).get(key)
        return _decode(entry.value, entry.version) if entry else None

    def read_many(self, class_name: str, object_ids: Sequence[str]) -> dict[str, StoredObject]:
        namespace = self.routing.namespace_for(class_name)
        keys = {object_key(class_name, object_id): object_id for object_id in object_ids}
        found: dict[str, StoredObject] = {}
        for chunk in _chunks(list(keys), self.kv.limits.max_batch_get):
            for key, entry in self.kv.get_entries(namespace, chunk).items():
                found[keys[key]] = _decode(entry.value, entry.version)
        return found

    def select_objects(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        statement: int,
        class_name: str,
        id_columns: Sequence[str],
    ) -> tuple[list[QueryResult], dict[str, StoredObject]]:
        prefix = object_key(class_name, "x")[:-1]  # "{class_lower}:", validated
        template = prefix + ":".join(f"{{{column}}}" for column in id_columns)
        results, entries = self.kv.select_entries(
            database,
            statements,
            statement=statement,
            namespace=self.routing.namespace_for(class_name),
            template=template,
        )
        return results, {
            key[len(prefix) :]: _decode(entry.value, entry.version)
            for key, entry in entries.items()
        }

    def write_many(
        self,
        class_name: str,
        writes: Sequence[ObjectWrite],
        ttl: float | None,
        *,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> list[int]:
        return self.start_write_many(
            class_name, writes, ttl, claims=claims, releases=releases
        ).result()

    def start_write_many(
        self,
        class_name: str,
        writes: Sequence[ObjectWrite],
        ttl: float | None,
        *,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> Pending[list[int]]:
        namespace = self.routing.namespace_for(class_name)
        items: list[BatchItem] = [
            PutItem(
                object_key(class_name, write.object_id),
                codec.dumps(write.data),
                ttl=ttl,
                if_version=write.if_version if self.kv.supports_cas else None,
            )
            for write in writes
        ]
        if claims or releases:
            items.extend(self._reservation_items(class_name, claims or {}, releases))
            self._check_one_batch(len(items))
            count = len(writes)
            return self.kv.start_put_many(namespace, items).then(lambda versions: versions[:count])
        if len(items) <= self.kv.limits.max_batch_write:  # one call, a single put included
            return self.kv.start_put_many(namespace, items)

        def in_chunks() -> list[int]:
            versions: list[int] = []
            for chunk in _chunks(items, self.kv.limits.max_batch_write):
                versions.extend(self.kv.put_many(namespace, chunk))
            return versions

        return Pending.run(in_chunks)

    def _reservation_items(
        self, class_name: str, claims: Mapping[str, str], releases: Sequence[str]
    ) -> list[BatchItem]:
        """Claims as create-only puts (where the store can refuse them), releases as deletes."""
        create_only = 0 if self.kv.supports_cas else None
        items: list[BatchItem] = [
            PutItem(reservation_key(class_name, name), codec.dumps(owner), if_version=create_only)
            for name, owner in claims.items()
        ]
        items.extend(DeleteItem(reservation_key(class_name, name)) for name in releases)
        return items

    def _check_one_batch(self, count: int) -> None:
        limit = self.kv.limits.max_batch_write
        if count > limit:
            raise TooLarge(
                f"{count} writes (objects and their reservations) do not fit one batch of "
                f"{limit}: reservations move with their objects atomically, so write fewer "
                "objects at a time"
            )

    def remove_many(self, class_name: str, object_ids: Sequence[str]) -> int:
        namespace = self.routing.namespace_for(class_name)
        keys = [object_key(class_name, object_id) for object_id in object_ids]
        return sum(
            self.kv.delete_many(namespace, chunk)
            for chunk in _chunks(keys, self.kv.limits.max_batch_write)
        )

    def remove_and_release(
        self, class_name: str, object_ids: Sequence[str], releases: Sequence[str]
    ) -> None:
        namespace = self.routing.namespace_for(class_name)
        items: list[BatchItem] = [
            DeleteItem(object_key(class_name, object_id)) for object_id in object_ids
        ]
        items.extend(self._reservation_items(class_name, {}, releases))
        self._check_one_batch(len(items))
        if items:
            self.kv.put_many(namespace, items)

    def reservation_owners(self, class_name: str, names: Sequence[str]) -> dict[str, str]:
        namespace = self.routing.namespace_for(class_name)
        keys = {reservation_key(class_name, name): name for name in names}
        owners: dict[str, str] = {}
        for chunk in _chunks(list(keys), self.kv.limits.max_batch_get):
            for key, value in self.kv.get_many(namespace, chunk).items():
                owners[keys[key]] = _owner(key, value)
        return owners

    def list_ids(
        self, class_name: str, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        prefix = f"{class_name.lower()}:"
        page = self.kv.list(self.routing.namespace_for(class_name), prefix, cursor, limit)
        return [key[len(prefix) :] for key in page.keys], page.cursor

    # -- lists ---------------------------------------------------------------------------

    def _list_location(self, list_name: str, pointer: str) -> tuple[str, str]:
        return self.routing.namespace_for_list(list_name), list_key(list_name, pointer)

    def read_list(self, list_name: str, pointer: str) -> StoredList | None:
        namespace, key = self._list_location(list_name, pointer)
        entry = self.kv.get_entries(namespace, [key]).get(key)
        if entry is None:
            return None
        items = codec.loads(entry.value)
        if not isinstance(items, list):
            raise InvalidValue(f"{key!r} does not hold a list")
        auth = (entry.metadata or {}).get("_auth", [])
        return StoredList([str(item) for item in items], list(auth), entry.version)

    def _change_list(
        self,
        list_name: str,
        pointer: str,
        owner: str | None,
        change: Literal["add", "remove", "clear"],
        item: str | None,
    ) -> bool | None:
        """Apply ``change`` (add/remove/clear): ``KVStore.edit_list`` (compare-and-set, retried
        on a race; one request on the gateway). An empty list has no owner: anyone may add to
        it and so become its owner."""
        namespace, key = self._list_location(list_name, pointer)
        return self.kv.edit_list(namespace, key, change, item, owner=owner)

    def add_to_list(
        self, list_name: str, pointer: str, item: str, *, owner: str | None
    ) -> bool | None:
        return self._change_list(list_name, pointer, owner, "add", item)

    def remove_from_list(
        self, list_name: str, pointer: str, item: str, *, owner: str | None
    ) -> bool:
        return bool(self._change_list(list_name, pointer, owner, "remove", item))

    def clear_list(self, list_name: str, pointer: str, *, owner: str | None) -> bool:
        return bool(self._change_list(list_name, pointer, owner, "clear", None))


def decode_entry(entry: Entry) -> StoredObject:
    """The object an entry holds."""
    return _decode(entry.value, entry.version)


def _decode(value: bytes, version: int) -> StoredObject:
    data = codec.loads(value)
    if not isinstance(data, dict):
        raise InvalidValue("stored value is not a JSON object")
    return StoredObject(data, version)


def _owner(key: str, value: bytes) -> str:
    owner = codec.loads(value)
    if not isinstance(owner, str):
        raise InvalidValue(f"reservation {key!r} does not hold an object id")
    return owner


def _chunks(items: list, size: int) -> list[list]:
    return [items[index : index + size] for index in range(0, len(items), size)]
