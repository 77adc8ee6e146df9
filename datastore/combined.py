"""Objects read together: ``ScopedDatastore.combine()``.

An API request's authentication reads the API key, then its owner (named by a field of the
key), and counts the request against its rate limit. Where the store combines requests (the
gateway) that is one round trip; elsewhere the same calls run one after the other::

    reads = datastore.system().combine()
    key = reads.read("APIKEY", digest)
    owner = reads.read_referenced(key, "user_id", "USER")
    hits = reads.kv.incr("NIMBUS_CACHE", "rl:api:key_...", ttl=60)
    reads.send()
    key.result(), owner.result(), hits.result()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .adapters.base import ObjectAdapter, StoredObject
from .adapters.kv import KVAdapter, decode_entry
from .contract import Entry, KVCombined
from .errors import InvalidValue
from .keys import object_key
from .pending import Pending

__all__ = ["CombinedReads"]

Visible = Callable[[StoredObject | None], StoredObject | None]


class CombinedReads:
    """Object reads (and, through ``kv``, counter increments) gathered into one request where
    the store combines them. ``read``/``read_referenced`` answer ``None`` for an object that is
    missing or not visible to the scope; deleted objects are answered (check ``deleted_at``)."""

    def __init__(
        self, adapter: ObjectAdapter, visible: Visible, kv: KVCombined | None = None
    ) -> None:
        self._adapter = adapter
        self._visible = visible
        self._objects: KVCombined | None = None
        if isinstance(adapter, KVAdapter) and (kv is None or kv.store is adapter.kv):
            self._objects = kv or adapter.kv.combine()
        self.kv = kv if kv is not None else self._objects
        # id(an object read's pending) -> (that pending, kept alive; its raw entries)
        self._raw: dict[int, tuple[Pending[Any], Pending[dict[str, Entry]]]] = {}

    def read(self, class_name: str, object_id: str) -> Pending[StoredObject | None]:
        """The object, read with the others."""
        if self._objects is None:
            return Pending(lambda: self._visible(self._adapter.read(class_name, object_id)))
        assert isinstance(self._adapter, KVAdapter)
        key = object_key(class_name, object_id)
        namespace = self._adapter.routing.namespace_for(class_name)
        raw = self._objects.get_entries(namespace, [key])
        pending = raw.then(lambda entries: self._decoded(entries.get(key)))
        self._raw[id(pending)] = (pending, raw)
        return pending

    def read_referenced(
        self, source: Pending[StoredObject | None], field: str, class_name: str
    ) -> Pending[StoredObject | None]:
        """The ``class_name`` object whose id ``source``'s object holds in ``field``: the
        owner of an API key (``read_referenced(key, "user_id", "USER")``)."""
        if self._objects is None:

            def read() -> StoredObject | None:
                found = source.result()
                value = found.data.get(field) if found is not None else None
                if not isinstance(value, str) or not value:
                    return None
                return self._visible(self._adapter.read(class_name, value))

            return Pending(read)
        assert isinstance(self._adapter, KVAdapter)
        gathered = self._raw.get(id(source))
        if gathered is None or gathered[0] is not source:
            raise InvalidValue("read_referenced takes a read gathered by this same request")
        prefix = object_key(class_name, "x")[:-1]
        namespace = self._adapter.routing.namespace_for(class_name)
        entries = self._objects.get_entries_from(gathered[1], namespace, prefix + "{" + field + "}")

        def referenced(found: dict[str, Entry]) -> StoredObject | None:
            origin = source.result()
            value = origin.data.get(field) if origin is not None else None
            if not isinstance(value, str) or not value:
                return None
            return self._decoded(found.get(prefix + value))

        return entries.then(referenced)

    def _decoded(self, entry: Entry | None) -> StoredObject | None:
        return self._visible(decode_entry(entry)) if entry is not None else None

    def send(self) -> None:
        """Send what was gathered (the object reads and the ``kv`` calls)."""
        for combined in {id(c): c for c in (self._objects, self.kv) if c is not None}.values():
            combined.send()
