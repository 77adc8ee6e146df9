"""initialize: tables, columns, indexes, the objects tables, seeds, the migration log."""

from __future__ import annotations

import pytest

from datamodel import Connection, DataModel, Seed, SeedError, fields, ids, initialize, registry
from datamodel.schema import MIGRATIONS_TABLE
from tests.datamodel.conftest import MODEL_BACKENDS, make_connection
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


def test_an_always_seed_without_a_key_is_refused_at_declaration() -> None:
    # without a key every run would add the object again
    with pytest.raises(SeedError, match=r"an 'always' seed needs key=\[\.\.\.\]"):
        Seed("always", {"code": "pro"})


def declare_tip() -> type[DataModel]:
    """Generated primary keys: seeds can only find their objects again by ``key`` or emptiness."""

    class Tip(DataModel):
        tip_id = fields.String(primary_key=True, generator=ids.uuid4)
        slug = fields.String(required=True)
        text = fields.String()

        class Meta:
            name = "TIP"
            namespace = "NIMBUS_NOTES"  # a namespace every test store has
            table = "tip_meta"
            sync_fields = ["slug"]
            user_tracking = False
            seeds = [
                Seed("if_empty", {"slug": "welcome", "text": "Hello"}),
                Seed("if_empty", {"slug": "tour", "text": "Look around"}),
                Seed("if_missing", {"slug": "help", "text": "Ask"}, key=["slug"]),
                Seed("always", {"slug": "news", "text": "${TIP_NEWS}"}, key=["slug"]),
            ]

    return Tip


@pytest.mark.parametrize("backend", MODEL_BACKENDS)
def test_every_seed_condition_adds_nothing_on_later_runs(backend: str, tmp_path, request) -> None:
    tip = declare_tip()
    try:
        connection = make_connection(backend, tmp_path, request)
        runs = [
            initialize(connection, [Plan, tip], env={**ENV, "TIP_NEWS": news})
            for news in ("v1", "v1", "v2")
        ]
        written = [[seed["records"] for seed in report.seeds_run] for report in runs]
        assert written == [
            [1, 1, 1, 1, 1, 1, 1],
            [0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],  # the 'always' seed updates the object it wrote
        ]
        tips = tip.objects.system(using=connection)
        assert Plan.objects.system(using=connection).count() == 3
        assert tips.count() == 4
        news = tips.query().where("slug", "news").first()
        assert tips.get(news["tip_id"]).get("text") == "v2"
        connection.datastore.close()
    finally:
        registry.unregister("TIP")
