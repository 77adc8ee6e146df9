"""Building parameterized statements that fit every SQL backend's limits.

D1 binds at most 100 parameters per statement. ``insert_rows`` splits a multi-row insert or
upsert into as many statements as that requires (run them in one ``batch``: still one round
trip, still atomic), and ``in_list`` turns any number of values into a single parameter with
``json_each``, so large ``IN`` lists never hit the limit at all.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .contract import Statement
from .errors import QueryError

__all__ = ["in_list", "insert_rows", "quote_identifier"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_identifier(name: str) -> str:
    """``"name"`` for a plain identifier; anything else is refused, never escaped."""
    if isinstance(name, str):
        return _quote(name)
    raise QueryError(f"invalid SQL identifier {name!r}")


@functools.lru_cache(maxsize=4096)  # a schema has few names; statements are built per save
def _quote(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise QueryError(f"invalid SQL identifier {name!r}")
    return f'"{name}"'


def in_list(column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """``("column" IN (SELECT value FROM json_each(?)), [json])``: one parameter for any size."""
    return (
        f"{quote_identifier(column)} IN (SELECT value FROM json_each(?))",
        [json.dumps(list(values))],
    )


def insert_rows(
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    suffix: str = "",
    max_parameters: int | None = None,
    verb: str = "INSERT",
) -> list[Statement]:
    """Multi-row ``INSERT`` statements, each binding at most ``max_parameters`` values.

    ``suffix`` is appended to every statement (an ``ON CONFLICT ... DO UPDATE`` clause, say);
    ``verb`` may be ``INSERT OR IGNORE`` or ``INSERT OR REPLACE``. ``None`` means no limit.
    """
    if verb not in ("INSERT", "INSERT OR IGNORE", "INSERT OR REPLACE"):
        raise QueryError(f"unsupported insert verb {verb!r}")
    if not columns:
        raise QueryError("insert_rows needs at least one column")
    width = len(columns)
    for row in rows:
        if len(row) != width:
            raise QueryError(f"row has {len(row)} values for {width} columns: {row!r}")
    per_statement = len(rows) or 1
    if max_parameters is not None:
        per_statement = max_parameters // width
        if per_statement < 1:
            raise QueryError(f"{width} columns do not fit in {max_parameters} parameters")
    head, placeholder = _insert_head(verb, table, tuple(columns))
    statements: list[Statement] = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = _statement_text(head, placeholder, len(chunk), suffix)
        statements.append((sql, [value for row in chunk for value in row]))
    return statements


@functools.lru_cache(maxsize=1024)  # the same shapes recur: one row per save, full chunks
def _statement_text(head: str, placeholder: str, rows: int, suffix: str) -> str:
    return head + ", ".join([placeholder] * rows) + (f" {suffix}" if suffix else "")


@functools.lru_cache(maxsize=1024)
def _insert_head(verb: str, table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    head = (
        f"{verb} INTO {quote_identifier(table)} "
        f"({', '.join(quote_identifier(column) for column in columns)}) VALUES "
    )
    return head, "(" + ", ".join("?" * len(columns)) + ")"
