"""verify/repair: KV is the source of truth and every drift is found and fixed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datamodel import Connection, DataModel, SyncError, fields, initialize, verify
from datastore import Datastore
from tests.datamodel.conftest import routing
from tests.datamodel.models import Member, Page, redeclare_member, restore_member
from tests.support import FaultyStore


def test_a_failed_metadata_write_is_repaired_from_kv(connection: Connection) -> None:
    faulty = FaultyStore(connection.sql)
    broken = Connection(connection.datastore, faulty)
    pages = Page.objects.auth("u1", using=broken)
    kept = pages.create(project_id="p", url="https://e.com/kept", content="<p>kept</p>")
    faulty.failing = {"batch"}
    with pytest.raises(SyncError, match="nimbus_sync --repair"):
        pages.create(project_id="p", page_id="lost_row", url="https://e.com/x", content="<p>x</p>")
    kept.set("title", "updated in KV only")
    with pytest.raises(SyncError):
        kept.save()
    faulty.failing = set()

    report = verify(connection, Page)
    assert (report.checked, report.missing, report.stale, report.orphans) == (2, 1, 1, 0)
    assert report.repaired == 0  # verify alone changes nothing

    fixed = verify(connection, Page, repair=True)
    assert fixed.repaired == 2
    clean = verify(connection, Page)
    assert clean.drift == 0 and clean.checked == 2
    rows = Page.objects.auth("u1", using=connection).query().order_by("page_id").list().data
    assert [(row["page_id"], row["title"]) for row in rows] == [
        (kept.pk, "updated in KV only"),
        ("lost_row", None),
    ]
    assert (
        Page.objects.auth("u1", using=connection)
        .get(project_id="p", page_id="lost_row")
        .get("content")
        == "<p>x</p>"
    )


def test_orphans_and_rows_ahead_of_kv(connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=connection)
    page = pages.create(project_id="p", url="https://e.com/a")
    connection.sql.execute(
        'INSERT INTO webpage_meta (page_id, project_id, url, user_id, "_version") '
        "VALUES (?, ?, ?, ?, ?)",
        ["ghost", "p", "https://e.com/ghost", "u1", 3],
    )
    connection.sql.execute(
        "UPDATE webpage_meta SET title = ?, _version = 9 WHERE page_id = ?", ["bogus", page.pk]
    )
    report = verify(connection, Page, repair=True)
    assert (report.stale, report.orphans, report.repaired) == (1, 1, 2)
    assert verify(connection, Page).drift == 0
    assert connection.sql.execute("SELECT page_id, title, _version FROM webpage_meta") == [
        {"page_id": page.pk, "title": None, "_version": 1}
    ]


def test_verify_streams_in_batches(memory_connection: Connection) -> None:
    pages = Page.objects.auth("u1", using=memory_connection)
    pages.bulk_create([{"project_id": "p", "url": f"https://e.com/{i}"} for i in range(23)])
    memory_connection.sql.execute("DELETE FROM webpage_meta")
    seen: list[int] = []
    report = verify(
        memory_connection,
        Page,
        repair=True,
        batch_size=5,
        progress=lambda r: seen.append(r.checked),
    )
    assert report.missing == 23 and report.repaired == 23
    assert seen[:5] == [5, 10, 15, 20, 23]
    assert verify(memory_connection, Page).drift == 0


def test_kv_failure_leaves_nothing_to_repair(memory_connection: Connection) -> None:
    faulty = FaultyStore(memory_connection.datastore.kv)
    broken = Connection(Datastore(faulty, routing=routing()), memory_connection.sql)
    faulty.failing = {"put", "put_many"}
    with pytest.raises(Exception, match="injected failure"):
        Page.objects.auth("u1", using=broken).create(project_id="p", url="https://e.com")
    assert verify(memory_connection, Page).drift == 0


@pytest.fixture
def members(bare_connection: Connection) -> Connection:
    """Every backend, with MEMBER's table (and its unique indexes) created."""
    initialize(bare_connection, [Member], seeds=False)
    return bare_connection


def slip_into_kv(connection: Connection, member_id: str, **values: Any) -> None:
    """Write a MEMBER object to KV only, past the model layer and its unique constraints: as a
    concurrent write on a store without compare-and-set can leave it."""
    data: dict[str, Any] = {"member_id": member_id, "team_id": "t", "user_id": "u1"}
    data |= {"_auth": ["u1"], "_version": 1, **values}
    connection.datastore.system().put("MEMBER", member_id, data)


def member_rows(connection: Connection) -> dict[str, Any]:
    rows = connection.sql.execute("SELECT member_id, email FROM member_meta")
    return {row["member_id"]: row["email"] for row in rows}


