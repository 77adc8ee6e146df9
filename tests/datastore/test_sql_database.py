"""SQLDatabase on sqlite3: file and memory."""

from __future__ import annotations

import threading

import pytest

from datastore import Conflict, IntegrityError, QueryError, SQLDatabase
from datastore.contract import Statement


@pytest.fixture
def sql(sql_database: SQLDatabase) -> SQLDatabase:
    sql_database.execute(
        "CREATE TABLE things (id TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT DEFAULT 'x')"
    )
    return sql_database


def test_is_a_sql_database(sql: SQLDatabase) -> None:
    assert isinstance(sql, SQLDatabase)


def test_execute_returns_dict_rows_and_changes(sql: SQLDatabase) -> None:
    result = sql.execute("INSERT INTO things (id, n) VALUES (?, ?), (?, ?)", ["a", 1, "b", 2])
    assert result.changes == 2
    rows = sql.execute("SELECT id, n FROM things WHERE n >= ? ORDER BY id", [1])
    assert rows == [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    assert len(rows) == 2 and rows[0]["id"] == "a"
    assert sql.execute("UPDATE things SET n = n + 1").changes == 2
    returned = sql.execute("UPDATE things SET n = 0 WHERE id = ? RETURNING id, n", ["a"])
    assert returned == [{"id": "a", "n": 0}]


def test_parameters_are_bound_never_interpolated(sql: SQLDatabase) -> None:
    hostile = "x'); DROP TABLE things; --"
    sql.execute("INSERT INTO things (id, n) VALUES (?, ?)", [hostile, 1])
    assert sql.execute("SELECT id FROM things") == [{"id": hostile}]


def test_batch_is_one_round_trip_and_atomic(sql: SQLDatabase) -> None:
    with sql.round_trips.track() as delta:
        results = sql.batch(
            [
                ("INSERT INTO things (id, n) VALUES (?, ?)", ["a", 1]),
                ("INSERT INTO things (id, n) VALUES (?, ?)", ["b", 2]),
                ("SELECT count(*) AS total FROM things", []),
            ]
        )
    assert delta.count == 1
    assert results[2] == [{"total": 2}]
    with pytest.raises(IntegrityError):
        sql.batch(
            [
                ("INSERT INTO things (id, n) VALUES (?, ?)", ["c", 3]),
                ("INSERT INTO things (id, n) VALUES (?, ?)", ["a", 9]),  # duplicate key
            ]
        )
    assert sql.execute("SELECT id FROM things ORDER BY id") == [{"id": "a"}, {"id": "b"}]
    assert sql.batch([]) == []


def test_batch_commits_only_if_before_commit_returns(sql: SQLDatabase) -> None:
    calls: list[int] = []
    insert = ("INSERT INTO things (id, n) VALUES (?, ?)", ["a", 1])
    sql.batch([insert], before_commit=lambda: calls.append(1))
    assert calls == [1]

    def refuse() -> None:
        calls.append(2)
        raise Conflict("the KV write did not land")

    another = ("INSERT INTO things (id, n) VALUES (?, ?)", ["b", 2])
    batches: list[list[Statement]] = [
        [("UPDATE things SET n = 5", [])],
        [("UPDATE things SET n = 6", []), another],
    ]
    for statements in batches:
        with sql.round_trips.track() as delta, pytest.raises(Conflict, match="did not land"):
            sql.batch(statements, idempotent=True, before_commit=refuse)
        # D1 (over REST or the gateway) holds no transaction open: it asks first
        assert delta.count == (0 if sql.backend_name in ("d1", "gateway") else 1)
    assert calls == [1, 2, 2]
    assert sql.execute("SELECT id, n FROM things") == [{"id": "a", "n": 1}]


def test_table_info(sql: SQLDatabase) -> None:
    columns = {column.name: column for column in sql.table_info("things")}
    assert list(columns) == ["id", "n", "note"]
    assert columns["id"].primary_key == 1 and columns["id"].type == "TEXT"
    assert columns["n"].notnull is True
    assert columns["note"].default == "'x'"
    assert sql.table_info("no_such_table") == []
    with pytest.raises(QueryError, match="invalid SQL identifier"):
        sql.table_info("things; DROP TABLE things")


def test_errors_are_typed(sql: SQLDatabase) -> None:
    with pytest.raises(QueryError, match="syntax error"):
        sql.execute("SELEKT 1")
    with pytest.raises(QueryError, match="no such table"):
        sql.execute("SELECT * FROM nope")
    with pytest.raises(IntegrityError, match="NOT NULL"):
        sql.execute("INSERT INTO things (id) VALUES (?)", ["z"])
    with pytest.raises(QueryError):
        sql.execute("SELECT 1; DROP TABLE things")  # one statement at a time
    with pytest.raises(QueryError):
        sql.execute("SELECT ?", [])  # wrong parameter count
    with pytest.raises(QueryError, match="sequence"):
        sql.execute("SELECT ?", "a")  # type: ignore[arg-type]
    assert sql.table_info("things")


def test_threads_share_the_database(sql: SQLDatabase) -> None:
    def insert(worker: int) -> None:
        for i in range(25):
            sql.execute("INSERT INTO things (id, n) VALUES (?, ?)", [f"{worker}-{i}", i])

    threads = [threading.Thread(target=insert, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sql.execute("SELECT count(*) AS n FROM things") == [{"n": 100}]
