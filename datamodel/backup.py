"""Backups: every KV key (objects and lists, with metadata and expiry), the SQL adapter's
``objects``/``lists`` rows and the migration log, streamed to a gzip-compressed JSON-lines
file, and back into any backend.

The file: a header line (format, version, source, time), one line per record, and a trailer
with the record count and the SHA-256 of every line before it. ``restore`` checks the whole file
before writing anything (the count, the SHA-256 recomputed as ``backup`` computes it, and, if
given, the SHA-256 the backup reported), reports that SHA-256, and refuses a target that
already holds data unless told how to merge (``overwrite`` or ``skip``). Metadata tables are
not in the file: they are rebuilt from KV.

A backup can leave keys out (``exclude``: a whole namespace, or the keys of a namespace under
a prefix, such as sessions and caches); the header lists what was left out, and ``restore``
takes the same list as keys that do not make a target "hold data". The file is created
readable by its owner only (0600) and never over an existing file unless ``overwrite``.

The migration log is merged, never duplicated, whatever the merge mode: a logged change is
restored only if its table exists in the target (``objects``/``lists`` restored from the file
count; the metadata tables do not exist until ``initialize`` rebuilds them and logs their
creation itself) and the target's log does not already hold the same change (model, table,
change, detail, SQL and schema hash; ids and times differ between databases). Restored
changes get new ids, in their original order. So restoring a file twice, or into the database
it came from, leaves the log as it was.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from datastore import KVStore, PutItem, SQLDatabase, codec
from datastore.adapters.sql import OBJECT_TABLES_DDL
from datastore.errors import InvalidValue
from datastore.sqlbuild import insert_rows

from .schema import MIGRATIONS_DDL, MIGRATIONS_TABLE

__all__ = ["FORMAT", "VERSION", "BackupReport", "KeyRange", "backup", "restore"]

FORMAT = "nimbus-backup"
VERSION = 1
BATCH = 500
SQL_TABLES = ("objects", "lists", MIGRATIONS_TABLE)
MERGE_MODES = ("refuse", "overwrite", "skip")
# What makes two migration log rows the same change (ids and applied_at differ by database).
LOG_IDENTITY = ("model", "table", "change", "detail", "sql", "schema_hash")


@dataclass(frozen=True)
class KeyRange:
    """The keys of ``namespace`` that start with ``prefix`` (``""``: the whole namespace)."""

    namespace: str
    prefix: str = ""

    def covers(self, namespace: str, key: str) -> bool:
        return namespace == self.namespace and key.startswith(self.prefix)


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


def _kv_records(kv: KVStore, exclude: Sequence[KeyRange] = ()) -> Iterator[dict[str, Any]]:
    for namespace in kv.namespaces():
        if any(left_out.namespace == namespace and not left_out.prefix for left_out in exclude):
            continue
        cursor = None
        while True:
            page = kv.list(namespace, cursor=cursor, limit=kv.limits.max_list_limit)
            kept = [
                key
                for key in page.keys
                if not any(left_out.covers(namespace, key) for left_out in exclude)
            ]
            for start in range(0, len(kept), BATCH):
                keys = kept[start : start + BATCH]
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


@contextmanager
def _private_file(path: str | Path, overwrite: bool) -> Iterator[IO[bytes]]:
    """A new file at ``path`` that only its owner can read (0600). ``FileExistsError`` if
    ``path`` exists, unless ``overwrite``: then the file is written beside it and renamed over
    it at the end. A failed write removes what it wrote and leaves ``path`` as it was."""
    path = Path(path)
    written = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if overwrite else path
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(written, flags, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            yield out
        if overwrite:
            os.replace(written, path)
    except BaseException:
        written.unlink(missing_ok=True)
        raise


def backup(
    kv: KVStore | None,
    sql: SQLDatabase | None,
    path: str | Path,
    *,
    source: str = "",
    progress: Callable[[int], None] | None = None,
    exclude: Sequence[KeyRange] = (),
    overwrite: bool = False,
) -> BackupReport:
    """Write every KV key (but those in ``exclude``) and the SQL tables above to ``path``
    (gzip JSON lines, mode 0600). An existing ``path`` raises ``FileExistsError`` before
    anything is read, unless ``overwrite``."""
    started = time.perf_counter()
    report = BackupReport()
    digest = hashlib.sha256()
    header = {
        "t": "header",
        "format": FORMAT,
        "version": VERSION,
        "created_at": codec.isoformat(dt.datetime.now(dt.UTC)),
        "source": source,
        "excluded": [{"ns": left_out.namespace, "prefix": left_out.prefix} for left_out in exclude],
    }
    with _private_file(path, overwrite) as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:

        def write(record: dict[str, Any]) -> None:
            line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
            digest.update(line)
            out.write(line)

        write(header)
        streams: list[Iterator[dict[str, Any]]] = []
        if kv is not None:
            streams.append(_kv_records(kv, exclude))
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


def verify_file(path: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """Check format, version, count and checksum (and that the checksum is ``sha256``, if
    given); returns the header, with the file's checksum as ``"sha256"``. Writes nothing."""
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
    actual = digest.hexdigest()
    if trailer.get("count") != count:
        raise InvalidValue(
            f"{path}: checksum mismatch: the file holds {count} records, its end record says "
            f"{trailer.get('count')}: the file is damaged; nothing was restored"
        )
    if trailer.get("sha256") != actual:
        raise InvalidValue(
            f"{path}: checksum mismatch: the records hash to sha256 {actual}, the end record "
            f"says {trailer.get('sha256')}: the file is damaged; nothing was restored"
        )
    if sha256 is not None and sha256.strip().lower() != actual:
        raise InvalidValue(
            f"{path}: checksum mismatch: the file's sha256 is {actual}, not the expected "
            f"{sha256}: not the backup you meant, or a changed one; nothing was restored"
        )
    return {**header, "sha256": actual}


