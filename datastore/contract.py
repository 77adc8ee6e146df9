"""The storage contract: what every KV backend and every SQL backend must do.

Two small protocols, ``KVStore`` and ``SQLDatabase``. Every backend implements its protocol
completely; the conformance suite under ``tests/datastore`` is the definition of "works".

KV semantics shared by every backend:

* Keys live in *namespaces* (a Cloudflare KV namespace, a Redis key prefix, a column in SQLite).
  A namespace comes into existence with its first write.
* Values are bytes (``str`` is accepted and stored as UTF-8). JSON lives in ``datastore.codec``.
* Every key carries a *version*: 1 after the first write, +1 on every later write. A put with
  ``if_version=n`` only succeeds if the stored version is ``n`` (``0`` means "must not exist"),
  otherwise it raises ``Conflict`` and writes nothing. Backends without compare-and-set declare
  ``supports_cas = False`` and raise ``NotSupported`` when ``if_version`` is given.
* ``put`` replaces value, TTL and metadata together (as Cloudflare KV does).
* ``put_many`` takes a batch of ``PutItem`` and ``DeleteItem``: one call writes some keys and
  deletes others. Where ``supports_cas`` (memory, SQLite, Redis) the batch is atomic: every
  ``if_version`` (of puts and deletes alike) is checked first, and if any fails, ``Conflict``
  names every failing key and nothing is written or deleted. A key may appear once per batch.
  The result has one entry per item, in order: the new version of a put, 0 for a delete.
  Cloudflare KV has neither compare-and-set nor atomic batches: there the batch is a bulk
  write, then a bulk delete (one more request when it holds deletes), and a failure between
  the two leaves the writes done and the deletes not.
* ``start_put``/``start_put_many`` send a write and return a ``Pending`` answered later (Redis
  pipelines; the other stores answer before returning).
* ``list`` pages through keys with an opaque cursor; a page holds at most ``limit`` keys and the
  cursor is ``None`` on the last page.
* Every call that reaches the underlying store adds one to ``round_trips``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload, runtime_checkable

from .pending import Pending

Statement = tuple[str, Sequence[Any]]

__all__ = [
    "DEFAULT_KV_LIMITS",
    "BatchItem",
    "DeleteItem",
    "Entry",
    "Filter",
    "KVCombined",
    "KVLimits",
    "KVStore",
    "KeyPage",
    "Names",
    "Pending",
    "PutItem",
    "QueryHit",
    "QueryResult",
    "RoundTripCounter",
    "RoundTripDelta",
    "SQLColumn",
    "SQLDatabase",
    "Status",
    "Versions",
]

Metadata = Mapping[str, Any]
# KV stores have a method called ``list``; signatures inside those classes use these aliases.
Names = list[str]
Versions = list[int]
Hits = list["QueryHit"]
Results = list["QueryResult"]


@dataclass(frozen=True)
class KVLimits:
    """Size limits a KV backend enforces *before* sending anything to the store.

    The defaults are Cloudflare Workers KV's limits, so data written locally stays portable.
    """

    max_key_bytes: int = 512
    max_value_bytes: int = 25 * 1024 * 1024
    max_metadata_bytes: int = 1024
    min_ttl_seconds: float = 0.001
    max_batch_write: int = 10_000
    max_batch_get: int = 10_000
    max_list_limit: int = 1000
    min_list_limit: int = 1


DEFAULT_KV_LIMITS = KVLimits()


@dataclass(frozen=True)
class Entry:
    """A stored value with its version and metadata."""

    value: bytes
    version: int
    metadata: dict[str, Any] | None = None
    expires_at: float | None = None  # epoch seconds on the store's clock, None = never


@dataclass(frozen=True)
class PutItem:
    """One write of a ``put_many`` batch."""

    key: str
    value: bytes | str
    ttl: float | None = None
    metadata: Metadata | None = None
    if_version: int | None = None


@dataclass(frozen=True)
class DeleteItem:
    """One delete of a ``put_many`` batch. ``if_version=n`` deletes only if the stored version
    is ``n`` (``Conflict`` otherwise, and the whole batch is refused); ``None`` deletes whatever
    is there, a missing key included. Its entry in the batch's result is 0."""

    key: str
    if_version: int | None = None


BatchItem = PutItem | DeleteItem


@dataclass(frozen=True)
class Filter:
    """One condition of ``query``/``count``: ``field`` is a dotted path into the JSON value;
    ``operator`` one of eq ne gt gte lt lte contains startswith endswith."""

    field: str
    operator: str
    value: Any


@dataclass(frozen=True)
class QueryHit:
    """A ``query`` result: the key, its decoded JSON value and its metadata."""

    key: str
    value: Any
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class KeyPage:
    """One page of ``list``: the keys and the cursor for the next page (``None`` when done)."""

    keys: list[str]
    cursor: str | None


@dataclass(frozen=True)
class Status:
    """Health of a backend, as reported by ``status()``."""

    healthy: bool
    backend: str
    namespaces: list[str] = field(default_factory=list)
    size: int | None = None  # number of stored keys where cheaply known
    detail: str = ""


