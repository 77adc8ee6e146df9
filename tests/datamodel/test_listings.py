"""Listings: a KV list of a model's ids per owner, kept by every write path and checked and
repaired against the metadata rows."""

from __future__ import annotations

import json

import pytest

from datamodel import (
    Connection,
    DataModel,
    DeclarationError,
    Listing,
    create_tables,
    fields,
    verify_listings,
)
from tests.datamodel.models import Folder


@pytest.fixture
def folders(connection: Connection) -> Connection:
    create_tables(connection.sql, [Folder])
    return connection


def listed(connection: Connection, user: str) -> list[str]:
    return sorted(connection.datastore.auth(user).list_items("folders", user))


def raw_list(connection: Connection, user: str) -> list[str] | None:
    """The list as a Worker reads it: ``folders:{user}`` in the WORKSPACE namespace."""
    if connection.datastore.adapter.name == "sql":
        return sorted(connection.datastore.system().list_items("folders", user)) or None
    kv = connection.datastore.kv
    assert kv is not None
    raw = kv.get("NIMBUS_WORK", f"folders:{user}")
    return None if raw is None else sorted(json.loads(raw))


def test_create_delete_restore_and_hard_delete_keep_the_list(folders: Connection) -> None:
    mine = Folder.objects.auth("u1", using=folders)
    a, b = mine.create(title="a"), mine.create(title="b")
    Folder.objects.auth("u2", using=folders).create(title="theirs")
    assert listed(folders, "u1") == sorted([f"folder-{a.pk}", f"folder-{b.pk}"])
    assert raw_list(folders, "u1") == listed(folders, "u1")
    assert len(listed(folders, "u2")) == 1
    assert folders.datastore.auth("u2").list_items("folders", "u1") == []  # not theirs

    a.delete()
    assert listed(folders, "u1") == [f"folder-{b.pk}"]
    mine.get(a.pk, include_deleted=True).restore()
    assert listed(folders, "u1") == sorted([f"folder-{a.pk}", f"folder-{b.pk}"])
    mine.get(b.pk).delete(hard=True)
    assert listed(folders, "u1") == [f"folder-{a.pk}"]


def test_bulk_writes_and_query_deletes_keep_the_list(folders: Connection) -> None:
    mine = Folder.objects.auth("u1", using=folders)
    made = mine.bulk_create([{"title": f"f{i}"} for i in range(5)])
    assert listed(folders, "u1") == sorted(f"folder-{folder.pk}" for folder in made)
    mine.filter(title__in=["f0", "f1"]).delete()
    assert listed(folders, "u1") == sorted(f"folder-{folder.pk}" for folder in made[2:])
    mine.filter(title="f2").update(title="renamed")  # an update keeps it listed
    assert len(listed(folders, "u1")) == 3


def test_a_system_create_is_listed_for_its_owner(folders: Connection) -> None:
    made = Folder.objects.system(using=folders).create(title="x", user_id="u7")
    assert listed(folders, "u7") == [f"folder-{made.pk}"]


def test_verify_finds_and_repairs_lists_that_differ_from_the_rows(folders: Connection) -> None:
    mine = Folder.objects.auth("u1", using=folders)
    a, b = mine.create(title="a"), mine.create(title="b")
    gone = Folder.objects.auth("u2", using=folders).create(title="gone")
    store = folders.datastore.auth("u1")
    store.list_remove("folders", "u1", f"folder-{a.pk}")  # a list write that never happened
    store.list_add("folders", "u1", "folder-nope")  # an id no live folder has
    gone.delete()
    folders.datastore.auth("u2").list_add("folders", "u2", f"folder-{gone.pk}")  # left behind

    found = {report.listing: report for report in verify_listings(folders, Folder)}["folders"]
    assert (found.checked, found.drifted, found.repaired) == (2, 2, 0)
    assert sorted(found.examples) == ["folders:u1", "folders:u2"]
    repaired = verify_listings(folders, Folder, repair=True, batch_size=1)[0]
    assert (repaired.drifted, repaired.repaired) == (2, 2)
    assert listed(folders, "u1") == sorted([f"folder-{a.pk}", f"folder-{b.pk}"])
    assert listed(folders, "u2") == []
    assert verify_listings(folders, Folder)[0].drifted == 0


def test_auto_now_add_and_auto_now_fields_are_stamped(memory_connection: Connection) -> None:
    create_tables(memory_connection.sql, [Folder])
    made = Folder.objects.auth("u1", using=memory_connection).create(title="a")
    assert made.get("opened") == made.get("created_at")
    assert made.get("touched") == made.get("updated_at")
    opened = made.get("opened")
    made.set("title", "b")
    made.save()
    assert made.get("opened") == opened  # a create's stamp only
    assert made.get("touched") == made.get("updated_at")


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        (Listing("things", pointer="note"), "'note', which is not a sync field"),
        (Listing("things", item="{missing}"), "'missing', which is not a sync field"),
        (Listing("things", item="fixed"), "item names no field"),
        (Listing("bad name!"), "Listing 'bad name!'"),
    ],
)
def test_a_listing_that_cannot_be_kept_is_refused(listing: Listing, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        type(
            "Thing",
            (DataModel,),
            {
                "thing_id": fields.String(primary_key=True),
                "note": fields.String(),
                "Meta": type(
                    "Meta", (), {"name": "THING", "namespace": "NIMBUS_WORK", "listings": [listing]}
                ),
            },
        )


def test_two_models_cannot_declare_one_listing() -> None:
    with pytest.raises(DeclarationError, match="both declare listing 'folders'"):
        type(
            "Other",
            (DataModel,),
            {
                "other_id": fields.String(primary_key=True),
                "Meta": type(
                    "Meta",
                    (),
                    {
                        "name": "OTHERFOLDER",
                        "namespace": "NIMBUS_WORK",
                        "listings": [Listing("folders")],
                    },
                ),
            },
        )
