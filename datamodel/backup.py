"""Backups: every KV key (objects and lists, with metadata and expiry), the SQL adapter's
``objects``/``lists`` rows and the migration log, streamed to a gzip-compressed JSON-lines
file, and back into any backend.

The file: a header line (format, version, source, time), one line per record, and a trailer
with the record count and the SHA-256 of every line before it. ``restore`` checks the whole file
before writing anything, and refuses a target that already holds data unless told how to merge
(``overwrite`` or ``skip``). Metadata tables are not in the file: they are rebuilt from KV.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datastore import KVStore, PutItem, SQLDatabase, codec
from datastore.adapters.sql import OBJECT_TABLES_DDL
from datastore.errors import InvalidValue
from datastore.sqlbuild import insert_rows

from .schema import MIGRATIONS_DDL, MIGRATIONS_TABLE

__all__ = ["FORMAT", "VERSION", "BackupReport", "backup", "restore"]

FORMAT = "nimbus-backup"
VERSION = 1
BATCH = 500
SQL_TABLES = ("objects", "lists", MIGRATIONS_TABLE)
MERGE_MODES = ("refuse", "overwrite", "skip")


@dataclass
class BackupReport:
    records: int = 0
    kv_keys: int = 0
    sql_rows: int = 0
    skipped: int = 0
    sha256: str = ""
    duration_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def _kv_records(kv: KVStore) -> Iterator[dict[str, Any]]:
    for namespace in kv.namespaces():
        cursor = None
        while True:
            page = kv.list(namespace, cursor=cursor, limit=kv.limits.max_list_limit)
            for start in range(0, len(page.keys), BATCH):
                keys = page.keys[start : start + BATCH]
                for key, entry in kv.get_entries(namespace, keys).items():
                    yield {
                        "t": "kv",
                        "ns": namespace,
                        "k": key,
                        "v": base64.b64encode(entry.value).decode("ascii"),
                        "m": entry.metadata,
                        "x": entry.expires_at,
                    }
            cursor = page.cursor
            if cursor is None:
                break


def _sql_records(sql: SQLDatabase) -> Iterator[dict[str, Any]]:
    for table in SQL_TABLES:
        if not sql.table_info(table):
            continue
        last = 0
        while True:
            rows = sql.execute(
                f'SELECT rowid AS "_rowid", * FROM "{table}" WHERE rowid > ? '
                "ORDER BY rowid LIMIT ?",
                [last, BATCH],
            )
            for row in rows:
                last = row.pop("_rowid")
                yield {"t": "sql", "table": table, "row": row}
            if len(rows) < BATCH:
                break


def backup(
    kv: KVStore | None,
    sql: SQLDatabase | None,
    path: str | Path,
    *,
    source: str = "",
    progress: Callable[[int], None] | None = None,
) -> BackupReport:
    """Write every KV key and the SQL tables above to ``path`` (gzip JSON lines)."""
    started = time.perf_counter()
    report = BackupReport()
    digest = hashlib.sha256()
    header = {
        "t": "header",
        "format": FORMAT,
        "version": VERSION,
        "created_at": codec.isoformat(dt.datetime.now(dt.UTC)),
        "source": source,
    }
    with gzip.open(path, "wb") as out:

        def write(record: dict[str, Any]) -> None:
            line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
            digest.update(line)
            out.write(line)

        write(header)
        streams: list[Iterator[dict[str, Any]]] = []
        if kv is not None:
            streams.append(_kv_records(kv))
        if sql is not None:
            streams.append(_sql_records(sql))
        for stream in streams:
            for record in stream:
                write(record)
                report.records += 1
                if record["t"] == "kv":
                    report.kv_keys += 1
                else:
                    report.sql_rows += 1
                if progress is not None and report.records % 1000 == 0:
                    progress(report.records)
        report.sha256 = digest.hexdigest()
        out.write(
            json.dumps({"t": "end", "count": report.records, "sha256": report.sha256}).encode()
            + b"\n"
        )
    report.duration_ms = round((time.perf_counter() - started) * 1000)
    return report


def _read(path: str | Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rb") as source:
        for line in source:
            yield json.loads(line)


def verify_file(path: str | Path) -> dict[str, Any]:
    """Check format, version, count and checksum; returns the header. Writes nothing."""
    digest = hashlib.sha256()
    count = -1
    header: dict[str, Any] | None = None
    trailer: dict[str, Any] | None = None
    try:
        with gzip.open(path, "rb") as source:
            for line in source:
                record = json.loads(line)
                if record.get("t") == "end":
                    trailer = record
                    break
                digest.update(line)
                count += 1
                if header is None:
                    header = record
    except (OSError, EOFError, ValueError) as exc:
        raise InvalidValue(f"{path}: not a readable backup ({exc})") from exc
    if header is None or header.get("format") != FORMAT:
        raise InvalidValue(f"{path}: not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise InvalidValue(f"{path}: format version {header.get('version')} is not {VERSION}")
    if trailer is None:
        raise InvalidValue(f"{path}: the file is truncated (no end record)")
    if trailer.get("count") != count or trailer.get("sha256") != digest.hexdigest():
        raise InvalidValue(f"{path}: checksum mismatch: the file is damaged")
    return header


def _target_holds_data(kv: KVStore | None, sql: SQLDatabase | None) -> bool:
    if kv is not None:
        for namespace in kv.namespaces():
            if kv.list(namespace, limit=max(kv.limits.min_list_limit, 1)).keys:
                return True
    if sql is not None:
        for table in ("objects", "lists"):
            if sql.table_info(table) and sql.execute(f'SELECT 1 FROM "{table}" LIMIT 1'):
                return True
    return False


def restore(
    kv: KVStore | None,
    sql: SQLDatabase | None,
    path: str | Path,
    *,
    merge: str = "refuse",
    progress: Callable[[int], None] | None = None,
) -> BackupReport:
    """Load a backup into the given stores (see the module docstring for ``merge``)."""
    if merge not in MERGE_MODES:
        raise InvalidValue(f"merge must be one of {', '.join(MERGE_MODES)}")
    started = time.perf_counter()
    verify_file(path)
    if merge == "refuse" and _target_holds_data(kv, sql):
        raise InvalidValue(
            "the target already holds data: restore with merge='overwrite' or merge='skip'"
        )
    report = BackupReport()
    pending: dict[str, list[PutItem]] = {}
    now = kv.clock() if kv is not None else 0.0  # expiry times are on the store's clock

    def flush(namespace: str) -> None:
        items = pending.pop(namespace, [])
        if not items or kv is None:
            return
        if merge == "skip":
            taken = kv.get_many(namespace, [item.key for item in items])
            report.skipped += len(taken)
            items = [item for item in items if item.key not in taken]
        if items:
            kv.put_many(namespace, items)

    for record in _read(path):
        kind = record.get("t")
        if kind in ("header", "end"):
            continue
        report.records += 1
        if kind == "kv" and kv is not None:
            expires_at = record.get("x")
            if expires_at is not None and expires_at <= now:
                report.skipped += 1
                continue
            ttl = None if expires_at is None else max(expires_at - now, kv.limits.min_ttl_seconds)
            namespace = record["ns"]
            pending.setdefault(namespace, []).append(
                PutItem(record["k"], base64.b64decode(record["v"]), ttl=ttl, metadata=record["m"])
            )
            report.kv_keys += 1
            if len(pending[namespace]) >= BATCH:
                flush(namespace)
        elif kind == "sql" and sql is not None:
            _restore_row(sql, record["table"], record["row"], merge)
            report.sql_rows += 1
        if progress is not None and report.records % 1000 == 0:
            progress(report.records)
    for namespace in list(pending):
        flush(namespace)
    report.duration_ms = round((time.perf_counter() - started) * 1000)
    return report


def _restore_row(sql: SQLDatabase, table: str, row: dict[str, Any], merge: str) -> None:
    if table not in SQL_TABLES:
        raise InvalidValue(f"unexpected table {table!r} in the backup")
    if not sql.table_info(table):
        ddl = [MIGRATIONS_DDL] if table == MIGRATIONS_TABLE else list(OBJECT_TABLES_DDL)
        sql.batch([(statement, ()) for statement in ddl])
    verb = "INSERT OR IGNORE" if merge == "skip" else "INSERT OR REPLACE"
    sql.batch(insert_rows(table, list(row), [list(row.values())], verb=verb))