@dataclass(frozen=True)
class RoundTripDelta:
    """Round trips counted inside a ``RoundTripCounter.track()`` block."""

    counter: RoundTripCounter
    start: int

    @property
    def count(self) -> int:
        return self.counter.value - self.start


class RoundTripCounter:
    """Counts calls to the underlying store. Thread-safe."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._value

    def add(self, count: int = 1) -> None:
        with self._lock:
            self._value += count

    def reset(self) -> None:
        with self._lock:
            self._value = 0

    @contextmanager
    def track(self) -> Iterator[RoundTripDelta]:
        """Measure the round trips made inside a ``with`` block: ``delta.count``."""
        yield RoundTripDelta(self, self._value)


class KVCombined(Protocol):
    """Reads and counter increments gathered into one request where the store combines
    requests (the gateway), else made one after the other. Each call returns a ``Pending``;
    ``send()`` sends what was gathered, and so does the ``result()`` of any of them."""

    @property
    def store(self) -> KVStore:
        """The store the calls go to."""
        ...

    def get_entries(self, namespace: str, keys: Sequence[str]) -> Pending[dict[str, Entry]]:
        """``store.get_entries``, gathered."""
        ...

    def get_entries_from(
        self, source: Pending[dict[str, Entry]], namespace: str, template: str
    ) -> Pending[dict[str, Entry]]:
        """The entries whose keys ``template`` makes of the JSON values ``source`` read
        (``keys.fill_key_template``): an API key, then its owner (``user:{user_id}``)."""
        ...

    def incr(
        self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None
    ) -> Pending[int]:
        """``store.incr``, gathered."""
        ...

    def send(self) -> None:
        """Send what was gathered (once); errors are kept for each pending's ``result()``."""
        ...


