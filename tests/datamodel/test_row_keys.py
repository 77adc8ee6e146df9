"""A key pattern of several fields may leave out the primary key: the primary key is then the
object's KV id, so the metadata table keys each object by what KV keys it by."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from datamodel import (
    Connection,
    DataModel,
    DeclarationError,
    create_tables,
    fields,
    initialize,
    registry,
    verify,
)
from datastore import Datastore, Routing
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from datastore.routing import DEFAULT_CLASS_NAMESPACES


class Run(DataModel):
    """``run:{team}:{run_id}``: a run id repeats across teams."""

    row_key = fields.String(primary_key=True)
    team = fields.String(required=True)
    run_id = fields.String(required=True)
    note = fields.String()

    class Meta:
        name = "TESTRUN"
        namespace = "NIMBUS_RUNS"
        key_pattern = "run:{team}:{run_id}"
        table = "testrun_meta"
        sync_fields = ["note"]


registry.unregister("TESTRUN")  # declared for these tests only


@pytest.fixture
def runs() -> Iterator[Connection]:
    sql = MemorySQLDatabase()
    routing = Routing(classes={**DEFAULT_CLASS_NAMESPACES, "run": "NIMBUS_RUNS"})
    datastore = Datastore(MemoryKVStore(), sql=sql, routing=routing)
    create_tables(sql, [Run])
    yield Connection(datastore, sql)
    datastore.close()


def test_objects_with_one_run_id_in_two_teams_each_have_their_row(runs: Connection) -> None:
    first = Run.objects.auth("u1", using=runs).create(team="a", run_id="r1", note="a's")
    Run.objects.auth("u2", using=runs).create(team="b", run_id="r1", note="b's")
    assert first.pk == "a:r1"
    notes = Run.objects.auth("u1", using=runs).query().values_list("note", flat=True)
    assert notes.list().data == ["a's"]
    assert Run.objects.auth("u2", using=runs).get("b:r1").get("note") == "b's"
    first.set("note", "changed")
    first.save()
    assert verify(runs, Run).drift == 0


def test_objects_stored_before_the_key_was_declared_are_rebuilt_and_saved(
    runs: Connection,
) -> None:
    stored = {"team": "c", "run_id": "r9", "user_id": "u9", "_version": 1}
    runs.datastore.system().put("run", "c:r9", stored, auth=["u9"])
    report = verify(runs, Run, repair=True)
    assert (report.missing, report.repaired) == (1, 1)
    assert verify(runs, Run).drift == 0
    old = Run.objects.system(using=runs).get("c:r9")
    old.set("note", "saved again")
    old.save()
    assert old.pk == "c:r9" and verify(runs, Run).drift == 0


def test_a_primary_key_outside_the_key_pattern_is_declared_with_care() -> None:
    with pytest.raises(DeclarationError, match="must contain the primary key"):
        type(
            "Lone",
            (DataModel,),
            {
                "row_key": fields.String(primary_key=True),
                "name": fields.String(required=True),
                "Meta": type("Meta", (), {"namespace": "NIMBUS_RUNS", "key_pattern": "l:{name}"}),
            },
        )
    with pytest.raises(DeclarationError, match="it takes no generator"):
        type(
            "Generated",
            (DataModel,),
            {
                "row_key": fields.String(primary_key=True, generator=lambda: "x"),
                "a": fields.String(required=True),
                "b": fields.String(required=True),
                "Meta": type("Meta", (), {"namespace": "NIMBUS_RUNS", "key_pattern": "g:{a}:{b}"}),
            },
        )


def test_a_table_keyed_by_another_column_is_reported_not_altered(runs: Connection) -> None:
    runs.sql.execute("DROP TABLE testrun_meta")
    runs.sql.execute('CREATE TABLE testrun_meta ("run_id" TEXT PRIMARY KEY, "team" TEXT)')
    report = initialize(runs, [Run], seeds=False)
    assert any("primary key is run_id in the database but row_key" in w for w in report.warnings)
    assert [c.name for c in runs.sql.table_info("testrun_meta")] == ["run_id", "team"]
    runs.sql.execute("DROP TABLE testrun_meta")  # as the warning says: then initialize, repair
    initialize(runs, [Run], seeds=False)
    runs.datastore.system().put("run", "c:r9", {"team": "c", "run_id": "r9", "_version": 1})
    assert verify(runs, Run, repair=True).repaired == 1
