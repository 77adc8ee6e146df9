"""initialize: tables, columns, indexes, the objects tables, seeds, the migration log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datamodel import Connection, DataModel, SeedError, fields, ids, initialize, registry
from datamodel.schema import MIGRATIONS_TABLE, schema_hash
from datastore import IntegrityError
from tests.datamodel.models import ALL_TEST_MODELS, Member, Page, Plan

ENV = {"PLAN_FREE_LABEL": "Free forever", "PLAN_YEAR": "2026"}
MEMBER_META = {"name": "MEMBER", "namespace": "NIMBUS_MEMBERS", "table": "member_meta"}
Declare = Callable[..., type[DataModel]]


@pytest.fixture
def redeclare() -> Iterator[Declare]:
    """Declare another version of MEMBER, as an edited models.py would (same name, table and
    KV class): ``redeclare(meta, email=fields.String(unique=True))`` replaces or adds fields.
    The original class is registered again after the test."""

    def declare(meta: dict[str, Any] | None = None, **changed: Any) -> type[DataModel]:
        registry.unregister("MEMBER")
        model_fields: dict[str, Any] = {
            "member_id": fields.String(primary_key=True, generator=ids.uuid4),
            "team_id": fields.String(required=True),
            "email": fields.String(),
            "handle": fields.String(),
            "seat": fields.Integer(),
            "bio": fields.Text(),
            **changed,
        }
        attrs = {name: value for name, value in model_fields.items() if value is not None}
        attrs["Meta"] = type("Meta", (), {**MEMBER_META, **(meta or {})})
        return type("Member", (DataModel,), attrs)

    yield declare
    registry.unregister("MEMBER")
    registry.register(Member)


def member_row(sql: Any, member_id: str, **values: Any) -> None:
    """A metadata row written by hand (as an older save, or another writer, left it)."""
    columns = ["member_id", "_version", *values]
    sql.execute(
        f"INSERT INTO member_meta ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [member_id, 1, *values.values()],
    )


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


def test_unique_constraints_get_unique_indexes(bare_connection: Connection) -> None:
    connection, sql = bare_connection, bare_connection.sql
    report = initialize(connection, [Member])
    assert {
        "member_meta__uniq__email",
        "member_meta__uniq_live__handle",
        "member_meta__uniq__team_id__seat",
    } <= {index["index"] for index in report.indexes_created}
    member_row(sql, "m1", email="a@e.com", handle="ann", team_id="t", seat=1)
    member_row(sql, "m2", email="b@e.com", handle="ann", team_id="t", deleted_at="2026-01-01")
    member_row(sql, "m3", team_id="t")
    member_row(sql, "m4", team_id="t")  # NULLs repeat, as in SQL
    with pytest.raises(IntegrityError):  # a deleted member keeps its email
        member_row(sql, "m5", email="b@e.com")
    with pytest.raises(IntegrityError):  # but releases its handle: a live one still conflicts
        member_row(sql, "m5", handle="ann")
    with pytest.raises(IntegrityError):
        member_row(sql, "m5", team_id="t", seat=1)
    assert initialize(connection, [Member]).changed is False


def test_the_schema_hash_covers_unique_constraints_only_where_declared(redeclare) -> None:
    assert schema_hash(Page._meta) == "b762a9d46d7ecec2"  # as before unique constraints existed
    declared = schema_hash(Member._meta)
    assert schema_hash(redeclare()._meta) != declared
    released = redeclare(
        {"unique_together": [("team_id", "seat")]},
        email=fields.String(unique=True),
        handle=fields.String(unique=True),
    )
    assert schema_hash(released._meta) != declared  # the handle is no longer released on delete


def test_a_unique_index_no_longer_declared_is_dropped(bare_connection, redeclare) -> None:
    connection = bare_connection
    initialize(connection, [Member])
    kept = redeclare(
        {"unique_together": [("team_id", "seat")]},
        email=fields.String(),
        handle=fields.String(unique=True),  # kept by deleted members from now on
    )
    report = initialize(connection, [kept])
    assert report.indexes_dropped == [
        {"table": "member_meta", "index": "member_meta__uniq__email"},
        {"table": "member_meta", "index": "member_meta__uniq_live__handle"},
    ]
    assert report.indexes_created == [
        {"table": "member_meta", "index": "member_meta__uniq__handle"}
    ]
    member_row(connection.sql, "m1", email="a@e.com")
    member_row(connection.sql, "m2", email="a@e.com")  # no longer refused by the table
    assert initialize(connection, [kept]).changed is False
