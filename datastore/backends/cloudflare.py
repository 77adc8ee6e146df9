"""Cloudflare Workers KV and D1 over the Cloudflare REST API (httpx).

``CloudflareKVStore`` maps each namespace name (``NIMBUS_PAGES``, ...) to a KV namespace id.
What differs from the other KV backends, by Cloudflare's design:

* no compare-and-set and no versions (``supports_cas = False``; versions are reported as 0):
  concurrent writers to one key are last-writer-wins;
* eventual consistency: a write is usually visible at once where it was made, elsewhere within
  about 60 s; a key written at most once per second (faster writes get HTTP 429, retried);
* TTLs are whole seconds, at least 60; ``list`` pages hold 10 to 1000 keys and may be empty
  while a cursor is returned;
* ``get_many``/``get_entries`` use the bulk API, which returns values as UTF-8 text: use ``get``
  for binary values. ``put_many`` sends values base64-encoded, so any bytes are safe there.
  A bulk read holds at most 100 keys and 25 MB of values: past the size cap it is split in
  halves, down to single keys read one by one;
* ``delete``/``delete_many`` check what exists without reading values, to report it: one
  metadata read for one key, a listing of the keys' common prefix for several (one extra
  request, more only when the prefix holds many other keys);
* ``put_many`` with ``DeleteItem``s is a bulk write then a bulk delete: two requests, not atomic.

``CloudflareD1Database`` runs statements through ``/raw`` in one batch per call. At most 100
bound parameters and 100,000 bytes per statement are accepted; BLOB parameters cannot travel
over the JSON API. Parameters travel as strings (Cloudflare's schema) with their placeholders
wrapped to keep their SQLite types (``bind_as_strings``). Cloudflare's published API does not
promise that a REST batch is one transaction (a Worker's ``db.batch()`` is; the REST form runs
statements "as a batch"), so it says ``atomic_batches = False`` and callers must not rely on a
batch's atomicity over REST: the version-guarded upserts of the metadata sync, backfills and
repairs are safe without it (a partial batch is completed by the next run), schema changes go
after their log entries, and the ``sql`` adapter, which needs one transaction, refuses this
database (see the README).

Every request takes a unit of the API token's request budget first (``_cloudflare_budget``:
``budget_limit`` per ``budget_period`` seconds, ``budget_max_wait``, ``budget_store`` to share
it between processes). Requests are retried as ``_cloudflare_http`` describes; a D1 call counts as
idempotent (safe to repeat after a lost response) when every statement is read-only (``SELECT``,
``EXPLAIN``, introspection ``PRAGMA``s) or a guarded DDL (``CREATE ... IF NOT EXISTS``,
``DROP ... IF EXISTS``), since running those twice leaves the same state. Callers may declare
other calls idempotent (``idempotent=True``), e.g. version-guarded upserts that never regress.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ..contract import (
    Entry,
    KeyPage,
    KVLimits,
    Names,
    QueryResult,
    RoundTripCounter,
    SQLColumn,
    Statement,
    Status,
    Versions,
)
from ..errors import DatastoreError, InvalidKey, InvalidValue, TooLarge, Unavailable
from ..keys import validate_kv_key, validate_namespace
from ._base import BaseKVStore, check_amount, parse_counter
from ._cloudflare_budget import (
    DEFAULT_LIMIT,
    DEFAULT_MAX_WAIT,
    DEFAULT_PERIOD,
    BudgetStatus,
    RequestBudget,
    budget_for,
)
from ._cloudflare_http import DEFAULT_BASE_URL, CloudflareHTTP
from ._cursor import decode_store_cursor, encode_store_cursor
from ._d1_sql import (
    MAX_BOUND_PARAMETERS,
    MAX_STATEMENT_BYTES,
    bind_as_strings,
    check_statement,
)
from ._introspection import table_info
from ._validation import (
    PreparedDelete,
    PreparedItem,
    PreparedPut,
    check_list_args,
    validate_keys,
)

__all__ = [
    "CLOUDFLARE_KV_LIMITS",
    "MAX_STATEMENT_BYTES",
    "CloudflareD1Database",
    "CloudflareKVStore",
    "bind_as_strings",
    "is_idempotent",
]

CLOUDFLARE_KV_LIMITS = KVLimits(min_ttl_seconds=60, min_list_limit=10)
BULK_GET_CHUNK = 100
BULK_WRITE_BYTES = 90 * 1024 * 1024  # Cloudflare takes bulk writes under 100 MB

_READ_ONLY = re.compile(
    r"\s*(SELECT|EXPLAIN|PRAGMA\s+(table_info|table_xinfo|table_list|index_list|index_info)\b)",
    re.IGNORECASE,
)
_GUARDED_DDL = re.compile(
    r"\s*(CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|VIEW|TRIGGER)\s+IF\s+NOT\s+EXISTS"
    r"|DROP\s+(TABLE|INDEX|VIEW|TRIGGER)\s+IF\s+EXISTS)\b",
    re.IGNORECASE,
)


def is_idempotent(sql: str) -> bool:
    """Whether running ``sql`` twice leaves the same state as running it once (see module doc)."""
    return bool(_READ_ONLY.match(sql) or _GUARDED_DDL.match(sql))


_CLOUDFLARE_ID = re.compile(r"[A-Za-z0-9_-]+")


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _CLOUDFLARE_ID.fullmatch(value):
        raise InvalidValue(f"invalid {what} {value!r}")
    return value


class CloudflareKVStore(BaseKVStore):
    """``KVStore`` on Workers KV namespaces through the REST API."""

    backend_name = "cloudflare"
    supports_cas = False
    supports_namespace_management = False  # created in Cloudflare, mapped in configuration
    supports_ttl = True
    supports_transactions = False

    def __init__(
        self,
        account_id: str,
        api_token: str,
        namespaces: Mapping[str, str],
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_attempts: int = 4,
        limits: KVLimits = CLOUDFLARE_KV_LIMITS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: RequestBudget | None = None,
        budget_limit: int = DEFAULT_LIMIT,
        budget_period: float = DEFAULT_PERIOD,
        budget_max_wait: float = DEFAULT_MAX_WAIT,
        budget_store: str | None = None,
    ) -> None:
        if not isinstance(namespaces, Mapping) or not namespaces:
            raise InvalidValue("namespaces must map namespace names to Cloudflare namespace ids")
        self.namespace_ids: dict[str, str] = {}
        for name, namespace_id in namespaces.items():
            validate_namespace(name)
            self.namespace_ids[name] = _check_id(namespace_id, f"namespace id for {name}")
        self.limits = limits
        self.round_trips = RoundTripCounter()
        self._http = CloudflareHTTP(
            account_id=account_id,
            api_token=api_token,
            base_url=base_url,
            timeout=timeout,
            max_attempts=max_attempts,
            transport=transport,
            sleep=sleep,
            round_trips=self.round_trips,
            budget=budget
            or budget_for(
                api_token,
                limit=budget_limit,
                period=budget_period,
                max_wait=budget_max_wait,
                store=budget_store,
            ),
        )

    # -- helpers -------------------------------------------------------------------------

    def _base(self, namespace: str) -> str:
        validate_namespace(namespace)
        namespace_id = self.namespace_ids.get(namespace)
        if namespace_id is None and namespace.startswith("NIMBUS_"):
            namespace_id = self.namespace_ids.get(namespace.removeprefix("NIMBUS_"))
        if namespace_id is None:
            known = ", ".join(sorted(self.namespace_ids))
            raise InvalidKey(
                f"namespace {namespace!r} has no Cloudflare KV namespace id configured "
                f"(configured: {known})"
            )
        return f"/storage/kv/namespaces/{namespace_id}"

    def _key_path(self, namespace: str, resource: str, key: str) -> str:
        validate_kv_key(key, self.limits.max_key_bytes)
        return f"{self._base(namespace)}/{resource}/{quote(key, safe='')}"

    def _bulk_get(self, namespace: str, keys: Sequence[str], with_metadata: bool) -> dict[str, Any]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BULK_GET_CHUNK):
            found.update(
                self._bulk_get_within_cap(
                    namespace, unique[start : start + BULK_GET_CHUNK], with_metadata
                )
            )
        return found

    def _bulk_get_within_cap(
        self, namespace: str, keys: list[str], with_metadata: bool
    ) -> dict[str, Any]:
        """One bulk read; when its values pass Cloudflare's 25 MB cap for a bulk read, the
        halves are read instead, down to single keys, which are read one by one."""
        try:
            response = self._http.request(
                "POST",
                f"{self._base(namespace)}/bulk/get",
                what="KV bulk get",
                idempotent=True,
                json={"keys": keys, "type": "text", "withMetadata": with_metadata},
            )
        except TooLarge:
            if len(keys) == 1:
                return self._read_singly(namespace, keys[0], with_metadata)
            middle = len(keys) // 2
            return {
                **self._bulk_get_within_cap(namespace, keys[:middle], with_metadata),
                **self._bulk_get_within_cap(namespace, keys[middle:], with_metadata),
            }
        assert response is not None
        values = self._http.result(response)["values"]
        return {key: value for key, value in values.items() if value is not None}

    def _read_singly(self, namespace: str, key: str, with_metadata: bool) -> dict[str, Any]:
        """A value too large for any bulk read, in the shape a bulk read gives it."""
        entry = self.get_entry(namespace, key) if with_metadata else None
        if with_metadata:
            if entry is None:
                return {}
            item: dict[str, Any] = {
                "value": entry.value.decode("utf-8", "replace"),
                "metadata": entry.metadata,
            }
            if entry.expires_at is not None:
                item["expiration"] = entry.expires_at
            return {key: item}
        value = self._get_value(namespace, key)
        return {} if value is None else {key: value.decode("utf-8", "replace")}

    # -- reads ---------------------------------------------------------------------------

    def _get_value(self, namespace: str, key: str) -> bytes | None:
        response = self._http.request(
            "GET",
            self._key_path(namespace, "values", key),
            what="KV get",
            idempotent=True,
            missing_ok=True,
            envelope=False,
        )
        return response.content if response is not None else None

    def get_entry(self, namespace: str, key: str) -> Entry | None:
        response = self._http.request(
            "GET",
            self._key_path(namespace, "values", key),
            what="KV get",
            idempotent=True,
            missing_ok=True,
            envelope=False,
        )
        if response is None:
            return None
        expiration = response.headers.get("expiration")
        return Entry(
            response.content,
            0,
            self.get_metadata(namespace, key),
            float(expiration) if expiration else None,
        )

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        return {
            key: value.encode("utf-8")
            for key, value in self._bulk_get(namespace, keys, with_metadata=False).items()
        }

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        return {
            key: Entry(
                item["value"].encode("utf-8"),
                0,
                item.get("metadata"),
                float(item["expiration"]) if item.get("expiration") else None,
            )
            for key, item in self._bulk_get(namespace, keys, with_metadata=True).items()
        }

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """A read then a write (not atomic: see the contract), two requests: the counter's
        value and expiry come from one bulk read (a counter is text, which it returns exactly)
        instead of a value read and a metadata read."""
        check_amount(amount)
        entry = self.get_entries(namespace, [key]).get(key)
        value = parse_counter(entry.value if entry else None, key) + amount
        remaining = ttl if entry is None else self._remaining(entry)
        self.put(namespace, key, str(value), ttl=remaining)
        return value

    def get_metadata(self, namespace: str, key: str) -> dict[str, Any] | None:
        response = self._http.request(
            "GET",
            self._key_path(namespace, "metadata", key),
            what="KV metadata",
            idempotent=True,
            missing_ok=True,
        )
        return self._http.result(response) if response is not None else None

    def exists(self, namespace: str, key: str) -> bool:
        response = self._http.request(
            "GET",
            self._key_path(namespace, "metadata", key),
            what="KV metadata",
            idempotent=True,
            missing_ok=True,
        )
        return response is not None

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> KeyPage:
        check_list_args(namespace, prefix, limit, self.limits)
        names, next_cursor = self._list_names(
            namespace, prefix, decode_store_cursor(cursor, prefix) if cursor else None, limit
        )
        return KeyPage(names, encode_store_cursor(prefix, next_cursor))

    def _list_names(
        self, namespace: str, prefix: str, cursor: str | None, limit: int
    ) -> tuple[Names, str | None]:
        """One page of Cloudflare's listing: the names and Cloudflare's own next cursor."""
        params: dict[str, Any] = {"limit": limit}
        if prefix:
            params["prefix"] = prefix
        if cursor:
            params["cursor"] = cursor
        response = self._http.request(
            "GET", f"{self._base(namespace)}/keys", what="KV list", idempotent=True, params=params
        )
        assert response is not None
        body = response.json()
        next_cursor = (body.get("result_info") or {}).get("cursor") or None
        return [item["name"] for item in body["result"]], next_cursor

    def namespaces(self) -> Names:
        return sorted(self.namespace_ids)

    def status(self) -> Status:
        try:
            response = self._http.request(
                "GET",
                "/storage/kv/namespaces",
                what="KV namespaces",
                idempotent=True,
                params={"per_page": 100},
            )
        except DatastoreError as exc:
            detail = f"{exc}; request budget: {self.budget_status()}"
            return Status(False, self.backend_name, self.namespaces(), None, detail)
        assert response is not None
        available = {item["id"] for item in self._http.result(response)}
        missing = sorted(n for n, i in self.namespace_ids.items() if i not in available)
        detail = f"namespaces not found in the account: {', '.join(missing)}; " if missing else ""
        detail += f"request budget: {self.budget_status()}"
        return Status(not missing, self.backend_name, self.namespaces(), None, detail)

    # -- writes --------------------------------------------------------------------------

    def _apply(self, namespace: str, items: Sequence[PreparedItem]) -> Versions:
        """The puts (one request, or bulk writes of at most ~90 MB), then the deletes (one bulk
        delete): not atomic, and a failure in between leaves the puts written."""
        base = self._base(namespace)
        puts = [item for item in items if isinstance(item, PreparedPut)]
        deletes = [item.key for item in items if isinstance(item, PreparedDelete)]
        if len(puts) == 1:
            self._put_one(base, puts[0])
        else:
            for chunk in _size_chunks(puts):
                self._bulk_write(base, chunk)
        if deletes:
            self._bulk_delete(base, deletes)
        return [0] * len(items)

    def _put_one(self, base: str, put: PreparedPut) -> None:
        params = {"expiration_ttl": math.ceil(put.ttl)} if put.ttl is not None else None
        path = f"{base}/values/{quote(put.key, safe='')}"
        # Writing the same value, TTL and metadata again is harmless, so a put is idempotent.
        if put.metadata_json is None:
            body: dict[str, Any] = {
                "content": put.value,
                "headers": {"Content-Type": "application/octet-stream"},
            }
        else:
            body = {
                "files": {"value": ("value", put.value, "application/octet-stream")},
                "data": {"metadata": put.metadata_json},
            }
        self._http.request("PUT", path, what="KV put", idempotent=True, params=params, **body)

    def _bulk_write(self, base: str, puts: Sequence[PreparedPut]) -> None:
        body = []
        for put in puts:
            item: dict[str, Any] = {
                "key": put.key,
                "value": base64.b64encode(put.value).decode("ascii"),
                "base64": True,
            }
            if put.ttl is not None:
                item["expiration_ttl"] = math.ceil(put.ttl)
            if put.metadata is not None:
                item["metadata"] = put.metadata
            body.append(item)
        for _ in range(self._http.max_attempts):
            response = self._http.request(
                "PUT", f"{base}/bulk", what="KV bulk write", idempotent=True, json=body
            )
            assert response is not None
            failed = set(self._http.result(response).get("unsuccessful_keys") or [])
            if not failed:
                return
            body = [item for item in body if item["key"] in failed]
        raise Unavailable(f"Cloudflare KV bulk write kept failing for keys: {sorted(failed)}")

    def _bulk_delete(self, base: str, keys: Sequence[str]) -> None:
        # Deleting a key twice leaves the same state, so a bulk delete is idempotent.
        self._http.request(
            "POST", f"{base}/bulk/delete", what="KV bulk delete", idempotent=True, json=keys
        )

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_write)
        if not keys:
            return 0
        unique = list(dict.fromkeys(keys))
        existing = self._existing(namespace, unique)
        self._bulk_delete(self._base(namespace), unique)
        return len(existing)

    def _existing(self, namespace: str, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` exist, without reading a value: one metadata read for a single key;
        for several, a listing of their common prefix (Cloudflare lists keys in UTF-8 byte
        order, so it stops past the last of them), falling back to a metadata read per key
        still unknown once the listing has cost as many requests as those reads would."""
        if len(keys) == 1:
            return {keys[0]} if self.exists(namespace, keys[0]) else set()
        wanted = set(keys)
        prefix = _common_prefix(keys)
        last = max(key.encode() for key in keys)
        found: set[str] = set()
        listed_up_to = b""
        cursor: str | None = None
        requests = 0
        while True:
            names, cursor = self._list_names(namespace, prefix, cursor, 1000)
            requests += 1
            found.update(name for name in names if name in wanted)
            if names:
                listed_up_to = names[-1].encode()
            if not cursor or listed_up_to >= last:
                return found
            unknown = [key for key in keys if key.encode() > listed_up_to]
            if requests >= len(unknown):
                return found | {key for key in unknown if self.exists(namespace, key)}

    @property
    def budget(self) -> RequestBudget:
        """The API token's request budget (shared with every backend using the token)."""
        assert self._http.budget is not None
        return self._http.budget

    def budget_status(self) -> BudgetStatus:
        return self.budget.status()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"CloudflareKVStore({self._http.account_url!r})"


