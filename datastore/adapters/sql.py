"""The SQL adapter: the datastore spec's ``objects`` and ``lists`` tables (the D1 adapter).

Beyond the spec's columns, ``objects`` carries ``version`` (compare-and-set) and ``expires_at``
(TTL), and ``lists`` carries ``auth_users`` (the list's owners). Every write is one
``SQLDatabase.batch`` call: atomic on SQLite and on D1.

Reservations are rows of ``objects`` too: class ``_unique:{class}``, id the reservation's name,
data the owner's id as a JSON string (so ``class || ':' || id`` is the KV adapter's key). A
claim is a plain ``INSERT`` in the objects' batch, which the primary key refuses when the name
is held; releases are ``DELETE``s in the same batch. Backups copy them with the other rows.

A version check inside a batch uses a guard table whose CHECK constraint fails when the
preceding ``UPDATE`` changed no row, which aborts the whole batch: that is how a multi-object
compare-and-set stays all-or-nothing on D1, which has no BEGIN/COMMIT over its REST API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import codec
from ..contract import QueryResult, SQLDatabase, Statement
from ..errors import Conflict, IntegrityError, InvalidValue, TooLarge
from ..keys import composite_key, list_key, object_key, reservation_key, reservation_prefix
from ..pending import Pending
from ..routing import Routing
from .base import ObjectWrite, StoredList, StoredObject

__all__ = ["OBJECT_TABLES_DDL", "SQLAdapter"]

OBJECT_TABLES_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS objects (
    class TEXT NOT NULL,
    id TEXT NOT NULL,
    data JSON NOT NULL,
    auth_users JSON DEFAULT '[]',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    version INTEGER NOT NULL DEFAULT 1,
    expires_at REAL,
    PRIMARY KEY (class, id)
)""",
    """CREATE TABLE IF NOT EXISTS lists (
    list_name TEXT NOT NULL,
    pointer TEXT NOT NULL,
    item_id TEXT NOT NULL,
    position INTEGER DEFAULT 0,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    auth_users JSON DEFAULT '[]',
    PRIMARY KEY (list_name, pointer, item_id)
)""",
    "CREATE INDEX IF NOT EXISTS idx_objects_class ON objects(class)",
    "CREATE INDEX IF NOT EXISTS idx_objects_auth ON objects(auth_users)",
    "CREATE INDEX IF NOT EXISTS idx_lists_lookup ON lists(list_name, pointer)",
    """CREATE TABLE IF NOT EXISTS nimbus_cas_guard (
    conflict TEXT,
    CONSTRAINT nimbus_version_conflict CHECK (conflict IS NULL)
)""",
)

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_GUARD = "INSERT INTO nimbus_cas_guard (conflict) SELECT ? WHERE changes() = 0"
# D1 refuses rows over 2 MB; stay under it with room for the other columns.
MAX_DATA_BYTES = 2_000_000

_UPSERT = (
    "INSERT INTO objects (class, id, data, auth_users, version, expires_at, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT (class, id) DO UPDATE SET "
    "data = excluded.data, auth_users = excluded.auth_users, version = objects.version + 1, "
    "expires_at = excluded.expires_at, updated_at = excluded.updated_at RETURNING version"
)
_INSERT = (
    "INSERT INTO objects (class, id, data, auth_users, version, expires_at, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?) RETURNING version"
)
_CLAIM = (
    "INSERT INTO objects (class, id, data, auth_users, version, created_at, updated_at) "
    "VALUES (?, ?, ?, '[]', 1, ?, ?)"
)
_DELETE_IDS = "DELETE FROM objects WHERE class = ? AND id IN (SELECT value FROM json_each(?))"
_OWNERS = "SELECT id, data FROM objects WHERE class = ? AND id IN (SELECT value FROM json_each(?))"
_UPDATE = (
    "UPDATE objects SET data = ?, auth_users = ?, version = version + 1, expires_at = ?, "
    "updated_at = ? WHERE class = ? AND id = ? AND version = ? RETURNING version"
)