def test_a_duplicate_that_slipped_into_kv_is_reported_and_left_to_decide(
    members: Connection,
) -> None:
    connection = members
    ann = Member.objects.auth("u1", using=connection).create(team_id="t", email="a@e.com")
    slip_into_kv(connection, "twin", email="a@e.com")  # its row would break the unique index
    slip_into_kv(connection, "solo", email="s@e.com")  # a plain missing row

    report = verify(connection, Member)
    assert (report.missing, report.stale, report.orphans) == (1, 0, 0)  # solo only
    assert report.duplicates == 1 and report.drift == 2 and report.repairable == 1
    assert report.duplicate_values == [
        {"constraint": "email", "values": {"email": "a@e.com"}, "ids": sorted([ann.pk, "twin"])}
    ]
    assert "decide which object keeps each value" in report.to_json()["duplicates_hint"]

    fixed = verify(connection, Member, repair=True)
    assert fixed.repaired == 1 and fixed.repaired == fixed.repairable  # what it reported
    assert member_rows(connection) == {ann.pk: "a@e.com", "solo": "s@e.com"}
    assert Member.objects.system(using=connection).get("twin").get("email") == "a@e.com"
    again = verify(connection, Member, repair=True)
    assert (again.repairable, again.duplicates, again.repaired) == (0, 1, 0)


def test_a_stale_row_holding_a_value_gives_it_to_the_object_that_has_it(
    members: Connection,
) -> None:
    connection = members
    member_ids = ("m1", "m2", "m3", "m4")
    for member_id in member_ids:
        Member.objects.auth("u1", using=connection).create(
            member_id=member_id, team_id="t", email=f"{member_id}@e.com"
        )
    # Saves whose rows were not written: m1 and m2 swapped emails, m3 moved to a new one
    # and m4's old email went to a new member, m0.
    slip_into_kv(connection, "m1", email="m2@e.com", _version=2)
    slip_into_kv(connection, "m2", email="m1@e.com", _version=2)
    slip_into_kv(connection, "m3", email="new@e.com", _version=2)
    slip_into_kv(connection, "m0", email="m3@e.com")

    report = verify(connection, Member)
    assert (report.missing, report.stale, report.duplicates) == (1, 3, 0)
    fixed = verify(connection, Member, repair=True)
    assert fixed.repaired == 4
    assert member_rows(connection) == {
        "m0": "m3@e.com",
        "m1": "m2@e.com",
        "m2": "m1@e.com",
        "m3": "new@e.com",
        "m4": "m4@e.com",
    }
    assert verify(connection, Member).drift == 0


@pytest.fixture
def redeclare() -> Iterator[Callable[..., type[DataModel]]]:
    yield redeclare_member
    restore_member()


def test_duplicates_in_a_table_without_its_unique_index_are_reported(
    memory_connection: Connection, redeclare
) -> None:
    connection = memory_connection
    plain = redeclare({"sync_fields": ["email"]})
    initialize(connection, [plain])
    created = [
        plain.objects.auth("u1", using=connection).create(team_id="t", email="a@e.com")
        for _ in range(3)
    ]
    unique = redeclare(email=fields.String(unique=True))
    assert initialize(connection, [unique]).refused  # the index waits for a decision
    report = verify(connection, unique, repair=True)
    assert (report.repairable, report.repaired, report.duplicates) == (0, 0, 1)
    assert report.duplicate_values == [
        {
            "constraint": "email",
            "values": {"email": "a@e.com"},
            "ids": sorted(member.pk for member in created),
        }
    ]
    assert len(member_rows(connection)) == 3  # nothing deleted


def test_objects_sharing_a_primary_key_are_reported_not_lost(connection: Connection) -> None:
    # WEBPAGE's key is webpage:{project_id}:{page_id}, its row's key page_id alone: two projects
    # with one page_id are two objects in KV and one row, which once made verify see 0 drift
    first = Page.objects.auth("u1", using=connection).create(
        project_id="p1", page_id="same", url="https://e.com/1"
    )
    Page.objects.auth("u2", using=connection).create(
        project_id="p2", page_id="same", url="https://e.com/2"
    )
    report = verify(connection, Page)
    assert report.checked == 2
    assert report.shared_keys == 1 and report.drift == 1 and report.repairable == 0
    assert report.shared_key_values == [{"pk": "same", "ids": ["p1:same", "p2:same"]}]
    repaired = verify(connection, Page, repair=True)
    assert repaired.shared_keys == 1 and repaired.repaired == 0  # a person must decide
    Page.objects.auth("u2", using=connection).delete_many(["p2:same"], hard=True)
    assert verify(connection, Page, repair=True).repaired == 1  # p1's row again
    assert verify(connection, Page).drift == 0
    assert Page.objects.auth("u1", using=connection).query().list().data[0]["url"] == first.get(
        "url"
    )
