"""The datamodel spec's examples, on every backend."""

from __future__ import annotations

import json

import pytest

from datamodel import Connection, DoesNotExist
from tests.datamodel.models import WEBHOOKS, Page


def test_create_writes_kv_and_metadata(connection: Connection) -> None:
    pages = Page.objects.auth("user_1", using=connection)
    page = pages.create(
        title="My Page",
        url="https://example.com",
        content="<html>...</html>",
        status="pending",
        project_id="proj_123",
    )
    assert not page.is_new()
    assert page.get("user_id") == "user_1"
    assert page.get("_auth") == ["user_1"]
    assert page.get("_version") == 1
    assert page.get("created_at").endswith("Z") and page.get("created_at") == page.get("updated_at")

    stored = connection.datastore.system().get("WEBPAGE", f"proj_123:{page.pk}")
    assert stored is not None
    assert stored["content"] == "<html>...</html>"
    if connection.datastore.kv is not None:  # the exact key a Worker reads
        raw = connection.datastore.kv.get("NIMBUS_PAGES", f"webpage:proj_123:{page.pk}")
        assert raw is not None and json.loads(raw)["title"] == "My Page"

    rows = connection.sql.execute("SELECT * FROM webpage_meta")
    assert len(rows) == 1
    row = rows[0]
    assert "content" not in row  # KV only
    assert (row["page_id"], row["project_id"], row["status"], row["_version"]) == (
        page.pk,
        "proj_123",
        "pending",
        1,
    )


def test_get_by_id_respects_auth(connection: Connection) -> None:
    page = Page.objects.auth("user_1", using=connection).create(
        project_id="proj_1", url="https://example.com/a"
    )
    again = Page.objects.auth("user_1", using=connection).get(project_id="proj_1", page_id=page.pk)
    assert again.get_data() == page.get_data()
    assert Page.objects.auth("user_1", using=connection).get(page.kv_id) == page
    with pytest.raises(DoesNotExist):
        Page.objects.auth("user_2", using=connection).get(page.kv_id)
    assert Page.objects.auth("user_2", using=connection).get_or_none(page.kv_id) is None
    assert Page.objects.system(using=connection).get(page.kv_id) == page


def test_update(connection: Connection) -> None:
    pages = Page.objects.auth("user_1", using=connection)
    page = pages.create(project_id="proj_1", url="https://example.com/a")
    page.set("status", "completed")
    page.set({"title": "Done", "priority": 9})
    page.save()
    assert page.get("_version") == 2
    loaded = pages.get(page.kv_id)
    assert (loaded.get("status"), loaded.get("title"), loaded.get("priority")) == (
        "completed",
        "Done",
        9,
    )
    row = connection.sql.execute("SELECT status, title, _version FROM webpage_meta")[0]
    assert row == {"status": "completed", "title": "Done", "_version": 2}


def test_query_with_pagination(connection: Connection) -> None:
    pages = Page.objects.auth("user_1", using=connection)
    pages.bulk_create(
        [
            {"project_id": "proj_123", "url": f"https://example.com/{i}", "priority": i % 3}
            for i in range(56)
        ]
    )
    pages.create(project_id="proj_other", url="https://example.com/other")
    Page.objects.auth("user_2", using=connection).create(
        project_id="proj_123", url="https://example.com/theirs"
    )

    result = (
        pages.query()
        .where("project_id", "proj_123")
        .order_by("created_at", "desc")
        .limit(25)
        .page(2)
        .list()
    )
    assert len(result.data) == 25
    assert result.pagination == {
        "total": 56,
        "limit": 25,
        "offset": 25,
        "page": 2,
        "pages": 3,
        "has_next": True,
        "has_prev": True,
        "next_cursor": result.pagination["next_cursor"],
    }
    last = pages.query().where("project_id", "proj_123").limit(25).page(3).list()
    assert len(last.data) == 6 and last.pagination["has_next"] is False
    assert all(row["project_id"] == "proj_123" for row in last.data)
    assert pages.query().where("priority", 0).count() == 19


def test_soft_delete_and_restore(connection: Connection) -> None:
    pages = Page.objects.auth("user_1", using=connection)
    keep = pages.create(project_id="proj_1", url="https://example.com/keep")
    gone = pages.create(project_id="proj_1", url="https://example.com/gone")
    gone.delete()
    assert gone.get("deleted_at") is not None

    active = pages.query().where("project_id", "proj_1").list()
    assert [row["page_id"] for row in active.data] == [keep.pk]
    everything = pages.query().where("project_id", "proj_1").include_deleted().list()
    assert {row["page_id"] for row in everything.data} == {keep.pk, gone.pk}
    deleted = pages.query().where("project_id", "proj_1").only_deleted().list()
    assert [row["page_id"] for row in deleted.data] == [gone.pk]

    # still in both stores
    assert connection.datastore.system().get("WEBPAGE", gone.kv_id) is not None
    assert pages.get_or_none(gone.kv_id) is None
    restored = pages.get(gone.kv_id, include_deleted=True).restore()
    assert restored.get("deleted_at") is None
    assert pages.query().where("project_id", "proj_1").count() == 2
    assert pages.delete(keep.kv_id) is True
    assert pages.delete(keep.kv_id) is False


def test_webhook_style_after_update_on_status_change(connection: Connection) -> None:
    pages = Page.objects.auth("user_1", using=connection)
    page = pages.create(project_id="proj_1", url="https://example.com/a")
    page.set("title", "renamed")
    page.save()
    assert WEBHOOKS == []
    page.set("status", "completed")
    page.save()
    assert [
        {
            "event": "page.completed",
            "page_id": page.pk,
            "project_id": "proj_1",
            "url": "https://example.com/a",
        }
    ] == WEBHOOKS


def test_with_data_hydrates_full_objects(connection: Connection) -> None:
    pages = Page.objects.auth("user_1", using=connection)
    created = pages.bulk_create(
        [
            {"project_id": "proj_1", "url": f"https://example.com/{i}", "content": f"<p>{i}</p>"}
            for i in range(5)
        ]
    )
    result = pages.query().with_data().order_by("url").list()
    assert [page.get("content") for page in result.data] == [f"<p>{i}</p>" for i in range(5)]
    assert {page.pk for page in result.data} == {page.pk for page in created}
    first = result.data[0]
    first.set("status", "processing")
    first.save()  # hydrated instances are complete and saveable
    assert pages.get(first.kv_id).get("content") == "<p>0</p>"
