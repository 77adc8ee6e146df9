"""Schema introspection shared by the SQL backends (same SQL on SQLite and D1)."""

from __future__ import annotations

from ..contract import SQLColumn, SQLDatabase
from ..sqlbuild import quote_identifier

__all__ = ["table_info"]


def table_info(database: SQLDatabase, table: str) -> list[SQLColumn]:
    """Columns of ``table`` (empty if it does not exist); the name must be an identifier."""
    quote_identifier(table)
    rows = database.execute(
        'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', [table]
    )
    return [
        SQLColumn(row["name"], row["type"], bool(row["notnull"]), row["dflt_value"], row["pk"])
        for row in rows
    ]