@runtime_checkable
class KVStore(Protocol):
    """A key-value store with namespaces, versions, TTL and metadata."""

    backend_name: str
    supports_cas: bool
    supports_ttl: bool
    supports_transactions: bool
    supports_namespace_management: bool
    limits: KVLimits
    round_trips: RoundTripCounter
    clock: Callable[[], float]  # the time expiries are on (``time.time`` unless injected)

    @property
    def supports_atomic_incr(self) -> bool:
        """Whether ``incr`` never loses a concurrent increment."""
        ...

    @overload
    def get(
        self, namespace: str, key: str, *, include_metadata: Literal[False] = False
    ) -> bytes | None: ...

    @overload
    def get(self, namespace: str, key: str, *, include_metadata: Literal[True]) -> Entry | None: ...

    def get(
        self, namespace: str, key: str, *, include_metadata: bool = False
    ) -> bytes | Entry | None:
        """The value under ``key`` (with ``include_metadata``, its ``Entry``), or ``None``."""
        ...

    def get_entry(self, namespace: str, key: str) -> Entry | None:
        """Value, version and metadata of ``key`` in one round trip, or ``None``."""
        ...

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        """Values of the keys that exist; missing keys are absent from the result."""
        ...

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        """Entries (value, version, metadata) of the keys that exist."""
        ...

    def put(
        self,
        namespace: str,
        key: str,
        value: bytes | str,
        *,
        ttl: float | None = None,
        metadata: Metadata | None = None,
        if_version: int | None = None,
    ) -> int:
        """Store ``value``; returns the new version. ``Conflict`` if ``if_version`` mismatches."""
        ...

    def put_many(self, namespace: str, items: Sequence[BatchItem]) -> Versions:
        """Write the ``PutItem``s and delete the ``DeleteItem``s of a batch, atomically where
        ``supports_cas`` (see the module doc); returns one entry per item in order: the new
        version of each put, 0 for each delete. ``Conflict(keys=[every failing key])`` if an
        ``if_version`` does not hold, and then nothing is written."""
        ...

    def start_put(
        self,
        namespace: str,
        key: str,
        value: bytes | str,
        *,
        ttl: float | None = None,
        metadata: Metadata | None = None,
        if_version: int | None = None,
    ) -> Pending[int]:
        """``put``, sent without waiting for the answer: ``result()`` returns the new version or
        raises what ``put`` would. Arguments are checked before anything is sent (those errors
        raise here). Redis pipelines the request, so the caller can work while it is in
        flight (its connection is held until ``result()`` is called: always call it); other
        stores answer before returning."""
        ...

    def start_put_many(self, namespace: str, items: Sequence[BatchItem]) -> Pending[Versions]:
        """``put_many``, sent without waiting for the answer (see ``start_put``)."""
        ...

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        ...

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        """Remove the keys; returns how many existed."""
        ...

    def exists(self, namespace: str, key: str) -> bool:
        """Whether ``key`` holds a live (unexpired) value."""
        ...

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> KeyPage:
        """One page of keys starting with ``prefix``."""
        ...

    def get_metadata(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The metadata stored with ``key`` (``None`` if the key is missing or has none)."""
        ...

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer stored at ``key`` (a missing key counts as 0) and
        return the result. ``ttl`` applies only when the key is created, so a counter keeps
        the expiry of its first increment (a fixed window). Atomic where
        ``supports_atomic_incr`` (every store with compare-and-set, and the gateway); over
        Cloudflare's REST API it is a read then a write, so concurrent increments can be lost."""
        ...

    def set_metadata(
        self, namespace: str, key: str, metadata: Metadata, *, merge: bool = False
    ) -> bool:
        """Replace or merge the metadata of an existing key; ``False`` if it is missing."""
        ...

    def query(
        self,
        namespace: str,
        filter: Any = None,
        *,
        sort: Any = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Hits:
        """JSON-object values matching ``filter`` (a ``Filter``/dict or a list of them)."""
        ...

    def count(self, namespace: str, filter: Any = None) -> int:
        """How many JSON-object values match ``filter``."""
        ...

    def clear(self, namespace: str) -> int:
        """Delete every key of ``namespace``; returns how many."""
        ...

    def edit_list(
        self,
        namespace: str,
        key: str,
        change: Literal["add", "remove", "clear"],
        item: str | None = None,
        *,
        owner: str | None = None,
    ) -> bool | None:
        """Add or remove ``item`` in the list under ``key``, or clear it (the spec's layout: a
        JSON array, its owners in the metadata's ``_auth``); ``None`` if ``owner`` may not."""
        ...

    def combine(self) -> KVCombined:
        """A request builder: reads and increments gathered, sent together where the store
        combines requests (one round trip on the gateway), else one after the other."""
        ...

    def select_entries(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        *,
        statement: int,
        namespace: str,
        template: str,
    ) -> tuple[Results, dict[str, Entry]]:
        """Run ``statements`` on ``database`` (as ``batch``), then read the entries whose keys
        ``template`` makes of the rows of statement number ``statement``
        (``keys.fill_key_template``). Two round trips; one where the store combines requests
        with ``database`` (the gateway)."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """``with store.transaction(): ...``: the block's writes land together or not at all
        (``NotSupported`` where ``supports_transactions`` is false)."""
        ...

    def namespaces(self) -> Names:
        """Namespaces that hold (or held) data in this store, sorted."""
        ...

    def list_namespaces(self) -> Names:
        """The same as ``namespaces()``."""
        ...

    def create_namespace(self, name: str) -> bool:
        """Register an empty namespace (``NotSupported`` without namespace management)."""
        ...

    def delete_namespace(self, name: str, *, recursive: bool = False) -> bool:
        """Remove a namespace; a non-empty one needs ``recursive=True``."""
        ...

    def status(self) -> Status:
        """Health and size; never raises for an unreachable backend (``healthy=False``)."""
        ...

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
        ...


@dataclass(frozen=True)
class SQLColumn:
    """One column as reported by ``table_info`` (SQLite's ``PRAGMA table_info``)."""

    name: str
    type: str
    notnull: bool
    default: str | None
    primary_key: int  # 0 if not part of the key, else its 1-based position


class QueryResult(Sequence[dict[str, Any]]):
    """Rows of one statement (a sequence of dicts) plus what the statement changed."""

    __slots__ = ("changes", "last_row_id", "rows")

    def __init__(
        self, rows: list[dict[str, Any]], *, changes: int = 0, last_row_id: int | None = None
    ) -> None:
        self.rows = rows
        self.changes = changes
        self.last_row_id = last_row_id

    def __getitem__(self, index: Any) -> Any:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"QueryResult(rows={self.rows!r}, changes={self.changes})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryResult):
            return self.rows == other.rows and self.changes == other.changes
        if isinstance(other, list):
            return self.rows == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@runtime_checkable
class SQLDatabase(Protocol):
    """A SQL database in the SQLite dialect Cloudflare D1 speaks, with ``?`` parameters."""

    backend_name: str
    max_bound_parameters: int | None
    # ``batch`` is one transaction: every statement or none. D1 over the REST API does not
    # promise it (a batch may commit its first statements and not the rest).
    atomic_batches: bool
    round_trips: RoundTripCounter

    def execute(
        self, sql: str, params: Sequence[Any] = (), *, idempotent: bool | None = None
    ) -> QueryResult:
        """Run one statement; rows come back as dicts keyed by column name.

        ``idempotent=True`` tells a remote backend the statement may be re-sent after a lost
        response; ``None`` lets the backend decide from the SQL (read-only or guarded DDL).
        """
        ...

    def batch(
        self,
        statements: Sequence[Statement],
        *,
        idempotent: bool | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> list[QueryResult]:
        """Run several statements in one round trip, atomically where the backend can.

        ``before_commit`` is called once the statements have run and before they are
        committed; if it raises, nothing is committed and its error propagates. The model
        layer passes the answer of a KV write in flight, so the metadata row is written while
        that write travels and committed only if it succeeded. Backends without interactive
        transactions (D1) call it before sending the batch.
        """
        ...

    def table_info(self, table: str) -> list[SQLColumn]:
        """Columns of ``table`` (empty if the table does not exist)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
