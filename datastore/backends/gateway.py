"""Workers KV and D1 through the Nimbus gateway Worker (``worker/gateway.js``): production
traffic on Cloudflare, one signed request per operation instead of the REST API's several.

``GatewayKVStore`` and ``GatewayD1Database`` built for one gateway (URL, secret and plan) share
its client, and so combine requests:

* a write is not sent when ``start_put``/``start_put_many`` returns: ``Pending.join`` adds the
  metadata statements that follow it, and the gateway runs them only if the write landed. A
  save is then one request;
* ``select_entries`` runs a select and reads the KV entries of its rows in one request (a page
  with its objects);
* ``incr`` is atomic (the gateway counts in D1 and copies the count to KV).

What stays as on Cloudflare's REST API: no compare-and-set or versions (``supports_cas =
False``, versions reported as 0), eventual consistency across locations, TTLs of whole seconds
(at least 60), one write per second per key. Binary values travel base64, so ``get_many`` is
exact for any bytes. A D1 batch is one transaction (``env.DB.batch``); parameters keep their
JSON types (numbers stay numbers, NULL stays NULL, bytes are BLOBs). D1 binds a number as a
double, so an integer is INTEGER in a column declared INTEGER (as every metadata column is) and
REAL in an expression or an untyped column; integers beyond 2**53 are refused.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..contract import (
    Entry,
    KeyPage,
    KVLimits,
    Names,
    QueryResult,
    RoundTripCounter,
    SQLColumn,
    SQLDatabase,
    Statement,
    Status,
    Versions,
)
from ..errors import DatastoreError, InvalidKey, InvalidValue, QueryError, TooLarge
from ..keys import validate_namespace
from ..pending import Pending
from ._base import BaseKVStore, check_amount
from ._cursor import decode_after_key, encode_after_key
from ._d1_sql import has_second_statement
from ._gateway_http import GatewayClient, decode_value, encode_value, gateway_client
from ._introspection import table_info
from ._validation import PreparedDelete, PreparedItem, PreparedPut, check_list_args, validate_keys
from .cloudflare import MAX_STATEMENT_BYTES, is_idempotent

__all__ = ["GATEWAY_KV_LIMITS", "GatewayD1Database", "GatewayKVStore"]

# The gateway keeps a TTL'd key's expiry in its metadata (the binding's reads do not tell it).
GATEWAY_KV_LIMITS = KVLimits(min_ttl_seconds=60, max_metadata_bytes=1024 - 48)
READ_CHUNK = 1000  # keys per kv.get operation (10 of the Worker's KV operations)
MAX_SAFE_INTEGER = 2**53 - 1
# the store has a method called ``list``
Results = list[QueryResult]
Operations = list[dict[str, Any]]
Answers = list[Any]


def _client(
    client: GatewayClient | None,
    url: str | None,
    secret: str | None,
    plan: str,
    max_body_bytes: int | None,
) -> GatewayClient:
    if client is not None:
        return client
    if not url or not secret:
        raise InvalidValue("the gateway backends need url= and secret= (or client=)")
    return gateway_client(url, secret, plan, max_body_bytes)


def _raise_first(values: Sequence[Any]) -> None:
    for value in values:
        if isinstance(value, DatastoreError):
            raise value


class _Request:
    """Operations gathered for one gateway request, sent once when an answer is needed."""

    def __init__(self, client: GatewayClient, counter: RoundTripCounter, what: str) -> None:
        self.client = client
        self.counter = counter
        self.what = what
        self.operations: list[dict[str, Any]] = []
        self.idempotent = True
        self.results: list[Any] | None = None

    def add(self, operation: dict[str, Any], *, idempotent: bool = True) -> int:
        assert self.results is None, "the request was sent already"
        self.operations.append(operation)
        self.idempotent = self.idempotent and idempotent
        return len(self.operations) - 1

    def send(self) -> list[Any]:
        if self.results is None:
            self.results = self.client.run(
                self.operations,
                what=self.what,
                idempotent=self.idempotent,
                counter=self.counter,
            )
        return self.results


class _PendingWrite(Pending[Versions]):
    """A KV write gathered, not sent: ``join`` may add the statements that follow it."""

    __slots__ = ("_indices", "_request", "_versions")

    def __init__(self, request: _Request, indices: list[int], versions: Versions) -> None:
        super().__init__(self._answer)
        self._request = request
        self._indices = indices
        self._versions = versions

    def _answer(self) -> Versions:
        results = self._request.send()
        _raise_first([results[i] for i in self._indices])
        return self._versions

    def join(
        self, database: Any, statements: Sequence[Any], *, idempotent: bool = False
    ) -> Pending[Any] | None:
        request = self._request
        if (
            self.done()
            or request.results is not None
            or not isinstance(database, GatewayD1Database)
            or database.client is not request.client
            or not statements
            or len(statements) + 1 > request.client.limits.d1_statements
        ):
            return None
        operation = database.operation(statements)
        index = request.add(operation, idempotent=idempotent)
        return Pending(lambda: _query_results(request.send()[index]))


def _query_results(value: Any) -> list[QueryResult]:
    if isinstance(value, DatastoreError):
        raise value
    return [_query_result(item) for item in value["results"]]


def _query_result(item: Mapping[str, Any]) -> QueryResult:
    rows = [
        {name: decode_value(cell) if isinstance(cell, dict) else cell for name, cell in row.items()}
        for row in item["rows"]
    ]
    return QueryResult(
        rows, changes=int(item.get("changes") or 0), last_row_id=item.get("last_row_id")
    )


class GatewayCombined:
    """``KVStore.combine()`` on the gateway: every gathered call is an operation of one
    request, sent by ``send()`` or the first ``result()``. Reads and increments do not depend
    on one another (a failed read does not stop an increment), except a read whose keys come
    from an earlier one."""

    def __init__(self, store: GatewayKVStore) -> None:
        self.store = store
        self._request = _Request(store.client, store.round_trips, "combined request")
        # id(an operation's pending) -> (that pending, kept alive; the operation's index)
        self._indices: dict[int, tuple[Pending[Any], int]] = {}

    def _gather(self, operation: dict[str, Any], idempotent: bool = True) -> Pending[Any]:
        index = self._request.add(operation, idempotent=idempotent)
        request = self._request

        def answer() -> Any:
            value = request.send()[index]
            if isinstance(value, DatastoreError):
                raise value
            return value

        pending: Pending[Any] = Pending(answer)
        self._indices[id(pending)] = (pending, index)
        return pending

    def get_entries(self, namespace: str, keys: Sequence[str]) -> Pending[dict[str, Entry]]:
        validate_keys(namespace, keys, self.store.limits, self.store.limits.max_batch_get)
        operation = {"op": "kv.get", "ns": self.store._binding(namespace), "keys": list(keys)}
        return self._gather({**operation, "requires": []}).then(_entries)

    def get_entries_from(
        self, source: Pending[dict[str, Entry]], namespace: str, template: str
    ) -> Pending[dict[str, Entry]]:
        origin = source._origin  # the operation's own pending, before ``then(_entries)``
        gathered = self._indices.get(id(origin))
        if origin is None or gathered is None or gathered[0] is not origin:
            raise InvalidValue("get_entries_from takes a read gathered by this same request")
        index = gathered[1]
        operation = {
            "op": "kv.get",
            "ns": self.store._binding(namespace),
            "keys_from": {"op": index, "template": template},
            "requires": [index],
        }
        return self._gather(operation).then(_entries)

    def incr(
        self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None
    ) -> Pending[int]:
        check_amount(amount)
        validate_keys(namespace, [key], self.store.limits, 1)
        operation: dict[str, Any] = {
            "op": "kv.incr",
            "ns": self.store._binding(namespace),
            "key": key,
            "amount": amount,
            "requires": [],
        }
        if ttl is not None:
            operation["ttl"] = max(60, math.ceil(ttl))
        return self._gather(operation, idempotent=False).then(lambda value: int(value["value"]))

    def send(self) -> None:
        if self._request.operations and self._request.results is None:
            self._request.send()


class GatewayKVStore(BaseKVStore):
    """``KVStore`` on Workers KV namespaces bound to the gateway Worker."""

    backend_name = "gateway"
    supports_cas = False
    supports_namespace_management = False  # bound in wrangler.toml, named in configuration
    supports_ttl = True
    supports_transactions = False

    def __init__(
        self,
        url: str | None = None,
        secret: str | None = None,
        namespaces: Sequence[str] = (),
        *,
        plan: str = "paid",
        max_body_bytes: int | None = None,
        client: GatewayClient | None = None,
        limits: KVLimits = GATEWAY_KV_LIMITS,
    ) -> None:
        if isinstance(namespaces, (str, bytes)) or not namespaces:
            raise InvalidValue("namespaces must list the KV bindings of the gateway")
        self.namespace_names = sorted({validate_namespace(name) for name in namespaces})
        self.client = _client(client, url, secret, plan, max_body_bytes)
        self.limits = limits
        self.round_trips = RoundTripCounter()

    @property
    def supports_atomic_incr(self) -> bool:
        """``incr`` is atomic: the gateway counts in D1."""
        return True

    # -- helpers -------------------------------------------------------------------------

    def _binding(self, namespace: str) -> str:
        validate_namespace(namespace)
        if namespace in self.namespace_names:
            return namespace
        if f"NIMBUS_{namespace}" in self.namespace_names:
            return f"NIMBUS_{namespace}"
        raise InvalidKey(
            f"namespace {namespace!r} is not bound to the gateway "
            f"(configured: {', '.join(self.namespace_names)})"
        )

    def _run(self, operations: Operations, what: str, idempotent: bool) -> Answers:
        results = self.client.run(
            operations, what=what, idempotent=idempotent, counter=self.round_trips
        )
        _raise_first(results)
        return results

    def _read(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        binding = self._binding(namespace)
        unique = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        for start in range(0, len(unique), READ_CHUNK):
            operation = {
                "op": "kv.get",
                "ns": binding,
                "keys": unique[start : start + READ_CHUNK],
            }
            (value,) = self._run([operation], "KV get", idempotent=True)
            found.update(_entries(value))
        return found

    # -- reads ---------------------------------------------------------------------------

    def _get_value(self, namespace: str, key: str) -> bytes | None:
        validate_keys(namespace, [key], self.limits, 1)
        entry = self._read(namespace, [key]).get(key)
        return entry.value if entry else None

    def get_entry(self, namespace: str, key: str) -> Entry | None:
        validate_keys(namespace, [key], self.limits, 1)
        return self._read(namespace, [key]).get(key)

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        return self._read(namespace, keys) if keys else {}

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        return {key: entry.value for key, entry in self.get_entries(namespace, keys).items()}

    def exists(self, namespace: str, key: str) -> bool:
        return self._get_value(namespace, key) is not None

    def get_metadata(self, namespace: str, key: str) -> dict[str, Any] | None:
        validate_keys(namespace, [key], self.limits, 1)
        entry = self._read(namespace, [key]).get(key)
        return entry.metadata if entry else None

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> KeyPage:
        check_list_args(namespace, prefix, limit, self.limits)
        operation: dict[str, Any] = {
            "op": "kv.list",
            "ns": self._binding(namespace),
            "prefix": prefix,
            "limit": limit,
        }
        if cursor:
            operation["cursor"] = _decode_cursor(cursor, prefix)
        (value,) = self._run([operation], "KV list", idempotent=True)
        next_cursor = value.get("cursor")
        return KeyPage(
            list(value["keys"]),
            encode_after_key(json.dumps([prefix, next_cursor])) if next_cursor else None,
        )

    def select_entries(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        *,
        statement: int,
        namespace: str,
        template: str,
    ) -> tuple[Results, dict[str, Entry]]:
        """The select and the reads of its rows in one request, when ``database`` is on the
        same gateway; otherwise as every store does."""
        if not isinstance(database, GatewayD1Database) or database.client is not self.client:
            return super().select_entries(
                database, statements, statement=statement, namespace=namespace, template=template
            )
        select = database.operation(statements)
        read = {
            "op": "kv.get",
            "ns": self._binding(namespace),
            "keys_from": {"op": 0, "statement": statement, "template": template},
        }
        rows, entries = self.client.run(
            [select, read],
            what="select with KV reads",
            idempotent=True,
            counter=database.round_trips,
        )
        _raise_first([rows, entries])
        return _query_results(rows), _entries(entries)

    def combine(self) -> GatewayCombined:  # type: ignore[override]
        """Reads and increments gathered into one gateway request."""
        return GatewayCombined(self)

    def namespaces(self) -> Names:
        return list(self.namespace_names)

    def status(self) -> Status:
        try:
            described = self.client.status()
        except DatastoreError as exc:
            return Status(False, self.backend_name, self.namespaces(), None, str(exc))
        bound = set(described.get("namespaces") or [])
        missing = [name for name in self.namespace_names if name not in bound]
        detail = f"namespaces not bound to the gateway: {', '.join(missing)}" if missing else ""
        return Status(not missing, self.backend_name, self.namespaces(), None, detail)

    # -- writes --------------------------------------------------------------------------

    def _operations(self, namespace: str, items: Sequence[PreparedItem]) -> Operations:
        binding = self._binding(namespace)
        puts = [item for item in items if isinstance(item, PreparedPut)]
        deletes = [item.key for item in items if isinstance(item, PreparedDelete)]
        operations: Operations = []
        if puts:
            operations.append({"op": "kv.put", "ns": binding, "items": [_put(p) for p in puts]})
        if deletes:
            operations.append({"op": "kv.delete", "ns": binding, "keys": deletes})
        return operations

    def _fits(self, items: Sequence[PreparedItem]) -> bool:
        limits = self.client.limits
        size = sum(
            len(item.value) * 4 // 3 + 600 for item in items if isinstance(item, PreparedPut)
        )
        return len(items) <= limits.kv_operations and size < limits.max_body_bytes

    def _start_apply(self, namespace: str, items: Sequence[PreparedItem]) -> Pending[Versions]:
        if not self._fits(items):
            return Pending.run(lambda: self._apply(namespace, items))
        request = _Request(self.client, self.round_trips, "KV write")
        indices = [request.add(op) for op in self._operations(namespace, items)]
        return _PendingWrite(request, indices, [0] * len(items))

    def _apply(self, namespace: str, items: Sequence[PreparedItem]) -> Versions:
        """The puts then the deletes, in as few requests as the gateway's limits allow (one
        for most batches). Not atomic: a failure part way leaves earlier requests applied."""
        for chunk in _chunks(items, self.client.limits):
            self._run(self._operations(namespace, chunk), "KV write", idempotent=True)
        return [0] * len(items)

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_write)
        unique = list(dict.fromkeys(keys))
        existed = 0
        step = max(1, self.client.limits.kv_operations // 2 - 10)
        for start in range(0, len(unique), step):
            operation = {
                "op": "kv.delete",
                "ns": self._binding(namespace),
                "keys": unique[start : start + step],
            }
            (value,) = self._run([operation], "KV delete", idempotent=True)
            existed += len(value["existed"])
        return existed

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Atomic on the gateway (counted in D1, copied to KV): one request."""
        check_amount(amount)
        validate_keys(namespace, [key], self.limits, 1)
        operation: dict[str, Any] = {
            "op": "kv.incr",
            "ns": self._binding(namespace),
            "key": key,
            "amount": amount,
        }
        if ttl is not None:
            operation["ttl"] = max(60, math.ceil(ttl))
        (value,) = self._run([operation], "KV increment", idempotent=False)
        return int(value["value"])

    def close(self) -> None:
        """The client is shared by the stores of one gateway: it stays open."""

    def __repr__(self) -> str:
        return f"GatewayKVStore({self.client.url!r})"


