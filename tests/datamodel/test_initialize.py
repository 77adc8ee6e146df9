"""initialize: tables, columns, indexes, the objects tables, seeds, the migration log."""

from __future__ import annotations

import pytest

from datamodel import Connection, SeedError, initialize
from datamodel.schema import MIGRATIONS_TABLE
from tests.datamodel.models import ALL_TEST_MODELS, Page, Plan

ENV = {"PLAN_FREE_LABEL": "Free forever", "PLAN_YEAR": "2026"}


def test_first_run_creates_everything_and_second_changes_nothing(bare_connection) -> None:
    connection: Connection = bare_connection
    report = initialize(connection, ALL_TEST_MODELS, env=ENV)
    assert set(report.tables_created) >= {"webpage_meta", "note_meta", "setting_meta", "plan_meta"}
    if connection.datastore.adapter.name == "sql":
        assert {"objects", "lists"} <= set(report.tables_created)
    assert {
        "table": "webpage_meta",
        "index": "webpage_meta__project_id__status",
    } in report.indexes_created
    assert report.columns_added == [] and report.warnings == []
    log = connection.sql.execute(f"SELECT model, change, schema_hash FROM {MIGRATIONS_TABLE}")
    assert {"model": "WEBPAGE", "change": "create_table"} in [
        {"model": row["model"], "change": row["change"]} for row in log
    ]
    assert all(len(row["schema_hash"]) == 16 for row in log)

    again = initialize(connection, ALL_TEST_MODELS, env=ENV)
    assert again.changed is False
    assert again.statements == [] and again.tables_created == []
    assert [seed["records"] for seed in again.seeds_run] == [0, 0, 0]
    assert len(connection.sql.execute(f"SELECT id FROM {MIGRATIONS_TABLE}")) == len(log)
    # the tables work
    Page.objects.auth("u1", using=connection).create(project_id="p", url="https://e.com")


def test_dry_run_changes_nothing(bare_connection) -> None:
    connection: Connection = bare_connection
    report = initialize(connection, [Page], dry_run=True)
    assert report.dry_run and "webpage_meta" in report.tables_created
    assert any(
        statement.startswith('CREATE TABLE IF NOT EXISTS "webpage_meta"')
        for statement in report.statements
    )
    assert connection.sql.table_info("webpage_meta") == []
    assert connection.sql.table_info(MIGRATIONS_TABLE) == []


def test_new_columns_and_indexes_are_added_old_ones_reported(bare_connection) -> None:
    connection: Connection = bare_connection
    connection.sql.batch(
        [
            (
                'CREATE TABLE "webpage_meta" ("page_id" TEXT PRIMARY KEY NOT NULL, '
                '"project_id" TEXT, "status" INTEGER, "legacy" TEXT, "_version" INTEGER)',
                [],
            ),
            (
                'INSERT INTO "webpage_meta" ("page_id", "project_id", "_version") VALUES (?, ?, ?)',
                ["x", "p", 1],
            ),
        ]
    )
    report = initialize(connection, [Page])
    added = {change["column"] for change in report.columns_added}
    assert {"url", "title", "user_id", "created_at", "deleted_at", "_auth"} <= added
    assert "status" not in added
    assert any("webpage_meta.status is INTEGER" in warning for warning in report.warnings)
    assert any("webpage_meta.legacy is not a sync field" in warning for warning in report.warnings)
    columns = {column.name for column in connection.sql.table_info("webpage_meta")}
    assert "legacy" in columns and "url" in columns  # nothing dropped
    assert connection.sql.execute('SELECT page_id FROM "webpage_meta"') == [{"page_id": "x"}]
    assert {"table": "webpage_meta", "index": "webpage_meta__user_id__created_at__page_id"} in (
        report.indexes_created
    )


def test_seeds(bare_connection) -> None:
    connection: Connection = bare_connection
    initialize(connection, [Plan], env=ENV)
    plans = Plan.objects.system(using=connection)
    assert plans.get("free").get("label") == "Free forever"
    assert plans.get("starter").get("label") == "Starter"
    assert plans.get("pro").get("label") == "Pro 2026"
    free = plans.get("free")
    free.set("label", "changed by an admin")
    free.save()
    initialize(connection, [Plan], env={**ENV, "PLAN_YEAR": "2027"})
    assert plans.get("free").get("label") == "changed by an admin"  # if_missing: kept
    assert plans.get("pro").get("label") == "Pro 2027"  # always: updated
    assert plans.count() == 3


def test_a_missing_environment_variable_is_named() -> None:
    from datamodel.seeds import substitute

    with pytest.raises(SeedError, match="environment variable PLAN_FREE_LABEL is not set"):
        substitute({"label": "${PLAN_FREE_LABEL}"}, {})
    with pytest.raises(SeedError, match="needs key"):
        from datamodel import Seed

        Seed("if_missing", {"a": 1})
