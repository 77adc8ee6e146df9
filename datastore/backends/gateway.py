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

import math
from collections.abc import Sequence
from typing import Any, Literal

from ..contract import (
    Entry,
    KeyPage,
    KVLimits,
    Names,
    RoundTripCounter,
    SQLDatabase,
    Statement,
    Status,
    Versions,
)
from ..errors import DatastoreError, InvalidKey, InvalidValue, TooLarge
from ..keys import validate_namespace
from ..pending import Pending
from ._base import BaseKVStore, Results, check_amount
from ._cursor import decode_store_cursor, encode_store_cursor
from ._gateway_d1 import GatewayD1Database, client_for
from ._gateway_http import GatewayClient, encode_value, entries, query_results
from ._gateway_requests import GatewayCombined, PendingWrite, Request, raise_first
from ._validation import PreparedDelete, PreparedItem, PreparedPut, check_list_args, validate_keys

__all__ = ["GATEWAY_KV_LIMITS", "GatewayD1Database", "GatewayKVStore"]

# The gateway keeps a TTL'd key's expiry in its metadata (the binding's reads do not tell it).
GATEWAY_KV_LIMITS = KVLimits(min_ttl_seconds=60, max_metadata_bytes=1024 - 48)
READ_CHUNK = 1000  # keys per kv.get operation (10 of the Worker's KV operations)
# the store has a method called ``list``
Operations = list[dict[str, Any]]
Answers = list[Any]


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
        self.client = client_for(client, url, secret, plan, max_body_bytes)
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
        raise_first(results)
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
            found.update(entries(value))
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
            operation["cursor"] = decode_store_cursor(cursor, prefix)
        (value,) = self._run([operation], "KV list", idempotent=True)
        next_cursor = value.get("cursor")
        return KeyPage(
            list(value["keys"]),
            encode_store_cursor(prefix, next_cursor),
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
        rows, read = self.client.run(
            [select, read],
            what="select with KV reads",
            idempotent=True,
            counter=database.round_trips,
        )
        raise_first([rows, read])
        return query_results(rows), entries(read)

    def edit_list(
        self,
        namespace: str,
        key: str,
        change: Literal["add", "remove", "clear"],
        item: str | None = None,
        *,
        owner: str | None = None,
    ) -> bool | None:
        """One request: the gateway reads and writes the list in one invocation (no
        compare-and-set: the last writer wins, as over the REST API)."""
        validate_keys(namespace, [key], self.limits, 1)
        operation: dict[str, Any] = {
            "op": "kv.list_edit",
            "ns": self._binding(namespace),
            "key": key,
            "change": change,
            "owner": owner,
        }
        if item is not None:
            operation["item"] = str(item)
        (value,) = self._run([operation], "KV list edit", idempotent=False)
        changed = value["changed"]
        return None if changed is None else bool(changed)

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
        request = Request(self.client, self.round_trips, "KV write")
        indices = [request.add(op) for op in self._operations(namespace, items)]
        return PendingWrite(request, indices, [0] * len(items))

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