def _put(put: PreparedPut) -> dict[str, Any]:
    item: dict[str, Any] = {"key": put.key, "value": encode_value(put.value)}
    if put.ttl is not None:
        item["ttl"] = max(60, math.ceil(put.ttl))
    if put.metadata is not None:
        item["metadata"] = put.metadata
    return item


def _entries(value: Mapping[str, Any]) -> dict[str, Entry]:
    return {
        key: Entry(
            decode_value(item["value"]),
            0,
            item.get("metadata"),
            float(item["expiration"]) if item.get("expiration") else None,
        )
        for key, item in value["entries"].items()
    }


def _wire_size(item: PreparedItem) -> int:
    """An upper bound of an item's bytes in a request (base64, key, metadata, JSON)."""
    if isinstance(item, PreparedPut):
        return len(item.value) * 4 // 3 + len(item.metadata_json or "") + 1200
    return 1200


def _chunks(items: Sequence[PreparedItem], limits: Any) -> list[list[PreparedItem]]:
    """Split a batch so each request fits the gateway's KV operations and body size."""
    chunks: list[list[PreparedItem]] = [[]]
    size = 0
    budget = limits.max_body_bytes - 64 * 1024
    for item in items:
        cost = _wire_size(item)
        if cost > budget:
            raise TooLarge(
                f"the value of {item.key!r} does not fit one gateway request "
                f"({limits.max_body_bytes} bytes)"
            )
        # a delete costs a list and a delete on the gateway
        if chunks[-1] and (size + cost > budget or 2 * len(chunks[-1]) + 2 > limits.kv_operations):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += cost
    return chunks


