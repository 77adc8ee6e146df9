"""The embedded default: a KV store in a SQLite file, and a SQLDatabase on ``sqlite3``.

Both are safe to share between threads and between processes using the same file (WAL mode,
busy timeout, ``BEGIN IMMEDIATE`` around read-check-write sequences).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..contract import (
    DEFAULT_KV_LIMITS,
    Entry,
    Hits,
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
from ..errors import Conflict, DatastoreError, QueryError
from ..keys import validate_kv_key, validate_namespace
from ._base import BaseKVStore, check_amount, check_page, parse_counter
from ._cursor import decode_after_key, encode_after_key
from ._introspection import table_info
from ._query import (
    DOCUMENT,
    QueryHit,
    Rules,
    parse_filters,
    parse_sort,
    sqlite_filter,
    sqlite_order,
)
from ._sqlite_connections import SQLiteConnections, translate_error
from ._validation import (
    PreparedDelete,
    PreparedItem,
    PreparedPut,
    check_list_args,
    validate_keys,
)

__all__ = ["SQLiteDatabase", "SQLiteKVStore"]


class SQLiteDatabase:
    """``SQLDatabase`` on a SQLite file (or ``:memory:``)."""

    backend_name = "sqlite"
    max_bound_parameters: int | None = None
    atomic_batches = True

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.round_trips = RoundTripCounter()
        self._connections = SQLiteConnections(path, timeout=timeout)

    @staticmethod
    def _run(connection: sqlite3.Connection, sql: str, params: Sequence[Any]) -> QueryResult:
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
            raise QueryError(f"params must be a sequence (list or tuple), not {type(params)}")
        try:
            cursor = connection.execute(sql, tuple(params))
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc, sql) from exc
        changes = cursor.rowcount if cursor.rowcount > 0 else 0
        return QueryResult(rows, changes=changes, last_row_id=cursor.lastrowid)

    def execute(
        self, sql: str, params: Sequence[Any] = (), *, idempotent: bool | None = None
    ) -> QueryResult:
        self.round_trips.add()
        with self._connections.connection() as connection:
            return self._run(connection, sql, params)

    def batch(
        self,
        statements: Sequence[Statement],
        *,
        idempotent: bool | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> list[QueryResult]:
        # ``idempotent`` only matters for remote backends that may retry; SQLite never does.
        if not statements:
            if before_commit is not None:
                before_commit()
            return []
        self.round_trips.add()
        if len(statements) == 1 and before_commit is None:
            # one statement is atomic by itself: no BEGIN/COMMIT
            with self._connections.connection() as connection:
                return [self._run(connection, *statements[0])]
        with self._connections.transaction() as connection:
            results = [self._run(connection, sql, params) for sql, params in statements]
            if before_commit is not None:
                before_commit()
            return results

    def table_info(self, table: str) -> list[SQLColumn]:
        return table_info(self, table)

    def close(self) -> None:
        self._connections.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


_KV_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nimbus_kv (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        metadata TEXT,
        expires_at REAL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS nimbus_kv_expiry ON nimbus_kv (expires_at)
        WHERE expires_at IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS nimbus_kv_namespaces (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    ) WITHOUT ROWID""",
)

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
Params = list[Any]
_WRITE_ROW = (
    "INSERT OR REPLACE INTO nimbus_kv (namespace, key, value, version, metadata, expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
# A single put: insert, or update a row whose version is the expected one (an expired row
# counts as absent, version 0). No row back means the expected version did not match.
_PUT_ONE = """
INSERT INTO nimbus_kv (namespace, key, value, version, metadata, expires_at)
SELECT :namespace, :key, :value, 1, :metadata, :expires_at
WHERE :if_version IS NULL OR :if_version = 0
    OR EXISTS (SELECT 1 FROM nimbus_kv WHERE namespace = :namespace AND key = :key)
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value,
    version = CASE WHEN nimbus_kv.expires_at <= :now THEN 1 ELSE nimbus_kv.version + 1 END,
    metadata = excluded.metadata,
    expires_at = excluded.expires_at
WHERE :if_version IS NULL
    OR :if_version = CASE WHEN nimbus_kv.expires_at <= :now THEN 0 ELSE nimbus_kv.version END
RETURNING version
"""
_PURGE_EVERY = 1000


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``."""
    if not prefix or ord(prefix[-1]) >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class SQLiteKVStore(BaseKVStore):
    """``KVStore`` in a SQLite file: one table keyed by (namespace, key)."""

    backend_name = "sqlite"
    supports_cas = True
    supports_ttl = True
    supports_transactions = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: KVLimits = DEFAULT_KV_LIMITS,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.limits = limits
        self.clock = clock
        self.round_trips = RoundTripCounter()
        self._connections = SQLiteConnections(path, timeout=timeout)
        self._known_namespaces: set[str] = set()
        self._writes = 0
        self._writes_lock = threading.Lock()
        with self._connections.transaction() as connection:
            for statement in _KV_SCHEMA:
                connection.execute(statement)

    # -- reads ---------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        self.round_trips.add()
        with self._connections.connection() as connection:
            try:
                return connection.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc

    @staticmethod
    def _entry(row: dict[str, Any]) -> Entry:
        metadata = json.loads(row["metadata"]) if row["metadata"] is not None else None
        return Entry(bytes(row["value"]), row["version"], metadata, row["expires_at"])

    def _get_value(self, namespace: str, key: str) -> bytes | None:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        rows = self._query(
            f"SELECT value FROM nimbus_kv WHERE namespace = ? AND key = ? AND {_LIVE}",
            (namespace, key, self.clock()),
        )
        return bytes(rows[0]["value"]) if rows else None

    def get_entry(self, namespace: str, key: str) -> Entry | None:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        rows = self._query(
            "SELECT value, version, metadata, expires_at FROM nimbus_kv "
            f"WHERE namespace = ? AND key = ? AND {_LIVE}",
            (namespace, key, self.clock()),
        )
        return self._entry(rows[0]) if rows else None

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, bytes]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        if not keys:
            return {}
        rows = self._query(
            "SELECT key, value FROM nimbus_kv WHERE namespace = ? "
            f"AND key IN (SELECT value FROM json_each(?)) AND {_LIVE}",
            (namespace, json.dumps(list(keys)), self.clock()),
        )
        return {row["key"]: bytes(row["value"]) for row in rows}

    def get_entries(self, namespace: str, keys: Sequence[str]) -> dict[str, Entry]:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_get)
        if not keys:
            return {}
        if len(keys) == 1:  # the common read of one object: a plain primary-key lookup
            condition, key_parameter = "key = ?", keys[0]
        else:
            condition = "key IN (SELECT value FROM json_each(?))"
            key_parameter = json.dumps(list(keys))
        rows = self._query(
            "SELECT key, value, version, metadata, expires_at FROM nimbus_kv WHERE namespace = ? "
            f"AND {condition} AND {_LIVE}",
            (namespace, key_parameter, self.clock()),
        )
        return {row["key"]: self._entry(row) for row in rows}

    def exists(self, namespace: str, key: str) -> bool:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        rows = self._query(
            f"SELECT 1 AS found FROM nimbus_kv WHERE namespace = ? AND key = ? AND {_LIVE}",
            (namespace, key, self.clock()),
        )
        return bool(rows)

    def list(
        self, namespace: str, prefix: str = "", cursor: str | None = None, limit: int = 1000
    ) -> KeyPage:
        check_list_args(namespace, prefix, limit, self.limits)
        after = decode_after_key(cursor)
        conditions = ["namespace = ?", "key >= ?", _LIVE]
        params: list[Any] = [namespace, prefix, self.clock()]
        upper = _prefix_upper_bound(prefix)
        if upper is not None:
            conditions.append("key < ?")
            params.append(upper)
        elif prefix:
            conditions.append("substr(key, 1, ?) = ?")
            params.extend([len(prefix), prefix])
        if after is not None:
            conditions.append("key > ?")
            params.append(after)
        params.append(limit + 1)
        rows = self._query(
            f"SELECT key FROM nimbus_kv WHERE {' AND '.join(conditions)} ORDER BY key LIMIT ?",
            params,
        )
        keys = [row["key"] for row in rows[:limit]]
        return KeyPage(keys, encode_after_key(keys[-1]) if len(rows) > limit else None)

    def query(
        self,
        namespace: str,
        filter: Any = None,
        *,
        sort: Any = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Hits:
        """Pushed down to SQL with ``json_extract`` (same rules as the scan; see _query)."""
        validate_namespace(namespace)
        filters, order = parse_filters(filter), parse_sort(sort)
        check_page(limit, offset)
        where, params = self._json_where(namespace, filters)
        order_sql, order_params = sqlite_order(order) if order else ("key ASC", [])
        rows = self._query(
            f"SELECT key, value, metadata FROM nimbus_kv WHERE {where} "
            f"ORDER BY {order_sql} LIMIT ? OFFSET ?",
            (*params, *order_params, limit, offset),
        )
        return [
            QueryHit(
                row["key"],
                json.loads(bytes(row["value"])),
                json.loads(row["metadata"]) if row["metadata"] is not None else None,
            )
            for row in rows
        ]

    def count(self, namespace: str, filter: Any = None) -> int:
        validate_namespace(namespace)
        where, params = self._json_where(namespace, parse_filters(filter))
        return int(
            self._query(f"SELECT count(*) AS n FROM nimbus_kv WHERE {where}", params)[0]["n"]
        )

    def _json_where(self, namespace: str, filters: Rules) -> tuple[str, Params]:
        clauses = [
            "namespace = ?",
            _LIVE,
            f"json_valid({DOCUMENT})",
            f"json_type({DOCUMENT}) = 'object'",
        ]
        params: Params = [namespace, self.clock()]
        for rule in filters:
            clause, rule_params = sqlite_filter(rule)
            clauses.append(clause)
            params.extend(rule_params)
        return " AND ".join(clauses), params

    def namespaces(self) -> Names:
        rows = self._query("SELECT name FROM nimbus_kv_namespaces ORDER BY name", ())
        return [row["name"] for row in rows]

    def _register(self, name: str) -> None:
        with self._connections.transaction() as connection:
            self._known_namespaces.discard(name)
            self._register_namespace(connection, name, self.clock())
        self.round_trips.add()

    def _unregister(self, name: str) -> None:
        self._query("DELETE FROM nimbus_kv_namespaces WHERE name = ? RETURNING name", (name,))
        self._known_namespaces.discard(name)

    def status(self) -> Status:
        try:
            rows = self._query(
                "SELECT (SELECT count(*) FROM nimbus_kv WHERE "
                f"{_LIVE}) AS size, (SELECT json_group_array(name) FROM "
                "(SELECT name FROM nimbus_kv_namespaces ORDER BY name)) AS names",
                (self.clock(),),
            )
        except DatastoreError as exc:
            return Status(False, self.backend_name, detail=str(exc))
        return Status(
            True, self.backend_name, json.loads(rows[0]["names"]), rows[0]["size"], self.path
        )

    # -- writes --------------------------------------------------------------------------

    def _apply(self, namespace: str, items: Sequence[PreparedItem]) -> Versions:
        """Check versions, then write and delete a batch, in one IMMEDIATE transaction."""
        now = self.clock()
        if (
            len(items) == 1
            and isinstance(items[0], PreparedPut)
            and namespace in self._known_namespaces
        ):
            return [self._apply_one(namespace, items[0], now)]
        puts = [item for item in items if isinstance(item, PreparedPut)]
        deletes = [item.key for item in items if isinstance(item, PreparedDelete)]
        self.round_trips.add()
        with self._connections.transaction() as connection:
            try:
                if len(items) == 1:
                    rows = connection.execute(
                        f"SELECT key, version FROM nimbus_kv WHERE namespace = ? AND key = ? "
                        f"AND {_LIVE}",
                        (namespace, items[0].key, now),
                    ).fetchall()
                else:
                    rows = connection.execute(
                        "SELECT key, version FROM nimbus_kv WHERE namespace = ? AND key IN "
                        f"(SELECT value FROM json_each(?)) AND {_LIVE}",
                        (namespace, json.dumps([item.key for item in items]), now),
                    ).fetchall()
                current = {row["key"]: row["version"] for row in rows}
                failed = [
                    item.key
                    for item in items
                    if item.if_version is not None and current.get(item.key, 0) != item.if_version
                ]
                if failed:
                    raise Conflict(
                        f"version mismatch for {', '.join(repr(k) for k in failed)}", keys=failed
                    )
                versions = [
                    current.get(item.key, 0) + 1 if isinstance(item, PreparedPut) else 0
                    for item in items
                ]
                if puts:
                    connection.executemany(
                        _WRITE_ROW,
                        [
                            (
                                namespace,
                                put.key,
                                put.value,
                                current.get(put.key, 0) + 1,
                                put.metadata_json,
                                now + put.ttl if put.ttl is not None else None,
                            )
                            for put in puts
                        ],
                    )
                    self._register_namespace(connection, namespace, now)
                if deletes:
                    connection.execute(
                        "DELETE FROM nimbus_kv WHERE namespace = ? AND key IN "
                        "(SELECT value FROM json_each(?))",
                        (namespace, json.dumps(deletes)),
                    )
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        self._count_writes(len(puts))
        return versions

    def _apply_one(self, namespace: str, put: PreparedPut, now: float) -> int:
        """One put as one statement: the version check and the write are a single upsert."""
        self.round_trips.add()
        parameters = {
            "namespace": namespace,
            "key": put.key,
            "value": put.value,
            "metadata": put.metadata_json,
            "expires_at": now + put.ttl if put.ttl is not None else None,
            "if_version": put.if_version,
            "now": now,
        }
        with self._connections.connection() as connection:
            try:
                row = connection.execute(_PUT_ONE, parameters).fetchone()
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        if row is None:
            raise Conflict(f"version mismatch for {put.key!r}", keys=[put.key])
        self._count_writes(1)
        return int(row["version"])

    def incr(self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        validate_namespace(namespace)
        validate_kv_key(key, self.limits.max_key_bytes)
        check_amount(amount)
        now = self.clock()
        self.round_trips.add()
        with self._connections.transaction() as connection:
            try:
                row = connection.execute(
                    "SELECT value, version, metadata, expires_at FROM nimbus_kv "
                    f"WHERE namespace = ? AND key = ? AND {_LIVE}",
                    (namespace, key, now),
                ).fetchone()
                value = parse_counter(bytes(row["value"]) if row else None, key) + amount
                connection.execute(
                    _WRITE_ROW,
                    (
                        namespace,
                        key,
                        str(value).encode(),
                        row["version"] + 1 if row else 1,
                        row["metadata"] if row else None,
                        row["expires_at"] if row else (now + ttl if ttl is not None else None),
                    ),
                )
                self._register_namespace(connection, namespace, now)
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        return value

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction on this thread's connection for the block: its
        writes commit together or roll back together; reads inside see them; other writers
        wait (busy timeout)."""
        with self._connections.transaction():
            yield

    def _register_namespace(
        self, connection: sqlite3.Connection, namespace: str, now: float
    ) -> None:
        """Record a namespace on its first write (inside that write's transaction)."""
        if namespace not in self._known_namespaces:
            connection.execute(
                "INSERT OR IGNORE INTO nimbus_kv_namespaces (name, created_at) VALUES (?, ?)",
                (namespace, now),
            )
            # Remember it only when this write commits by itself: an enclosing transaction
            # may still roll the row back.
            if not self._connections.in_outer_transaction():
                self._known_namespaces.add(namespace)

    def _count_writes(self, count: int) -> None:
        with self._writes_lock:
            self._writes += count
            due = self._writes >= _PURGE_EVERY
            if due:
                self._writes = 0
        if due:
            self.purge_expired()

    def purge_expired(self) -> int:
        """Delete expired rows (reads already ignore them); returns how many were removed."""
        self.round_trips.add()
        with self._connections.connection() as connection:
            try:
                cursor = connection.execute(
                    "DELETE FROM nimbus_kv WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    (self.clock(),),
                )
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
            return cursor.rowcount

    def delete_many(self, namespace: str, keys: Sequence[str]) -> int:
        validate_keys(namespace, keys, self.limits, self.limits.max_batch_write)
        if not keys:
            return 0
        self.round_trips.add()
        now = self.clock()
        with self._connections.transaction() as connection:
            try:
                live = connection.execute(
                    "SELECT count(*) AS n FROM nimbus_kv WHERE namespace = ? AND key IN "
                    f"(SELECT value FROM json_each(?)) AND {_LIVE}",
                    (namespace, json.dumps(list(keys)), now),
                ).fetchone()["n"]
                connection.execute(
                    "DELETE FROM nimbus_kv WHERE namespace = ? AND key IN "
                    "(SELECT value FROM json_each(?))",
                    (namespace, json.dumps(list(keys))),
                )
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        return int(live)

    def close(self) -> None:
        self._connections.close()

    def __repr__(self) -> str:
        return f"SQLiteKVStore({self.path!r})"
