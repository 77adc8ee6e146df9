"""verify/repair: KV is the source of truth and every drift is found and fixed."""

from __future__ import annotations

import pytest

from datamodel import Connection, SyncError, verify
from datastore import Datastore
from tests.datamodel.conftest import routing
from tests.datamodel.models import Page
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
