"""Storage layer: the KV and SQL contracts, their backends, and the ``Datastore`` facade.

Never imports Django. Backends live in ``datastore.backends`` and are imported on demand so that
using one never requires another's client library.
"""

from . import codec, errors, keys
from .adapters.base import StoredObject
from .cache import (
    CacheClient,
    RateLimiterClient,
    RateLimitResult,
    SessionCacheClient,
    StartedCheck,
)
from .contract import (
    DEFAULT_KV_LIMITS,
    DeleteItem,
    Entry,
    Filter,
    KeyPage,
    KVLimits,
    KVStore,
    PutItem,
    QueryHit,
    QueryResult,
    RoundTripCounter,
    SQLColumn,
    SQLDatabase,
    Status,
)
from .errors import (
    AccessDenied,
    Conflict,
    DatastoreError,
    IntegrityError,
    InvalidKey,
    InvalidValue,
    NotFound,
    NotSupported,
    QueryError,
    RateLimited,
    TooLarge,
    Unavailable,
    UnknownClass,
)
from .facade import Datastore, ScopedDatastore
from .keys import composite_key, list_key, object_key
from .pending import Pending
from .routing import DEFAULT_CLASS_NAMESPACES, Routing

__all__ = [
    "DEFAULT_CLASS_NAMESPACES",
    "DEFAULT_KV_LIMITS",
    "AccessDenied",
    "CacheClient",
    "Conflict",
    "Datastore",
    "DatastoreError",
    "DeleteItem",
    "Entry",
    "Filter",
    "IntegrityError",
    "InvalidKey",
    "InvalidValue",
    "KVLimits",
    "KVStore",
    "KeyPage",
    "NotFound",
    "NotSupported",
    "Pending",
    "PutItem",
    "QueryError",
    "QueryHit",
    "QueryResult",
    "RateLimitResult",
    "RateLimited",
    "RateLimiterClient",
    "RoundTripCounter",
    "Routing",
    "SQLColumn",
    "SQLDatabase",
    "ScopedDatastore",
    "SessionCacheClient",
    "StartedCheck",
    "Status",
    "StoredObject",
    "TooLarge",
    "Unavailable",
    "UnknownClass",
    "codec",
    "composite_key",
    "errors",
    "keys",
    "list_key",
    "object_key",
]
