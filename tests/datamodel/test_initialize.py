"""initialize: tables, columns, indexes, the objects tables, seeds, the migration log."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datamodel import (
    Connection,
    DataModel,
    Scope,
    Seed,
    SeedError,
    fields,
    ids,
    initialize,
    registry,
)
from datamodel.schema import MIGRATIONS_TABLE, find_duplicates, schema_hash
from datastore import IntegrityError, Unavailable
from tests.datamodel.conftest import MODEL_BACKENDS, make_connection
from tests.datamodel.models import (
    ALL_TEST_MODELS,
    Member,
    Page,
    Plan,
    redeclare_member,
    restore_member,
)

ENV = {"PLAN_FREE_LABEL": "Free forever", "PLAN_YEAR": "2026"}
Declare = Callable[..., type[DataModel]]


@pytest.fixture
def redeclare() -> Iterator[Declare]:
    """``redeclare(meta, **fields)``: another version of MEMBER for the test's duration."""
    yield redeclare_member
    restore_member()


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


def emails(connection: Connection) -> dict[str, str | None]:
    rows = connection.sql.execute("SELECT member_id, email FROM member_meta")
    return {row["member_id"]: row["email"] for row in rows}


def logged(connection: Connection, change: str) -> list[str]:
    rows = connection.sql.execute(
        f"SELECT detail FROM {MIGRATIONS_TABLE} WHERE change = ? ORDER BY id", [change]
    )
    return [row["detail"] for row in rows]


def test_a_new_sync_field_is_backfilled_from_kv(bare_connection, redeclare) -> None:
    connection: Connection = bare_connection
    before = redeclare()
    initialize(connection, [before])
    members = before.objects.auth("u1", using=connection)
    ann = members.create(team_id="t", email="ann@e.com")
    nobody = members.create(team_id="t")
    gone = members.create(team_id="t", email="gone@e.com")
    gone.delete()

    after = redeclare({"sync_fields": ["email"]})
    report = initialize(connection, [after])
    assert report.columns_added == [{"table": "member_meta", "column": "email"}]
    assert report.backfills == [
        {
            "model": "MEMBER",
            "table": "member_meta",
            "columns": ["email"],
            "objects": 3,
            "progress": [3],
        }
    ]
    assert emails(connection) == {ann.pk: "ann@e.com", nobody.pk: None, gone.pk: "gone@e.com"}
    found = after.objects.system(using=connection).query().where("email", "ann@e.com").list()
    assert [row["member_id"] for row in found.data] == [ann.pk]  # the new filter finds old objects
    assert logged(connection, "backfill") == ["email"]

    again = initialize(connection, [after])
    assert again.changed is False and again.backfills == [] and again.statements == []


def test_a_dry_run_counts_the_objects_a_backfill_would_write(bare_connection, redeclare) -> None:
    connection: Connection = bare_connection
    before = redeclare()
    initialize(connection, [before])
    before.objects.auth("u1", using=connection).bulk_create([{"team_id": "t"} for _ in range(7)])
    report = initialize(connection, [redeclare({"sync_fields": ["email"]})], dry_run=True)
    assert report.backfills == [
        {
            "model": "MEMBER",
            "table": "member_meta",
            "columns": ["email"],
            "objects": 7,
            "progress": [],
        }
    ]
    assert "email" not in {column.name for column in connection.sql.table_info("member_meta")}
    assert logged(connection, "backfill") == []


