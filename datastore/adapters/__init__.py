"""Storage adapters behind the ``Datastore`` facade: KV keys or SQL ``objects``/``lists`` tables."""

from .base import ObjectAdapter, ObjectWrite, StoredList, StoredObject
from .kv import KVAdapter
from .sql import OBJECT_TABLES_DDL, SQLAdapter

__all__ = [
    "OBJECT_TABLES_DDL",
    "KVAdapter",
    "ObjectAdapter",
    "ObjectWrite",
    "SQLAdapter",
    "StoredList",
    "StoredObject",
]