def _decode_cursor(cursor: str, prefix: str) -> str:
    try:
        cursor_prefix, gateway_cursor = json.loads(decode_after_key(cursor) or "")
    except (ValueError, TypeError) as exc:
        raise InvalidValue(f"invalid list cursor {cursor!r}") from exc
    if cursor_prefix != prefix or not isinstance(gateway_cursor, str):
        raise InvalidValue(f"list cursor {cursor!r} belongs to another prefix")
    return gateway_cursor


def _param(value: Any, sql: str) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InvalidValue(
                f"integer parameter {value} is beyond 2**53, which the gateway (JavaScript) "
                f"cannot carry exactly: {sql[:120]}"
            )
        return value
    if value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise InvalidValue(f"unsupported parameter type {type(value).__name__} in: {sql[:120]}")


class GatewayD1Database:
    """``SQLDatabase`` on the D1 database bound to the gateway Worker (``DB``)."""

    backend_name = "gateway"
    max_bound_parameters: int | None = 100

    def __init__(
        self,
        url: str | None = None,
        secret: str | None = None,
        *,
        plan: str = "paid",
        max_body_bytes: int | None = None,
        client: GatewayClient | None = None,
    ) -> None:
        self.client = _client(client, url, secret, plan, max_body_bytes)
        self.round_trips = RoundTripCounter()

    def operation(self, statements: Sequence[Statement]) -> dict[str, Any]:
        """The ``d1.batch`` operation of ``statements``, checked before anything is sent."""
        body = []
        for sql, params in statements:
            if not isinstance(sql, str) or not sql.strip():
                raise QueryError("sql must be a non-empty string")
            if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
                raise QueryError(f"params must be a sequence (list or tuple), not {type(params)}")
            if has_second_statement(sql):
                raise QueryError(f"one statement at a time: {sql[:120]}")
            size = len(sql.encode("utf-8"))
            if size > MAX_STATEMENT_BYTES:
                raise TooLarge(
                    f"statement is {size} bytes; D1 accepts at most {MAX_STATEMENT_BYTES}"
                )
            if len(params) > 100:
                raise QueryError(
                    f"statement binds {len(params)} parameters; D1 accepts at most 100 per "
                    f"statement: {sql[:120]}"
                )
            body.append({"sql": sql, "params": [_param(value, sql) for value in params]})
        return {"op": "d1.batch", "statements": body}

    def execute(
        self, sql: str, params: Sequence[Any] = (), *, idempotent: bool | None = None
    ) -> QueryResult:
        return self.batch([(sql, params)], idempotent=idempotent)[0]

    def batch(
        self,
        statements: Sequence[Statement],
        *,
        idempotent: bool | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> list[QueryResult]:
        """One request, one transaction. ``before_commit`` runs before sending (D1 holds no
        transaction open across requests); a write joined to its statements (``Pending.join``)
        needs none."""
        if before_commit is not None:
            before_commit()
        if not statements:
            return []
        operation = self.operation(statements)
        if idempotent is None:
            idempotent = all(is_idempotent(sql) for sql, _ in statements)
        if len(statements) + 1 > self.client.limits.d1_statements:
            raise TooLarge(
                f"{len(statements)} statements in one batch; the gateway's plan "
                f"({self.client.limits.plan}) runs at most {self.client.limits.d1_statements - 1}"
            )
        (value,) = self.client.run(
            [operation], what="D1 query", idempotent=idempotent, counter=self.round_trips
        )
        return _query_results(value)

    def table_info(self, table: str) -> list[SQLColumn]:
        return table_info(self, table)

    def close(self) -> None:
        """The client is shared by the stores of one gateway: it stays open."""

    def __repr__(self) -> str:
        return f"GatewayD1Database({self.client.url!r})"
