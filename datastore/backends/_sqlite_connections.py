"""SQLite connections shared by the SQLite KV store and the SQLite SQL database.

* A file database gets one connection per thread (and per process: a forked child opens its
  own), in WAL mode with a busy timeout, so several threads and processes can share the file.
* ``:memory:`` gets a single connection guarded by a lock, since each ``:memory:`` connection
  would otherwise be a separate database.
* Connections run in autocommit mode; callers open transactions explicitly
  (``BEGIN IMMEDIATE`` for writes that read first).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import DatastoreError, IntegrityError, QueryError, Unavailable

__all__ = ["SQLiteConnections", "dict_row", "translate_error"]


def dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def translate_error(exc: Exception, sql: str | None = None) -> DatastoreError:
    """Map a ``sqlite3`` exception to the ``datastore.errors`` hierarchy."""
    where = f" in: {sql.strip()[:200]}" if sql else ""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(f"constraint violated: {exc}{where}")
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc)
        if "locked" in message or "busy" in message or "unable to open" in message:
            return Unavailable(f"SQLite database unavailable: {message}")
        return QueryError(f"SQL error: {message}{where}")
    if isinstance(exc, sqlite3.Error):
        return QueryError(f"SQL error: {exc}{where}")
    return QueryError(f"SQL error: {exc}{where}")


class SQLiteConnections:
    """Hands out the right connection for the current thread (see module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.timeout = timeout
        self._lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._shared: sqlite3.Connection | None = None
        if self.memory:
            self._shared = self._open()
        else:
            parent = Path(self.path).parent
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data: owner only

    def _open(self) -> sqlite3.Connection:
        # check_same_thread is off so close() works from any thread; each file connection
        # is still only used by the thread that opened it.
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        connection.row_factory = dict_row
        if not self.memory:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The connection for this thread; with ``:memory:`` the lock is held meanwhile."""
        if self._closed:
            raise Unavailable(f"SQLite database {self.path!r} is closed")
        if self._shared is not None:
            with self._lock:
                yield self._shared
            return
        if os.getpid() != self._pid:  # forked: never reuse the parent's connections
            with self._lock:
                if os.getpid() != self._pid:
                    self._pid = os.getpid()
                    self._local = threading.local()
                    self._all = []
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open()
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        yield connection

    @contextmanager
    def transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """``BEGIN {mode}`` ... ``COMMIT``, rolled back if the block raises. Inside another
        transaction of this thread it joins it: the outermost one commits or rolls back."""
        with self.connection() as connection:
            depth = getattr(self._local, "depth", 0)
            if depth:
                self._local.depth = depth + 1
                try:
                    yield connection
                finally:
                    self._local.depth = depth
                return
            try:
                connection.execute(f"BEGIN {mode}")
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
            self._local.depth = 1
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                self._local.depth = 0
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise translate_error(exc) from exc

    def in_outer_transaction(self) -> bool:
        """Whether this thread's current transaction is nested in an enclosing one."""
        return getattr(self._local, "depth", 0) > 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = [*self._all, *([self._shared] if self._shared else [])]
            self._all = []
            self._shared = None
        for connection in connections:
            connection.close()