class SQLAdapter:
    """Objects and lists in the ``objects``/``lists`` tables of a ``SQLDatabase``."""

    name = "sql"

    def __init__(
        self, sql: SQLDatabase, routing: Routing, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.sql = sql
        self.routing = routing
        self.clock = clock
        self.round_trips = sql.round_trips
        self.supports_cas = True

    def create_tables(self) -> None:
        """Create the tables and indexes if missing (idempotent)."""
        self.sql.batch([(statement, ()) for statement in OBJECT_TABLES_DDL])

    def _class(self, class_name: str) -> str:
        self.routing.namespace_for(class_name)  # unknown classes fail as on the KV adapter
        return class_name.lower()

    # -- objects -------------------------------------------------------------------------

    def read(self, class_name: str, object_id: str) -> StoredObject | None:
        object_key(class_name, object_id)
        rows = self.sql.execute(
            f"SELECT data, version FROM objects WHERE class = ? AND id = ? AND {_LIVE}",
            [self._class(class_name), object_id, self.clock()],
        )
        return _decode(rows[0]) if rows else None

    def read_many(self, class_name: str, object_ids: Sequence[str]) -> dict[str, StoredObject]:
        for object_id in object_ids:
            object_key(class_name, object_id)
        if not object_ids:
            return {}
        rows = self.sql.execute(
            "SELECT id, data, version FROM objects WHERE class = ? "
            f"AND id IN (SELECT value FROM json_each(?)) AND {_LIVE}",
            [self._class(class_name), json.dumps(list(object_ids)), self.clock()],
        )
        return {row["id"]: _decode(row) for row in rows}

    def select_objects(
        self,
        database: SQLDatabase,
        statements: Sequence[Statement],
        statement: int,
        class_name: str,
        id_columns: Sequence[str],
    ) -> tuple[list[QueryResult], dict[str, StoredObject]]:
        results = database.batch(statements)
        ids = [
            composite_key(*(str(row[column]) for column in id_columns))
            for row in results[statement]
            if all(row.get(column) is not None for column in id_columns)
        ]
        return results, self.read_many(class_name, ids) if ids else {}

    def start_write_many(
        self,
        class_name: str,
        writes: Sequence[ObjectWrite],
        ttl: float | None,
        *,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> Pending[list[int]]:
        return Pending.run(
            lambda: self.write_many(class_name, writes, ttl, claims=claims, releases=releases)
        )

    def write_many(
        self,
        class_name: str,
        writes: Sequence[ObjectWrite],
        ttl: float | None,
        *,
        claims: Mapping[str, str] | None = None,
        releases: Sequence[str] = (),
    ) -> list[int]:
        klass = self._class(class_name)
        now = self.clock()
        stamp = codec.isoformat(datetime.fromtimestamp(now, UTC))
        expires_at = now + ttl if ttl is not None else None
        if ttl is not None and ttl <= 0:
            raise InvalidValue(f"ttl must be positive, not {ttl!r}")
        claims = claims or {}
        statements: list[Statement] = [
            (
                "DELETE FROM objects WHERE class = ? AND id IN (SELECT value FROM json_each(?)) "
                "AND expires_at IS NOT NULL AND expires_at <= ?",
                [klass, json.dumps([write.object_id for write in writes]), now],
            )
        ]
        result_index: list[int] = []
        for write in writes:
            object_key(class_name, write.object_id)
            data = codec.dumps(write.data).decode("utf-8")
            if len(data) > MAX_DATA_BYTES:
                raise TooLarge(
                    f"{klass}:{write.object_id} is {len(data)} bytes; "
                    f"the limit for a row is {MAX_DATA_BYTES} bytes"
                )
            auth = json.dumps(StoredObject(write.data, 0).auth)
            result_index.append(len(statements))
            if write.if_version is None:
                statements.append(
                    (_UPSERT, [klass, write.object_id, data, auth, expires_at, stamp, stamp])
                )
            elif write.if_version == 0:
                statements.append(
                    (_INSERT, [klass, write.object_id, data, auth, expires_at, stamp, stamp])
                )
            else:
                statements.append(
                    (
                        _UPDATE,
                        [data, auth, expires_at, stamp, klass, write.object_id, write.if_version],
                    )
                )
                statements.append((_GUARD, [write.object_id]))
        statements.extend(self._reservation_statements(class_name, claims, releases, stamp))
        try:
            results = self.sql.batch(statements)
        except IntegrityError as exc:
            message = str(exc)
            if "nimbus_version_conflict" in message or "objects.class, objects.id" in message:
                keys = [f"{klass}:{write.object_id}" for write in writes if write.if_version]
                if claims:  # which claim (or version) failed: one more read, on this path only
                    keys = self._failing_keys(class_name, writes, claims) or keys
                raise Conflict(
                    f"version conflict writing {', '.join(keys) or klass}; nothing was written",
                    keys=keys,
                ) from exc
            raise
        return [int(results[index][0]["version"]) for index in result_index]

    def _reservation_statements(
        self,
        class_name: str,
        claims: Mapping[str, str],
        releases: Sequence[str],
        stamp: str,
    ) -> list[Statement]:
        reserved = _reserved_class(class_name)
        statements: list[Statement] = []
        for name, owner in claims.items():
            reservation_key(class_name, name)
            statements.append((_CLAIM, [reserved, name, json.dumps(owner), stamp, stamp]))
        for name in releases:
            reservation_key(class_name, name)
        if releases:
            statements.append((_DELETE_IDS, [reserved, json.dumps(list(releases))]))
        return statements

    def _failing_keys(
        self, class_name: str, writes: Sequence[ObjectWrite], claims: Mapping[str, str]
    ) -> list[str]:
        """The keys whose precondition does not hold now: held claims, stale versions."""
        klass = self._class(class_name)
        rows = self.sql.execute(
            "SELECT class, id, version FROM objects WHERE (class = ? AND id IN "
            f"(SELECT value FROM json_each(?)) AND {_LIVE}) OR (class = ? AND id IN "
            "(SELECT value FROM json_each(?)))",
            [
                klass,
                json.dumps([write.object_id for write in writes]),
                self.clock(),
                _reserved_class(class_name),
                json.dumps(list(claims)),
            ],
        )
        versions = {(row["class"], row["id"]): int(row["version"]) for row in rows}
        keys = [
            f"{klass}:{write.object_id}"
            for write in writes
            if write.if_version is not None
            and versions.get((klass, write.object_id), 0) != write.if_version
        ]
        keys.extend(
            reservation_key(class_name, name)
            for name in claims
            if (_reserved_class(class_name), name) in versions
        )
        return keys

    def remove_many(self, class_name: str, object_ids: Sequence[str]) -> int:
        klass = self._class(class_name)
        for object_id in object_ids:
            object_key(class_name, object_id)
        if not object_ids:
            return 0
        ids = json.dumps(list(object_ids))
        where = "class = ? AND id IN (SELECT value FROM json_each(?))"
        live, _ = self.sql.batch(
            [
                (f"DELETE FROM objects WHERE {where} AND {_LIVE}", [klass, ids, self.clock()]),
                (f"DELETE FROM objects WHERE {where}", [klass, ids]),
            ]
        )
        return live.changes

    def remove_and_release(
        self, class_name: str, object_ids: Sequence[str], releases: Sequence[str]
    ) -> None:
        klass = self._class(class_name)
        for object_id in object_ids:
            object_key(class_name, object_id)
        statements = self._reservation_statements(class_name, {}, releases, "")
        if object_ids:
            statements.insert(0, (_DELETE_IDS, [klass, json.dumps(list(object_ids))]))
        if statements:
            self.sql.batch(statements)

    def reservation_owners(self, class_name: str, names: Sequence[str]) -> dict[str, str]:
        self._class(class_name)
        for name in names:
            reservation_key(class_name, name)
        if not names:
            return {}
        rows = self.sql.execute(_OWNERS, [_reserved_class(class_name), json.dumps(list(names))])
        owners: dict[str, str] = {}
        for row in rows:
            owner = codec.loads(row["data"])
            if not isinstance(owner, str):
                raise InvalidValue(f"reservation {row['id']!r} does not hold an object id")
            owners[row["id"]] = owner
        return owners

    def list_ids(
        self, class_name: str, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        rows = self.sql.execute(
            f"SELECT id FROM objects WHERE class = ? AND id > ? AND {_LIVE} ORDER BY id LIMIT ?",
            [self._class(class_name), cursor or "", self.clock(), limit],
        )
        ids = [row["id"] for row in rows]
        return ids, (ids[-1] if len(ids) == limit else None)

    # -- lists ---------------------------------------------------------------------------

    def _check_list(self, list_name: str, pointer: str) -> None:
        self.routing.namespace_for_list(list_name)
        list_key(list_name, pointer)

    def read_list(self, list_name: str, pointer: str) -> StoredList | None:
        self._check_list(list_name, pointer)
        rows = self.sql.execute(
            "SELECT item_id, auth_users FROM lists WHERE list_name = ? AND pointer = ? "
            "ORDER BY position, item_id",
            [list_name, pointer],
        )
        if not rows:
            return None
        return StoredList([row["item_id"] for row in rows], json.loads(rows[0]["auth_users"]), 0)

    def add_to_list(
        self, list_name: str, pointer: str, item: str, *, owner: str | None
    ) -> bool | None:
        self._check_list(list_name, pointer)
        same_list = "FROM lists WHERE list_name = ?1 AND pointer = ?2"
        inserted, check = self.sql.batch(
            [
                (
                    "INSERT INTO lists (list_name, pointer, item_id, position, auth_users) "
                    f"SELECT ?1, ?2, ?3, COALESCE((SELECT max(position) + 1 {same_list}), 0), "
                    f"COALESCE((SELECT auth_users {same_list} LIMIT 1), ?4) "
                    f"WHERE ?5 IS NULL OR NOT {_owned_by_other('?5')} "
                    "ON CONFLICT (list_name, pointer, item_id) DO NOTHING",
                    [list_name, pointer, item, json.dumps([owner] if owner else []), owner],
                ),
                (
                    f"SELECT ?3 IS NOT NULL AND {_owned_by_other('?3')} AS denied",
                    [list_name, pointer, owner],
                ),
            ]
        )
        if inserted.changes:
            return True
        return None if check[0]["denied"] else False

    def remove_from_list(
        self, list_name: str, pointer: str, item: str, *, owner: str | None
    ) -> bool:
        self._check_list(list_name, pointer)
        result = self.sql.execute(
            "DELETE FROM lists WHERE list_name = ?1 AND pointer = ?2 AND item_id = ?3 AND "
            f"(?4 IS NULL OR NOT {_owned_by_other('?4')})",
            [list_name, pointer, item, owner],
        )
        return result.changes > 0

    def clear_list(self, list_name: str, pointer: str, *, owner: str | None) -> bool:
        self._check_list(list_name, pointer)
        result = self.sql.execute(
            "DELETE FROM lists WHERE list_name = ?1 AND pointer = ?2 AND "
            f"(?3 IS NULL OR NOT {_owned_by_other('?3')})",
            [list_name, pointer, owner],
        )
        return result.changes > 0


def _reserved_class(class_name: str) -> str:
    """The ``class`` column of a class's reservations: ``_unique:{class_lower}``."""
    return reservation_prefix(class_name)[:-1]


def _owned_by_other(owner_param: str) -> str:
    """SQL: the list ?1/?2 has a row whose owners do not include ``owner_param``."""
    return (
        "EXISTS (SELECT 1 FROM lists AS other WHERE other.list_name = ?1 AND "
        "other.pointer = ?2 AND NOT EXISTS (SELECT 1 FROM json_each(other.auth_users) "
        f"WHERE value = {owner_param}))"
    )


def _decode(row: dict[str, Any]) -> StoredObject:
    data = codec.loads(row["data"])
    if not isinstance(data, dict):
        raise InvalidValue("stored data is not a JSON object")
    return StoredObject(data, int(row["version"]))
