"""Statements split to fit every SQL backend, run on each (D1 binds at most 100 parameters)."""

from __future__ import annotations

import pytest

from datastore import QueryError, SQLDatabase
from datastore.sqlbuild import in_list, insert_rows, quote_identifier


def test_bulk_upsert_is_split_to_fit_the_parameter_limit(sql_database: SQLDatabase) -> None:
    sql_database.execute(
        "CREATE TABLE pages (id TEXT PRIMARY KEY, status TEXT, n INTEGER, _version INTEGER)"
    )
    rows = [[f"p{i:04d}", "queued", i, 1] for i in range(1000)]
    upsert = (
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, n = excluded.n, "
        "_version = excluded._version WHERE excluded._version >= pages._version"
    )
    statements = insert_rows(
        "pages",
        ["id", "status", "n", "_version"],
        rows,
        suffix=upsert,
        max_parameters=sql_database.max_bound_parameters,
    )
    if sql_database.max_bound_parameters is not None:
        assert all(len(params) <= sql_database.max_bound_parameters for _, params in statements)
        assert len(statements) == 40
    with sql_database.round_trips.track() as delta:
        sql_database.batch(statements)
    assert delta.count == 1
    assert sql_database.execute("SELECT count(*) AS n FROM pages") == [{"n": 1000}]
    # replaying older versions never regresses the rows
    stale = [[f"p{i:04d}", "uploaded", -1, 0] for i in range(1000)]
    sql_database.batch(
        insert_rows(
            "pages",
            ["id", "status", "n", "_version"],
            stale,
            suffix=upsert,
            max_parameters=sql_database.max_bound_parameters,
        )
    )
    assert sql_database.execute("SELECT DISTINCT status FROM pages") == [{"status": "queued"}]


def test_large_in_lists_take_one_parameter(sql_database: SQLDatabase) -> None:
    sql_database.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    sql_database.batch(
        insert_rows("t", ["id"], [[f"id{i}"] for i in range(300)], max_parameters=100)
    )
    condition, params = in_list("id", [f"id{i}" for i in range(0, 300, 2)] + ["nope"])
    rows = sql_database.execute(f"SELECT count(*) AS n FROM t WHERE {condition}", params)
    assert rows == [{"n": 150}]


def test_identifiers_are_validated_never_escaped() -> None:
    assert quote_identifier("page_meta") == '"page_meta"'
    for bad in ['x"; DROP TABLE t; --', "1abc", "a b", ""]:
        with pytest.raises(QueryError):
            quote_identifier(bad)
    with pytest.raises(QueryError, match="2 values for 3 columns"):
        insert_rows("t", ["a", "b", "c"], [[1, 2]])
    with pytest.raises(QueryError, match="do not fit"):
        insert_rows("t", ["a", "b"], [[1, 2]], max_parameters=1)
    with pytest.raises(QueryError, match="unsupported insert verb"):
        insert_rows("t", ["a"], [[1]], verb="DELETE FROM")
