"""What every KV backend does the same way: argument checks and the single-item forms.

A backend implements ``_apply(namespace, items)`` (apply a validated batch of ``PreparedPut``
and ``PreparedDelete``, returning one version per item: 0 for a delete), ``delete_many`` and
``get_entry``; ``put``, ``put_many``, ``start_put``,
``start_put_many``, ``delete`` and ``get_metadata`` follow from those here. A backend that can
pipeline a write overrides ``_start_apply`` too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, overload

from .. import codec
from ..contract import (
    BatchItem,
    Entry,
    KVLimits,
    Metadata,
    Names,
    QueryResult,
    SQLDatabase,
    Statement,
    Versions,
)
from ..errors import Conflict, InvalidValue, NotSupported
from ..keys import fill_key_template, validate_namespace
from ..pending import Pending
from ._combined import SequentialCombined
from ._query import QueryHit, matches, parse_filters, parse_sort, select
from ._validation import PreparedItem, PreparedPut, prepare_put, prepare_puts

__all__ = ["BaseKVStore", "check_amount", "parse_counter"]

_INCR_RETRIES = 50
_LIST_RETRIES = 8
Results = list[QueryResult]  # the class has a method called ``list``


def check_page(limit: int, offset: int) -> None:
    for name, value, minimum in (("limit", limit, 1), ("offset", offset, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidValue(f"{name} must be an int >= {minimum}, not {value!r}")
    if limit > 10_000:
        raise InvalidValue("limit must be at most 10000")


def check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidValue(f"amount must be an int, not {amount!r}")


def parse_counter(value: bytes | None, key: str) -> int:
    """The integer a counter holds (0 when missing); ``InvalidValue`` if it holds something else."""
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        raise InvalidValue(f"{key!r} does not hold an integer") from None


def _list_items(entry: Entry, key: str) -> list[str]:
    items = codec.loads(entry.value)
    if not isinstance(items, list):
        raise InvalidValue(f"{key!r} does not hold a list")
    return [str(item) for item in items]


def _first(versions: Versions) -> int:
    return versions[0]


class BaseKVStore:
    supports_cas: bool
    supports_namespace_management: bool = True
    limits: KVLimits

    @property
    def supports_atomic_incr(self) -> bool:
        """Whether ``incr`` is atomic: with compare-and-set it is, unless a store says more."""
        return self.supports_cas

    # Expiry times (``Entry.expires_at``) are on this clock; stores that take ``clock=`` set it.
    clock: Callable[[], float] = time.time

    def _get_value(self, namespace: str, key: str) -> bytes | None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``with store.transaction(): ...``: every write in the block lands, or none does if it
        raises. Stores without transactions (``supports_transactions = False``) refuse it."""
        raise NotSupported(
            f"{type(self).__name__} has no transactions (supports_transactions=False); "
            "nothing would make the block atomic"
        )
        yield  # pragma: no cover

    @overload
    def get(
        self, namespace: str, key: str, *, include_metadata: Literal[False] = False
    ) -> bytes | None: ...

    @overload
    def get(self, namespace: str, key: str, *, include_metadata: Literal[True]) -> Entry | None: ...

    def get(
        self, namespace: str, key: str, *, include_metadata: bool = False
    ) -> bytes | Entry | None:
        """The value (or, with ``include_metadata``, the ``Entry`` with its metadata)."""
        if include_metadata:
            return self.get_entry(namespace, key)  # type: ignore[no-any-return]
        return self._get_value(namespace, key)

    def _apply(self, namespace: str, items: Sequence[PreparedItem]) -> Versions:
        raise NotImplementedError

    def _start_apply(self, namespace: str, items: Sequence[PreparedItem]) -> Pending[Versions]:
        """``_apply`` sent without waiting; a backend that can pipeline overrides it."""
        return Pending.run(lambda: self._apply(namespace, items))

    def _prepare_one(
        self,
        namespace: str,
        key: str,
        value: bytes | str,
        ttl: float | None,
        metadata: Metadata | None,
        if_version: int | None,
    ) -> list[PreparedPut]:
        validate_namespace(namespace)
        put = prepare_put(
            key,
            value,
            ttl=ttl,
            metadata=metadata,
            if_version=if_version,
            limits=self.limits,
            supports_cas=self.supports_cas,
        )
        return [put]

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
        puts = self._prepare_one(namespace, key, value, ttl, metadata, if_version)
        return self._apply(namespace, puts)[0]

    def put_many(self, namespace: str, items: Sequence[BatchItem]) -> Versions:
        prepared = prepare_puts(namespace, items, self.limits, self.supports_cas)
        return self._apply(namespace, prepared) if prepared else []

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
        puts = self._prepare_one(namespace, key, value, ttl, metadata, if_version)
        return self._start_apply(namespace, puts).then(_first)

    def start_put_many(self, namespace: str, items: Sequence[BatchItem]) -> Pending[Versions]:
        prepared = prepare_puts(namespace, items, self.limits, self.supports_cas)
        return self._start_apply(namespace, prepared) if prepared else Pending.run(list)

    def delete(self, namespace: str, key: str) -> bool:
        return self.delete_many(namespace, [key]) == 1

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        raise NotImplementedError

    def get_entry(self, namespace: str, key: str) -> Any:
        raise NotImplementedError

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        raise NotImplementedError

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Compare-and-set loop (backends override it with one atomic round trip); without
        compare-and-set a read then a write, which concurrent increments can overtake."""
        check_amount(amount)
        for _ in range(_INCR_RETRIES):
            entry = self.get_entry(namespace, key)
            value = parse_counter(entry.value if entry else None, key) + amount
            try:
                if entry is None:
                    version = 0 if self.supports_cas else None
                    self.put(namespace, key, str(value), ttl=ttl, if_version=version)
                else:
                    version = entry.version if self.supports_cas else None
                    self.put(
                        namespace, key, str(value), ttl=self._remaining(entry), if_version=version
                    )
            except Conflict:
                continue
            return value
        raise Conflict(f"counter {key!r} kept changing; gave up after {_INCR_RETRIES} attempts")

    def set_metadata(
        self, namespace: str, key: str, metadata: Metadata, *, merge: bool = False
    ) -> bool:
        """Replace (or, with ``merge``, update) the metadata of an existing key, keeping its
        value and expiry; ``False`` if the key does not exist. A write: the version moves on."""
        if not isinstance(metadata, Mapping):
            raise InvalidValue(f"metadata must be a dict, not {type(metadata).__name__}")
        for _ in range(_INCR_RETRIES):
            entry = self.get_entry(namespace, key)
            if entry is None:
                return False
            new = {**(entry.metadata or {}), **metadata} if merge else dict(metadata)
            try:
                self.put(
                    namespace,
                    key,
                    entry.value,
                    ttl=self._remaining(entry),
                    metadata=new,
                    if_version=entry.version if self.supports_cas else None,
                )
            except Conflict:
                continue
            return True
        raise Conflict(f"{key!r} kept changing; gave up after {_INCR_RETRIES} attempts")

    def _remaining(self, entry: Any) -> float | None:
        """The TTL left on an entry, as the store will accept it again."""
        if entry.expires_at is None:
            return None
        return max(entry.expires_at - self.clock(), self.limits.min_ttl_seconds, 0.001)

    def _scan(self, namespace: str) -> Iterator[QueryHit]:
        """Every JSON-object value of a namespace: a page of keys and one bulk read at a time."""
        cursor = None
        while True:
            page = self.list(namespace, cursor=cursor, limit=self.limits.max_list_limit)
            entries = self.get_entries(namespace, page.keys) if page.keys else {}
            for key in page.keys:
                entry = entries.get(key)
                if entry is None:
                    continue
                try:
                    document = codec.loads(entry.value)
                except InvalidValue:
                    continue
                if isinstance(document, dict):
                    yield QueryHit(key, document, entry.metadata)
            cursor = page.cursor
            if cursor is None:
                return

    def query(
        self,
        namespace: str,
        filter: Any = None,
        *,
        sort: Any = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[QueryHit]:
        """Objects whose JSON matches ``filter``, sorted, paged. Here: a streaming scan (one
        list page and one bulk read per 1000 keys, memory bounded by ``offset + limit``);
        SQLite pushes it down to SQL."""
        filters, order = parse_filters(filter), parse_sort(sort)
        check_page(limit, offset)
        return select(self._scan(namespace), filters, order, limit, offset)

    def count(self, namespace: str, filter: Any = None) -> int:
        """How many objects match ``filter`` (a streaming scan here; SQL on SQLite)."""
        filters = parse_filters(filter)
        return sum(1 for hit in self._scan(namespace) if matches(hit.value, filters))

    def clear(self, namespace: str) -> int:
        """Delete every key of a namespace (streaming, page by page); returns how many."""
        removed = 0
        cursor = None
        while True:
            page = self.list(namespace, cursor=cursor, limit=self.limits.max_list_limit)
            if page.keys:
                removed += self.delete_many(namespace, page.keys)
            cursor = page.cursor
            if cursor is None:
                return removed

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> Any:
        raise NotImplementedError

    def edit_list(
        self,
        namespace: str,
        key: str,
        change: Literal["add", "remove", "clear"],
        item: str | None = None,
        *,
        owner: str | None = None,
    ) -> bool | None:
        """Change the list under ``key`` (the spec's layout: a JSON array of strings, its owners
        in the metadata's ``_auth``): ``add``/``remove`` ``item`` or ``clear`` it. ``True`` if it
        changed, ``False`` if there was nothing to do, ``None`` if ``owner`` may not change it
        (a list with items belongs to its ``_auth``; an empty one to whoever adds first).
        A read then a write with compare-and-set, retried on a race; without compare-and-set
        the last writer wins. A store that can do it in one request overrides it."""
        for _ in range(_LIST_RETRIES):
            entry = self.get_entries(namespace, [key]).get(key)
            before = _list_items(entry, key) if entry is not None else []
            owners = list((entry.metadata or {}).get("_auth", [])) if entry and before else []
            if before and owner is not None and owner not in owners:
                return None
            if change == "clear":
                return self.delete(namespace, key)
            if change == "add":
                if item in before:
                    return False
                items = [*before, str(item)]
            else:
                if item not in before:
                    return False
                items = [existing for existing in before if existing != item]
            auth = owners if before else ([owner] if owner else [])
            expected = (entry.version if entry else 0) if self.supports_cas else None
            try:
                self.put(
                    namespace,
                    key,
                    codec.dumps(items),
                    metadata={"_auth": auth},
                    if_version=expected,
                )
            except Conflict:
                continue
            return True
        raise Conflict(f"list {key!r} kept changing; gave up after {_LIST_RETRIES} attempts")

    def combine(self) -> SequentialCombined:
        """Reads and increments gathered and made one after the other on ``send()`` (see the
        contract); a store that combines requests overrides it."""
        return SequentialCombined(self)  # type: ignore[arg-type]

    def select_entries(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        *,
        statement: int,
        namespace: str,
        template: str,
    ) -> tuple[Results, dict[str, Entry]]:
        """The statements, then the entries their rows name: two round trips here (see the
        contract); a store that combines requests with ``database`` overrides it."""
        results = database.batch(statements)
        keys = [fill_key_template(template, row) for row in results[statement]]
        wanted = list(dict.fromkeys(key for key in keys if key is not None))
        return results, self.get_entries(namespace, wanted) if wanted else {}

    def namespaces(self) -> Names:
        raise NotImplementedError

    def list_namespaces(self) -> Names:
        """The spec's name for ``namespaces()``."""
        return self.namespaces()

    def _check_namespace_management(self) -> None:
        if not self.supports_namespace_management:
            raise NotSupported(
                f"{type(self).__name__} namespaces are managed outside this store "
                "(supports_namespace_management=False)"
            )

    def create_namespace(self, name: str) -> bool:
        """Register an empty namespace; ``False`` if it already exists."""
        self._check_namespace_management()
        validate_namespace(name)
        if name in self.namespaces():
            return False
        self._register(name)
        return True

    def delete_namespace(self, name: str, *, recursive: bool = False) -> bool:
        """Remove a namespace; one that holds keys needs ``recursive=True`` (its keys go too)."""
        self._check_namespace_management()
        validate_namespace(name)
        if name not in self.namespaces():
            return False
        if self.list(name, limit=1).keys and not recursive:
            raise InvalidValue(f"namespace {name!r} is not empty: pass recursive=True")
        self.clear(name)
        self._unregister(name)
        return True

    def _register(self, name: str) -> None:
        raise NotImplementedError

    def _unregister(self, name: str) -> None:
        raise NotImplementedError

    def get_metadata(self, namespace: str, key: str) -> dict[str, Any] | None:
        entry = self.get_entry(namespace, key)
        return entry.metadata if entry else None
