"""Gateway requests gathered before they are sent: a KV write that may carry the metadata
statements following it (``Pending.join``), and ``KVStore.combine()``'s reads and increments;
see ``datastore.backends.gateway``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..contract import Entry, RoundTripCounter, Versions
from ..errors import DatastoreError, InvalidValue
from ..pending import Pending
from ._base import check_amount
from ._gateway_d1 import GatewayD1Database
from ._gateway_http import GatewayClient, entries, query_results
from ._validation import validate_keys

__all__ = ["GatewayCombined", "PendingWrite", "Request", "raise_first"]


def raise_first(values: Sequence[Any]) -> None:
    """Raise the first error among an operation's answers."""
    for value in values:
        if isinstance(value, DatastoreError):
            raise value


class Request:
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


class PendingWrite(Pending[Versions]):
    """A KV write gathered, not sent: ``join`` may add the statements that follow it."""

    __slots__ = ("_indices", "_request", "_versions")

    def __init__(self, request: Request, indices: list[int], versions: Versions) -> None:
        super().__init__(self._answer)
        self._request = request
        self._indices = indices
        self._versions = versions

    def _answer(self) -> Versions:
        results = self._request.send()
        raise_first([results[i] for i in self._indices])
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
        return Pending(lambda: query_results(request.send()[index]))


class GatewayCombined:
    """``KVStore.combine()`` on the gateway: every gathered call is an operation of one
    request, sent by ``send()`` or the first ``result()``. Reads and increments do not depend
    on one another (a failed read does not stop an increment), except a read whose keys come
    from an earlier one."""

    def __init__(self, store: Any) -> None:
        self.store = store  # a GatewayKVStore
        self._request = Request(store.client, store.round_trips, "combined request")
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
        return self._gather({**operation, "requires": []}).then(entries)

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
        return self._gather(operation).then(entries)

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