def _target_holds_data(
    kv: KVStore | None, sql: SQLDatabase | None, ignore: Sequence[KeyRange] = ()
) -> bool:
    if kv is not None:
        for namespace in kv.namespaces():
            if not any(skipped.namespace == namespace for skipped in ignore):
                if kv.list(namespace, limit=max(kv.limits.min_list_limit, 1)).keys:
                    return True
                continue
            cursor = None
            while True:  # only where something is ignored: every key may have to be seen
                page = kv.list(namespace, cursor=cursor, limit=kv.limits.max_list_limit)
                if any(
                    not any(skipped.covers(namespace, key) for skipped in ignore)
                    for key in page.keys
                ):
                    return True
                cursor = page.cursor
                if cursor is None:
                    break
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
    sha256: str | None = None,
    ignore: Sequence[KeyRange] = (),
) -> BackupReport:
    """Load a backup into the given stores (see the module docstring for ``merge`` and the
    migration log). ``sha256``: the checksum the backup reported, checked before anything is
    written; the report's ``sha256`` is the file's, verified. Keys in ``ignore`` (sessions,
    caches) do not count as data the target holds."""
    if merge not in MERGE_MODES:
        raise InvalidValue(f"merge must be one of {', '.join(MERGE_MODES)}")
    started = time.perf_counter()
    checked = verify_file(path, sha256)
    if merge == "refuse" and _target_holds_data(kv, sql, ignore):
        raise InvalidValue(
            "the target already holds data: restore with merge='overwrite' or merge='skip'"
        )
    report = BackupReport(sha256=checked["sha256"])
    target = _SQLTarget(sql) if sql is not None else None
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
        elif kind == "sql" and target is not None:
            if target.restore_row(record["table"], record["row"], merge):
                report.sql_rows += 1
            else:
                report.skipped += 1
        if progress is not None and report.records % 1000 == 0:
            progress(report.records)
    for namespace in list(pending):
        flush(namespace)
    report.duration_ms = round((time.perf_counter() - started) * 1000)
    return report


class _SQLTarget:
    """Writes ``objects``/``lists`` rows and merges the migration log (module docstring)."""

    def __init__(self, sql: SQLDatabase) -> None:
        self.sql = sql
        self.tables: dict[str, bool] = {}
        self.logged: set[tuple[Any, ...]] | None = None

    def has_table(self, table: str) -> bool:
        if table not in self.tables:
            self.tables[table] = bool(self.sql.table_info(table))
        return self.tables[table]

    def create(self, table: str) -> None:
        ddl = [MIGRATIONS_DDL] if table == MIGRATIONS_TABLE else list(OBJECT_TABLES_DDL)
        self.sql.batch([(statement, ()) for statement in ddl])
        self.tables.clear()  # the object DDL creates several tables

    def restore_row(self, table: str, row: dict[str, Any], merge: str) -> bool:
        """Write one row; ``False`` if it is a migration log row that is not restored."""
        if table not in SQL_TABLES:
            raise InvalidValue(f"unexpected table {table!r} in the backup")
        if table == MIGRATIONS_TABLE:
            return self._log(row)
        if not self.has_table(table):
            self.create(table)
        verb = "INSERT OR IGNORE" if merge == "skip" else "INSERT OR REPLACE"
        self.sql.batch(insert_rows(table, list(row), [list(row.values())], verb=verb))
        return True

    def _log(self, row: dict[str, Any]) -> bool:
        if not self.has_table(str(row.get("table"))):
            return False  # initialize creates it and logs that itself
        if not self.has_table(MIGRATIONS_TABLE):
            self.create(MIGRATIONS_TABLE)
        if self.logged is None:
            columns = ", ".join(f'"{column}"' for column in LOG_IDENTITY)
            self.logged = {
                tuple(found[column] for column in LOG_IDENTITY)
                for found in self.sql.execute(f"SELECT {columns} FROM {MIGRATIONS_TABLE}")
            }
        identity = tuple(row.get(column) for column in LOG_IDENTITY)
        if identity in self.logged:
            return False
        self.logged.add(identity)
        values = {column: value for column, value in row.items() if column != "id"}
        self.sql.batch(insert_rows(MIGRATIONS_TABLE, list(values), [list(values.values())]))
        return True
