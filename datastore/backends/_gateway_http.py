"""HTTP for the Nimbus gateway Worker (``worker/gateway.js``): signing, limits, error mapping and
bounded retries of protocol v1.

A request is ``POST /v1/run`` with ``{"nonce", "operations": [...]}``, signed with HMAC-SHA256
over ``METHOD\\nPATH\\nTIMESTAMP\\nSHA256_HEX(BODY)``. The nonce makes every request's signature
new (the gateway refuses a signature it has seen). A retry is a new request (new timestamp,
nonce and signature) and is sent only when the first certainly did not run (no connection, or
a refusal before any operation ran: 401/413/429 answers) or when every operation in it may run
twice (reads, puts, deletes, and D1 batches declared idempotent), as ``_cloudflare_http``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from ..contract import Entry, QueryResult, RoundTripCounter
from ..errors import (
    AccessDenied,
    DatastoreError,
    IntegrityError,
    InvalidValue,
    NotFound,
    QueryError,
    RateLimited,
    TooLarge,
    Unavailable,
)

__all__ = [
    "GATEWAY_PLANS",
    "GatewayClient",
    "GatewayLimits",
    "entries",
    "gateway_client",
    "query_results",
]

PROTOCOL = "v1"


@dataclass(frozen=True)
class GatewayLimits:
    """What one gateway request may carry: the Worker enforces these, the client splits to fit.

    ``kv_operations`` and ``d1_statements`` are Workers' per-invocation limits (KV: 1,000 on
    both plans, a bulk read of up to 100 keys counting one; D1: 50 queries on Free, 1,000 on
    Paid); the gateway's replay check takes one D1 statement of each request.
    """

    plan: str = "paid"
    max_body_bytes: int = 32 * 1024 * 1024
    max_operations: int = 100
    kv_operations: int = 1000
    d1_statements: int = 1000
    max_bulk_get: int = 100


GATEWAY_PLANS = {
    "free": GatewayLimits(plan="free", d1_statements=50),
    "paid": GatewayLimits(plan="paid"),
}


_ERRORS: dict[str, type[DatastoreError]] = {
    "invalid": InvalidValue,
    "query": QueryError,
    "integrity": IntegrityError,
    "limit": TooLarge,
    "too_large": TooLarge,
    "over_limit": TooLarge,
    "too_many_operations": TooLarge,
    "unsigned": AccessDenied,
    "bad_signature": AccessDenied,
    "stale": AccessDenied,
    "replayed": AccessDenied,
    "not_found": NotFound,
    "unknown_operation": InvalidValue,
    "misconfigured": Unavailable,
    "unavailable": Unavailable,
    "skipped": Unavailable,
}


def map_error(error: Mapping[str, Any], what: str) -> DatastoreError:
    kind = str(error.get("type") or "unavailable")
    message = f"gateway {what} failed ({kind}): {error.get('message')}"
    return _ERRORS.get(kind, Unavailable)(message)


def encode_value(value: bytes) -> dict[str, str]:
    """A value on the wire: UTF-8 text as it is, other bytes base64."""
    try:
        return {"text": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def decode_value(value: Mapping[str, str]) -> bytes:
    if "base64" in value:
        return base64.b64decode(value["base64"])
    return value["text"].encode("utf-8")


def query_results(value: Any) -> list[QueryResult]:
    """The results of a ``d1.batch`` operation (raising its error, if it failed)."""
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


def entries(value: Mapping[str, Any]) -> dict[str, Entry]:
    """The entries a ``kv.get`` operation read."""
    return {
        key: Entry(
            decode_value(item["value"]),
            0,
            item.get("metadata"),
            float(item["expiration"]) if item.get("expiration") else None,
        )
        for key, item in value["entries"].items()
    }


def sign(secret: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path}\n{timestamp}\n{digest}".encode()
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class GatewayClient:
    """Signed requests to one gateway, counted, limited and retried.

    ``run(operations)`` sends one request and returns one entry per operation: its value, or
    the mapped ``DatastoreError`` (returned, not raised: the caller raises what it needs).
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        limits: GatewayLimits | None = None,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidValue(f"the gateway URL must be http(s)://..., not {url!r}")
        if not secret:
            raise InvalidValue("the gateway needs its shared secret (NIMBUS_GATEWAY_SECRET)")
        self.url = url.rstrip("/")
        self.secret = secret
        self.limits = limits or GATEWAY_PLANS["paid"]
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self.requests = RoundTripCounter()  # every request sent, whoever sent it
        self._transport = transport
        self._pid = -1
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        """The connection pool of this process: a forked child (a server's worker) opens its
        own, never reusing its parent's connections."""
        http = self._http
        if http is None or self._pid != os.getpid():
            with self._http_lock:
                if self._http is None or self._pid != os.getpid():
                    self._http = httpx.Client(
                        transport=self._transport,
                        timeout=httpx.Timeout(self.timeout, connect=5.0),
                        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                    )
                    self._pid = os.getpid()
                http = self._http
        return http

    def _signed(self, method: str, path: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(self.clock()))
        return {
            "content-type": "application/json",
            "x-nimbus-timestamp": timestamp,
            "x-nimbus-signature": sign(self.secret, method, path, timestamp, body),
        }

    def check(self, operations: Sequence[Mapping[str, Any]]) -> None:
        """Refuse, before sending, a request the gateway would refuse for its size."""
        limits = self.limits
        if len(operations) > limits.max_operations:
            raise TooLarge(
                f"{len(operations)} operations; the gateway takes {limits.max_operations}"
            )
        statements = sum(len(op.get("statements") or ()) for op in operations)
        if statements + 1 > limits.d1_statements:
            raise TooLarge(
                f"{statements} D1 statements in one request; the gateway's plan "
                f"({limits.plan}) allows {limits.d1_statements - 1} besides its replay check"
            )

    def run(
        self,
        operations: Sequence[Mapping[str, Any]],
        *,
        what: str,
        idempotent: bool,
        counter: RoundTripCounter | None = None,
    ) -> list[Any]:
        """Send the operations in one request; one entry per operation: the value, or a
        ``DatastoreError`` (a failed or skipped operation). Request-level failures raise."""
        self.check(operations)
        path = f"/{PROTOCOL}/run"
        last_error: DatastoreError | None = None
        for attempt in range(self.max_attempts):
            body = json.dumps(
                {"nonce": secrets.token_hex(12), "operations": list(operations)},
                separators=(",", ":"),
            ).encode()
            if len(body) > self.limits.max_body_bytes:
                raise TooLarge(
                    f"a gateway request of {len(body)} bytes; the gateway takes at most "
                    f"{self.limits.max_body_bytes}"
                )
            self.requests.add()
            if counter is not None:
                counter.add()
            retry_after: float | None = None
            try:
                response = self._client.post(
                    self.url + path, content=body, headers=self._signed("POST", path, body)
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last_error, safe = Unavailable(f"gateway {what}: cannot connect: {exc!r}"), True
            except httpx.TransportError as exc:
                last_error = Unavailable(
                    f"gateway {what}: no response ({exc!r}); the request may have run"
                    + ("" if idempotent else " and is not idempotent, so not retried")
                )
                safe = idempotent
            else:
                if response.status_code == 200:
                    return self._results(response, what)
                last_error = self._refusal(response, what)
                if response.status_code == 429:
                    retry_after = _float(response.headers.get("retry-after"))
                    safe = True
                elif response.status_code >= 500:
                    safe = idempotent
                else:
                    raise last_error
            if not safe:
                raise last_error
            if attempt + 1 < self.max_attempts:
                delay = retry_after if retry_after is not None else self.backoff * 2**attempt
                self.sleep(min(30.0, random.uniform(0, delay) if retry_after is None else delay))
        assert last_error is not None
        last_error.args = (f"{last_error} (gave up after {self.max_attempts} attempts)",)
        raise last_error

    def _results(self, response: httpx.Response, what: str) -> list[Any]:
        try:
            results = response.json()["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(
                f"gateway {what}: an unexpected answer {response.text[:200]!r}"
            ) from exc
        return [
            item["value"] if item.get("ok") else map_error(item["error"], what) for item in results
        ]

    def _refusal(self, response: httpx.Response, what: str) -> DatastoreError:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return Unavailable(
                f"gateway {what} failed (HTTP {response.status_code}, not a gateway answer: "
                f"check the gateway URL; reached {response.request.url}): {response.text[:200]}"
            )
        mapped = map_error(error, what)
        if response.status_code == 429:
            return RateLimited(str(mapped), retry_after=_float(response.headers.get("retry-after")))
        return mapped

    def status(self) -> dict[str, Any]:
        """The gateway's own description: protocol version, plan, limits, bound namespaces."""
        path = f"/{PROTOCOL}/status"
        self.requests.add()
        try:
            response = self._client.get(self.url + path, headers=self._signed("GET", path, b""))
        except httpx.TransportError as exc:
            raise Unavailable(f"gateway status: cannot reach {self.url}: {exc!r}") from exc
        if response.status_code != 200:
            raise self._refusal(response, "status")
        return dict(response.json())

    def close(self) -> None:
        if self._http is not None and self._pid == os.getpid():
            self._http.close()
        self._http = None


def _float(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


_clients: dict[tuple[str, str, str, int], GatewayClient] = {}
_clients_lock = threading.Lock()


def gateway_client(
    url: str,
    secret: str,
    plan: str = "paid",
    max_body_bytes: int | None = None,
    **options: Any,
) -> GatewayClient:
    """The client for a gateway, one per (URL, secret, plan, body limit) in a process unless
    ``options`` are given: a KV store and a D1 database on one gateway share it, so they can
    combine their operations into one request. ``max_body_bytes`` mirrors the Worker's
    ``NIMBUS_GATEWAY_MAX_BODY_BYTES`` where a deployment lowers it."""
    if plan not in GATEWAY_PLANS:
        raise InvalidValue(f"gateway plan must be one of {sorted(GATEWAY_PLANS)}, not {plan!r}")
    limits = GATEWAY_PLANS[plan]
    if max_body_bytes is not None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise InvalidValue(f"max_body_bytes must be an int, not {max_body_bytes!r}")
        limits = replace(limits, max_body_bytes=max_body_bytes)
    if options:
        return GatewayClient(url, secret, limits=limits, **options)
    key = (url.rstrip("/"), secret, plan, limits.max_body_bytes)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = GatewayClient(url, secret, limits=limits)
        return client
