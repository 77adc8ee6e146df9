"""The same storage work by hand: the page as JSON in a KV store (a sqlite3 table, or a Redis
string with its version in a hash beside it) written with compare-and-set on the version, and
its metadata row upserted with sqlite3 under the same version guard; object and row carry the
owner (``user_id``, ``_auth``) as the project's do. No validation, no hooks, no model: the
floor the project is measured against."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from . import NOW, PROJECT_ID, USER_ID, VALUES_FIELDS, page_values

COLUMNS = [
    "page_id", "project_id", "batch_id", "source_path", "status", "priority", "uploaded",
    "user_id", "created_at", "updated_at", "deleted_at", "_auth", "_version",
]  # fmt: skip
UPSERT = (
    f"INSERT INTO page_meta ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (page_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
    + " WHERE excluded._version >= page_meta._version"
)
AUTH = COLUMNS.index("_auth")  # a JSON list in the object, its text in the row
PAGE = (
    f"SELECT {', '.join(COLUMNS)} FROM page_meta WHERE project_id = ? AND status = ? "
    "AND deleted_at IS NULL ORDER BY priority DESC, page_id DESC LIMIT 21"
)
COUNT = "SELECT count(*) FROM page_meta WHERE project_id = ? AND status = ? AND deleted_at IS NULL"
# The owner's pages, as the project's queries in the owner's scope (same index, no sort).
VALUES_PAGE = (
    f"SELECT {', '.join(VALUES_FIELDS)} FROM page_meta WHERE project_id = ? AND status = ? "
    "AND deleted_at IS NULL AND user_id = ? ORDER BY priority DESC, page_id DESC LIMIT 20"
)
BY_STATUS = (
    "SELECT status, count(*) FROM page_meta WHERE project_id = ? AND deleted_at IS NULL "
    "AND user_id = ? GROUP BY status ORDER BY status"
)
# Compare-and-set of a value and its version: one round trip.
CAS_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
if current ~= tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'v', current + 1)
return current + 1
"""


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class SQLiteKV:
    """A KV table in its own SQLite file."""

    def __init__(self, path: Path) -> None:
        self.db = connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
            "version INTEGER NOT NULL)"
        )

    def put(self, key: str, value: str, expected_version: int) -> int:
        if expected_version == 0:
            self.db.execute("INSERT INTO kv VALUES (?, ?, 1)", (key, value))
            return 1
        changed = self.db.execute(
            "UPDATE kv SET value = ?, version = version + 1 WHERE key = ? AND version = ?",
            (value, key, expected_version),
        ).rowcount
        if changed != 1:
            raise RuntimeError(f"conflict on {key}")
        return expected_version + 1

    def get(self, key: str) -> tuple[str, int]:
        value, version = self.db.execute(
            "SELECT value, version FROM kv WHERE key = ?", (key,)
        ).fetchone()
        return value, version

    def get_many(self, keys: list[str]) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
        return dict(rows.fetchall())

    def put_many(self, items: list[tuple[str, str]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO kv VALUES (?, ?, 1)", items)
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class RedisKV:
    """A Redis string per page and a hash with its version, under a private prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.cas = self.client.register_script(CAS_SCRIPT)
        self.cas_sha = str(self.client.script_load(CAS_SCRIPT))

    def put(self, key: str, value: str, expected_version: int) -> int:
        version = int(
            self.cas(
                keys=[self.prefix + key, self.prefix + "v:" + key], args=[value, expected_version]
            )  # type: ignore[arg-type]
        )
        if version < 0:
            raise RuntimeError(f"conflict on {key}")
        return version

    def start_put(self, key: str, value: str, expected_version: int) -> Callable[[], int]:
        """``put`` sent now; the function returned reads its reply (pipelining by hand)."""
        pool = self.client.connection_pool
        connection = pool.get_connection()
        keys = [self.prefix + key, self.prefix + "v:" + key]
        connection.send_command("EVALSHA", self.cas_sha, 2, *keys, value, expected_version)

        def reply() -> int:
            try:
                version = int(connection.read_response())
            finally:
                pool.release(connection)
            if version < 0:
                raise RuntimeError(f"conflict on {key}")
            return version

        return reply

    def get(self, key: str) -> tuple[str, int]:
        # value and version read atomically, as compare-and-set needs
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.prefix + key)
        pipe.hget(self.prefix + "v:" + key, "v")
        value, version = pipe.execute()
        return value.decode(), int(version)

    def get_many(self, keys: list[str]) -> dict[str, str]:
        values: list[Any] = self.client.mget([self.prefix + key for key in keys])
        return {key: value.decode() for key, value in zip(keys, values, strict=True) if value}

    def put_many(self, items: list[tuple[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(self.prefix + key, value)
            pipe.hset(self.prefix + "v:" + key, "v", 1)
        pipe.execute()

    def close(self) -> None:
        for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
            self.client.delete(key)
        self.client.close()


class RawPages:
    """Pages by hand: ``kv`` holds the objects, a sqlite3 file their metadata rows.

    ``pipelined`` (Redis): the KV write is sent, the row upserted in a transaction while it
    travels, and committed once the reply says it landed, as the project's save does.
    """

    def __init__(
        self,
        kv: SQLiteKV | RedisKV,
        metadata_path: Path,
        ddl: list[str],
        *,
        pipelined: bool = False,
    ) -> None:
        self.name = "raw-pipelined" if pipelined else "raw"
        self.pipelined = pipelined
        self.kv = kv
        self.meta = connect(metadata_path)
        for statement in ddl:
            self.meta.execute(statement)
        self.kv_trips = 0
        self.sql_trips = 0

    @staticmethod
    def _key(number: int) -> str:
        return f"page:{PROJECT_ID}:page_{number:012d}"

    @staticmethod
    def _new(number: int) -> dict[str, Any]:
        """A new page as the project stores it: the values, the owner, the timestamps."""
        data = page_values(number)
        data.update(user_id=USER_ID, _auth=[USER_ID], created_at=NOW, updated_at=NOW)
        data["deleted_at"] = None
        return data

    @staticmethod
    def _row(data: dict[str, Any]) -> list[Any]:
        row = [data.get(column) for column in COLUMNS]
        row[AUTH] = json.dumps(row[AUTH])
        return row

    def _write(self, number: int, data: dict[str, Any], expected_version: int) -> None:
        data["_version"] = expected_version + 1
        self.kv_trips += 1
        self.sql_trips += 1
        if not self.pipelined:
            self.kv.put(self._key(number), json.dumps(data), expected_version)
            self.meta.execute(UPSERT, self._row(data))
            return
        assert isinstance(self.kv, RedisKV)  # pipelining by hand is on Redis only
        reply = self.kv.start_put(self._key(number), json.dumps(data), expected_version)
        self.meta.execute("BEGIN IMMEDIATE")
        try:
            self.meta.execute(UPSERT, self._row(data))
            reply()
        except BaseException:
            self.meta.execute("ROLLBACK")
            raise
        self.meta.execute("COMMIT")

    def create(self, number: int) -> None:
        self._write(number, self._new(number), 0)

    def _read(self, number: int) -> tuple[dict[str, Any], int]:
        value, version = self.kv.get(self._key(number))
        self.kv_trips += 1
        return json.loads(value), version

    def get(self, number: int) -> None:
        self._read(number)

    def update(self, number: int) -> None:
        data, version = self._read(number)
        data["priority"] = data["priority"] % 10 + 1
        data["updated_at"] = NOW
        self._write(number, data, version)

    def soft_delete(self, number: int) -> None:
        data, version = self._read(number)
        data["deleted_at"] = NOW
        self._write(number, data, version)

    def _page_rows(self) -> list[tuple[Any, ...]]:
        rows = self.meta.execute(PAGE, (PROJECT_ID, "queued")).fetchall()
        self.meta.execute(COUNT, (PROJECT_ID, "queued")).fetchone()
        self.sql_trips += 2
        return rows[:20]

    def page(self) -> None:
        self._page_rows()

    def page_with_data(self) -> None:
        rows = self._page_rows()
        stored = self.kv.get_many([f"page:{PROJECT_ID}:{row[0]}" for row in rows])
        [json.loads(value) for value in stored.values()]
        self.kv_trips += 1

    def values_page(self) -> None:
        rows = self.meta.execute(VALUES_PAGE, (PROJECT_ID, "queued", USER_ID)).fetchall()
        self.sql_trips += 1
        [dict(zip(VALUES_FIELDS, row, strict=True)) for row in rows]

    def aggregate_status(self) -> None:
        rows = self.meta.execute(BY_STATUS, (PROJECT_ID, USER_ID)).fetchall()
        self.sql_trips += 1
        [{"status": status, "n": count} for status, count in rows]

    def bulk_create(self, numbers: range) -> None:
        items, rows = [], []
        for number in numbers:
            data = self._new(number)
            data["_version"] = 1
            items.append((self._key(number), json.dumps(data)))
            rows.append(self._row(data))
        self.kv.put_many(items)
        self.meta.execute("BEGIN IMMEDIATE")
        self.meta.executemany(UPSERT, rows)
        self.meta.execute("COMMIT")
        self.kv_trips += 1
        self.sql_trips += 1

    def round_trips(self) -> tuple[int, int] | None:
        return self.kv_trips, self.sql_trips

    def close(self) -> None:
        self.kv.close()
        self.meta.close()