def test_an_interrupted_backfill_is_resumed_by_the_next_run(
    bare_connection, redeclare, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection: Connection = bare_connection
    before = redeclare()
    initialize(connection, [before])
    created = before.objects.auth("u1", using=connection).bulk_create(
        [{"team_id": "t", "email": f"m{n}@e.com"} for n in range(25)]
    )
    after = redeclare({"sync_fields": ["email"]})
    monkeypatch.setattr(sys.modules["datamodel.initialize"], "PROGRESS_EVERY", 10)

    def interrupt(model: str, done: int) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C after the first batch

    with pytest.raises(KeyboardInterrupt):
        initialize(connection, [after], batch_size=10, backfill_progress=interrupt)
    assert 0 < sum(email is not None for email in emails(connection).values()) < 25
    assert logged(connection, "add_column") == ["email"] and logged(connection, "backfill") == []

    report = initialize(connection, [after], batch_size=10)
    assert report.columns_added == [] and report.backfills[0]["objects"] == 25
    assert emails(connection) == {member.pk: member.get("email") for member in created}
    assert initialize(connection, [after]).changed is False


# Not on the local Cloudflare API: 2,500 objects take it some 15 s; the backfill tests above
# run there.
@pytest.mark.parametrize(
    "bare_connection", ["memory", "sqlite", "redis", "sql-adapter"], indirect=True
)
def test_a_backfill_streams_in_batches_and_reports_every_thousand(
    bare_connection, redeclare
) -> None:
    connection: Connection = bare_connection
    before = redeclare()
    initialize(connection, [before])
    before.objects.auth("u1", using=connection).bulk_create(
        [{"team_id": "t", "email": f"m{n}@e.com"} for n in range(2500)]
    )
    after = redeclare({"sync_fields": ["email"]})
    events: list[tuple[str, int]] = []
    with connection.sql.round_trips.track() as sql_trips:
        report = initialize(
            connection, [after], batch_size=500, backfill_progress=lambda *e: events.append(e)
        )
    spent = sql_trips.count  # a delta counts until it is read
    with connection.sql.round_trips.track() as scanning:  # the same pages again, to count them
        store = Scope(connection, None).store(after._meta)
        pages = [len(batch) for batch in store.scan("MEMBER", batch_size=500)]
    scan_trips = scanning.count
    assert sum(pages) == 2500 and max(pages) <= 500
    with connection.sql.round_trips.track() as nothing_to_do:
        assert initialize(connection, [after]).changed is False
    # what a run with nothing to do reads, the ALTER with its log entry, one upsert round trip
    # per page of objects (and with the SQL adapter the objects' own reads, from the same
    # database), and the backfill's log entry
    assert spent == nothing_to_do.count + 1 + len(pages) + scan_trips + 1
    counts = [done for _, done in events]
    assert [name for name, _ in events] == ["MEMBER"] * 3
    assert [done // 1000 for done in counts] == [1, 2, 2] and counts[-1] == 2500
    if pages == [500] * 5:  # every store but Redis, whose SCAN pages vary in size
        assert counts == [1000, 2000, 2500]
    assert report.backfills[0]["progress"] == counts
    assert connection.sql.execute(
        "SELECT count(*) AS n FROM member_meta WHERE email IS NOT NULL"
    ) == [{"n": 2500}]


def test_a_unique_index_over_duplicates_is_refused_and_they_are_listed(
    bare_connection, redeclare
) -> None:
    connection: Connection = bare_connection
    before = redeclare({"sync_fields": ["email"]})
    initialize(connection, [before])
    members = before.objects.auth("u1", using=connection)
    a = [members.create(team_id="t", email="a@e.com") for _ in range(2)]
    b = [members.create(team_id="t", email="b@e.com") for _ in range(3)]
    b[2].delete()  # a deleted member keeps its email
    members.create(team_id="t", email="c@e.com")
    members.create(team_id="t")
    members.create(team_id="t")  # NULLs repeat freely

    after = redeclare({"sync_fields": ["handle"]}, email=fields.String(unique=True))
    expected = {
        "model": "MEMBER",
        "table": "member_meta",
        "index": "member_meta__uniq__email",
        "fields": ["email"],
        "duplicates": 2,
        "groups": [
            {"values": {"email": "a@e.com"}, "ids": sorted(m.pk for m in a), "count": 2},
            {"values": {"email": "b@e.com"}, "ids": sorted(m.pk for m in b), "count": 3},
        ],
    }
    preview = initialize(connection, [after], dry_run=True)
    assert [{k: v for k, v in r.items() if k != "hint"} for r in preview.refused] == [expected]

    report = initialize(connection, [after])
    [refused] = report.refused
    assert {k: v for k, v in refused.items() if k != "hint"} == expected
    assert "nimbus_initialize" in refused["hint"] and "nimbus_sync" in refused["hint"]
    assert report.columns_added == [{"table": "member_meta", "column": "handle"}]  # applied
    assert report.indexes_created == []
    indexes = connection.sql.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    assert "member_meta__uniq__email" not in {row["name"] for row in indexes}
    assert initialize(connection, [after]).refused[0]["duplicates"] == 2  # refused until fixed

    for member, email in ((a[1], "a2@e.com"), (b[1], "b2@e.com"), (b[2], "b3@e.com")):
        member.set("email", email)
        member.save()
    fixed = initialize(connection, [after])
    assert fixed.refused == []
    assert fixed.indexes_created == [{"table": "member_meta", "index": "member_meta__uniq__email"}]


def test_a_unique_constraint_added_to_old_objects_claims_their_values(
    bare_connection, redeclare
) -> None:
    """Objects stored before ``unique=True`` hold no reservation: initialize claims theirs
    when it creates the index, so an old value refuses a new object in KV, not at the row."""
    from datamodel import IntegrityError

    connection: Connection = bare_connection
    before = redeclare({"sync_fields": ["email"]})
    initialize(connection, [before])
    old = before.objects.auth("u1", using=connection)
    kept = [old.create(team_id="t", email=f"{n}@e.com") for n in range(3)]
    old.create(team_id="t")  # no email: nothing to claim

    after = redeclare({"sync_fields": ["email"]}, email=fields.String(unique=True))
    report = initialize(connection, [after])
    assert report.refused == []
    assert report.claimed == [{"model": "MEMBER", "constraint": "email", "objects": 3}]
    members = after.objects.auth("u2", using=connection)
    with pytest.raises(IntegrityError, match=r"email='1@e\.com'"):
        members.create(team_id="t", email="1@e.com")
    assert members.count() == 0
    moved = after.objects.auth("u1", using=connection).get(kept[1].pk)
    moved.set("email", "new@e.com")
    moved.save()  # its old value is released with the move
    members.create(team_id="t", email="1@e.com")
    assert initialize(connection, [after]).claimed == []  # nothing left to claim


def test_duplicates_are_listed_within_bounds(memory_connection: Connection, redeclare) -> None:
    connection = memory_connection
    model = redeclare({"sync_fields": ["email"]})
    initialize(connection, [model])
    rows = [(f"m{n:03d}", f"{n % 25:02d}@e.com") for n in range(50)]  # 25 values twice
    rows += [(f"x{n:02d}", "many@e.com") for n in range(12)]
    for member_id, email in rows:
        member_row(connection.sql, member_id, email=email)
    unique = redeclare(email=fields.String(unique=True))._meta.unique_constraints[0]
    duplicates = find_duplicates(connection.sql, model._meta, unique, limit=20, ids_per_group=10)
    assert duplicates.total == 26 and len(duplicates.groups) == 20
    assert duplicates.groups[0].values == {"email": "00@e.com"}
    assert duplicates.groups[0].ids == ["m000", "m025"]
    assert not any(group.values["email"] == "many@e.com" for group in duplicates.groups)
    last = find_duplicates(connection.sql, model._meta, unique, limit=30, ids_per_group=10)
    many = last.groups[-1]
    assert (many.values, many.count, len(many.ids)) == ({"email": "many@e.com"}, 12, 10)


def test_a_backfill_stopped_by_a_unique_index_says_what_to_run(
    memory_connection: Connection, redeclare
) -> None:
    connection = memory_connection
    unique = redeclare(email=fields.String(unique=True))
    initialize(connection, [unique])
    first = unique.objects.auth("u1", using=connection).create(team_id="t", email="a@e.com")
    twin = {**first.get_data(), "member_id": "twin"}  # a duplicate that slipped into KV
    connection.datastore.system().put("MEMBER", "twin", twin)
    evolved = redeclare({"sync_fields": ["handle"]}, email=fields.String(unique=True))
    with pytest.raises(
        IntegrityError, match=r"backfilling member_meta from KV stopped.*nimbus_sync"
    ):
        initialize(connection, [evolved])
    assert logged(connection, "backfill") == []  # resumed by the next run, once resolved


def by_hand(warning: str) -> list[str]:
    """The statements a warning tells the operator to run (between backticks)."""
    [sql] = [part for part in warning.split("`")[1::2] if "DROP" in part]
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


def test_a_renamed_field_is_reported_with_what_to_run(bare_connection, redeclare) -> None:
    connection: Connection = bare_connection
    before = redeclare({"sync_fields": ["email"], "indexes": [("email",)]})
    initialize(connection, [before])
    old = before.objects.auth("u1", using=connection).create(team_id="t", email="old@e.com")

    renamed = redeclare({"sync_fields": ["mail"], "indexes": [("mail",)]}, mail=fields.String())
    report = initialize(connection, [renamed])
    [warning] = report.warnings
    assert warning.startswith("member_meta.email is not a sync field of MEMBER (removed or")
    assert "declare the new name as a sync field and run `manage.py nimbus_initialize`" in warning
    assert by_hand(warning) == [
        'DROP INDEX IF EXISTS "member_meta__email"',
        'ALTER TABLE "member_meta" DROP COLUMN "email"',
    ]
    assert report.columns_added == [{"table": "member_meta", "column": "mail"}]
    assert report.backfills[0]["columns"] == ["mail"]
    new = renamed.objects.auth("u1", using=connection).create(team_id="t", mail="new@e.com")
    assert emails(connection) == {old.pk: "old@e.com", new.pk: None}  # the old column

    for statement in by_hand(warning):
        connection.sql.execute(statement)
    again = initialize(connection, [renamed])
    assert again.warnings == [] and again.changed is False


def test_a_retyped_field_is_reported_with_what_to_run(bare_connection, redeclare) -> None:
    connection: Connection = bare_connection
    before = redeclare({"sync_fields": ["seat"]})
    initialize(connection, [before])
    member = before.objects.auth("u1", using=connection).create(team_id="t", seat=7)

    retyped = redeclare({"sync_fields": ["seat"]}, seat=fields.String())
    [warning] = initialize(connection, [retyped]).warnings
    assert warning.startswith("member_meta.seat is INTEGER in the database but TEXT in MEMBER")
    assert "it adds the column as TEXT and backfills it from KV" in warning
    for statement in by_hand(warning):
        connection.sql.execute(statement)
    report = initialize(connection, [retyped])
    assert report.columns_added == [{"table": "member_meta", "column": "seat"}]
    assert report.backfills[0]["objects"] == 1 and report.warnings == []
    [column] = [c for c in connection.sql.table_info("member_meta") if c.name == "seat"]
    assert column.type == "TEXT"
    [row] = connection.sql.execute("SELECT member_id, seat FROM member_meta")
    # the value KV holds, as text now (D1 binds every number as a REAL: "7.0")
    assert row["member_id"] == member.pk and row["seat"] in ("7", "7.0")


class PartialBatches:
    """A SQL database whose batches, like D1's over the REST API, are not promised to be one
    transaction: each statement commits on its own. While ``stop_at`` is set, the first batch
    that changes the schema stops with an error after ``stop_at`` of its statements committed
    (the rest never run)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stop_at: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def batch(self, statements: Any, **options: Any) -> list[Any]:
        stop_at = self.stop_at
        if stop_at is not None and any("ALTER TABLE" in sql for sql, _ in statements):
            self.stop_at = None  # once
        else:
            stop_at = None
        results = []
        for index, statement in enumerate(statements):
            if index == stop_at:
                raise Unavailable("the batch stopped part way (its first statements committed)")
            results.append(self.inner.execute(*statement))
        return results

    def execute(self, sql: str, params: Any = (), **options: Any) -> Any:
        return self.batch([(sql, params)])[0]


@pytest.mark.parametrize("commit", [0, 1, 2, 3])
def test_schema_changes_stopped_part_way_are_completed_by_the_next_run(
    memory_connection: Connection, redeclare, commit: int
) -> None:
    """Over D1's REST API a batch may commit its first statements and not the rest: whatever
    part of a change and its log entries landed, the next run completes the change, and the
    new column is backfilled (the log says a column was added before the column is)."""
    sql = PartialBatches(memory_connection.sql)
    connection = Connection(memory_connection.datastore, sql)  # type: ignore[arg-type]
    before = redeclare()
    initialize(connection, [before])
    member = before.objects.auth("u1", using=connection).create(team_id="t", email="a@e.com")
    after = redeclare({"sync_fields": ["email", "handle"]})  # two columns, two log entries
    sql.stop_at = commit
    with pytest.raises(Unavailable, match="part way"):
        initialize(connection, [after])
    initialize(connection, [after])
    assert emails(connection) == {member.pk: "a@e.com"}  # added and backfilled
    assert {"email", "handle"} <= {column.name for column in sql.table_info("member_meta")}
    assert initialize(connection, [after]).changed is False