def _common_prefix(keys: Sequence[str]) -> str:
    first, last = min(keys), max(keys)  # the prefix they all share is the one these two share
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[:length]


def _size_chunks(puts: Sequence[PreparedPut]) -> list[list[PreparedPut]]:
    """Split a batch so each request stays under Cloudflare's bulk size limit."""
    chunks: list[list[PreparedPut]] = [[]]
    size = 0
    for put in puts:
        item_size = len(put.value) * 4 // 3 + len(put.key) + 200
        if chunks[-1] and size + item_size > BULK_WRITE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(put)
        size += item_size
    return [chunk for chunk in chunks if chunk]


class CloudflareD1Database:
    """``SQLDatabase`` on a D1 database through the REST API."""

    backend_name = "d1"
    max_bound_parameters: int | None = MAX_BOUND_PARAMETERS
    atomic_batches = False  # Cloudflare does not promise that a REST batch is one transaction

    def __init__(
        self,
        account_id: str,
        api_token: str,
        database_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_attempts: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: RequestBudget | None = None,
        budget_limit: int = DEFAULT_LIMIT,
        budget_period: float = DEFAULT_PERIOD,
        budget_max_wait: float = DEFAULT_MAX_WAIT,
        budget_store: str | None = None,
    ) -> None:
        self.database_id = _check_id(database_id, "D1 database id")
        self.round_trips = RoundTripCounter()
        self._http = CloudflareHTTP(
            account_id=account_id,
            api_token=api_token,
            base_url=base_url,
            timeout=timeout,
            max_attempts=max_attempts,
            transport=transport,
            sleep=sleep,
            round_trips=self.round_trips,
            budget=budget
            or budget_for(
                api_token,
                limit=budget_limit,
                period=budget_period,
                max_wait=budget_max_wait,
                store=budget_store,
            ),
        )

    def _prepare(self, sql: str, params: Sequence[Any]) -> dict[str, Any]:
        sql, params = check_statement(sql, params)
        sql, texts = bind_as_strings(sql, params)
        size = len(sql.encode("utf-8"))
        if size > MAX_STATEMENT_BYTES:
            raise TooLarge(
                f"statement is {size} bytes with its parameters typed; D1 accepts at most "
                f"{MAX_STATEMENT_BYTES}"
            )
        return {"sql": sql, "params": texts}

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
        if before_commit is not None:
            before_commit()  # D1 has no interactive transaction to hold open meanwhile
        if not statements:
            return []
        body = [self._prepare(sql, params) for sql, params in statements]
        if idempotent is None:
            idempotent = all(is_idempotent(item["sql"]) for item in body)
        response = self._http.request(
            "POST",
            f"/d1/database/{self.database_id}/raw",
            what="D1 query",
            idempotent=idempotent,
            json={"batch": body},
        )
        assert response is not None
        return [_query_result(item) for item in self._http.result(response)]

    def table_info(self, table: str) -> list[SQLColumn]:
        return table_info(self, table)

    @property
    def budget(self) -> RequestBudget:
        """The API token's request budget (shared with every backend using the token)."""
        assert self._http.budget is not None
        return self._http.budget

    def budget_status(self) -> BudgetStatus:
        return self.budget.status()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"CloudflareD1Database({self.database_id!r})"


def _query_result(item: Mapping[str, Any]) -> QueryResult:
    results = item.get("results") or {}
    columns = results.get("columns") or []
    rows = [dict(zip(columns, row, strict=True)) for row in results.get("rows") or []]
    meta = item.get("meta") or {}
    return QueryResult(
        rows, changes=int(meta.get("changes") or 0), last_row_id=meta.get("last_row_id")
    )
