"""``GatewayD1Database``: the D1 database bound to the gateway Worker (``DB``); see
``datastore.backends.gateway``."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from ..contract import QueryResult, RoundTripCounter, SQLColumn, Statement
from ..errors import InvalidValue
from ._d1_sql import MAX_BOUND_PARAMETERS, check_statement
from ._gateway_http import GatewayClient, gateway_client, query_results
from ._introspection import table_info
from .cloudflare import is_idempotent

__all__ = ["GatewayD1Database", "client_for"]

MAX_SAFE_INTEGER = 2**53 - 1


def client_for(
    client: GatewayClient | None,
    url: str | None,
    secret: str | None,
    plan: str,
    max_body_bytes: int | None,
) -> GatewayClient:
    """The client given, or the process's client for this gateway (shared, so that a KV store
    and a database built with the same options combine their requests)."""
    if client is not None:
        return client
    if not url or not secret:
        raise InvalidValue("the gateway backends need url= and secret= (or client=)")
    return gateway_client(url, secret, plan, max_body_bytes)


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
    max_bound_parameters: int | None = MAX_BOUND_PARAMETERS
    atomic_batches = True  # env.DB.batch

    def __init__(
        self,
        url: str | None = None,
        secret: str | None = None,
        *,
        plan: str = "paid",
        max_body_bytes: int | None = None,
        client: GatewayClient | None = None,
    ) -> None:
        self.client = client_for(client, url, secret, plan, max_body_bytes)
        self.round_trips = RoundTripCounter()

    def operation(self, statements: Sequence[Statement]) -> dict[str, Any]:
        """The ``d1.batch`` operation of ``statements``, checked before anything is sent."""
        body = []
        for statement, arguments in statements:
            sql, params = check_statement(statement, arguments)
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
        (value,) = self.client.run(
            [operation], what="D1 query", idempotent=idempotent, counter=self.round_trips
        )
        return query_results(value)

    def table_info(self, table: str) -> list[SQLColumn]:
        return table_info(self, table)

    def close(self) -> None:
        """The client is shared by the stores of one gateway: it stays open."""

    def __repr__(self) -> str:
        return f"GatewayD1Database({self.client.url!r})"
