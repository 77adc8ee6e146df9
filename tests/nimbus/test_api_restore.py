"""Editing a page, listing what was deleted, restoring projects and pages: as a user meets
them over HTTP, each scoped to its owner."""

from __future__ import annotations

import pytest

from nimbus.models import Queue
from tests.nimbus.api_support import api_user, make_project
from tests.nimbus.test_lifecycle import assert_agreement, upload

pytestmark = pytest.mark.usefixtures("domain")


def page_url(project: str, page_id: str, tail: str = "") -> str:
    return f"/api/projects/{project}/pages/{page_id}/{tail}"


# -- PATCH a page ------------------------------------------------------------------------------


def test_patch_a_page_changes_its_priority_and_the_queue_follows() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html"], priority=5)
    first, second = list(batch["pages"])
    response = alice.client.patch(page_url(project, second), {"priority": 9}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["priority"] == 9 and response.json()["status"] == "queued"
    assert alice.client.get(page_url(project, second)).json()["priority"] == 9
    listed = alice.client.get(f"/api/projects/{project}/pages/?ordering=-priority").json()
    assert listed["data"][0]["page_id"] == second  # the metadata row follows
    items = Queue.objects.auth("alice").get(project).get("items")
    assert {item["page_id"]: item["priority"] for item in items} == {first: 5, second: 9}
    claimed = alice.client.post(f"/api/projects/{project}/queue/claim/").json()
    assert claimed["page_id"] == second and claimed["priority"] == 9
    assert_agreement("alice", project, {batch["batch_id"]}, set())


def test_patch_replaces_the_extraction_and_takes_no_slash_or_an_empty_body() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = next(iter(upload(alice, project, ["a.html"])["pages"]))
    extraction = {"engine": "html", "head": {"title": "Rolex repair"}}
    response = alice.client.patch(
        page_url(project, page_id).rstrip("/"), {"extraction": extraction}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["extraction"] == extraction
    unchanged = alice.client.patch(page_url(project, page_id), {}, format="json")
    assert unchanged.status_code == 200 and unchanged.json()["extraction"] == extraction


def test_patch_names_read_only_and_unknown_fields() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = next(iter(upload(alice, project, ["a.html"])["pages"]))
    url = page_url(project, page_id)
    status = alice.client.patch(url, {"status": "done"}, format="json")
    assert status.status_code == 400
    assert "/status/" in status.json()["status"][0]
    several = alice.client.patch(
        url, {"page_id": "x", "source_path": "b.html", "colour": "red"}, format="json"
    )
    assert several.status_code == 400
    assert several.json() == {
        "page_id": ["Read-only."],
        "source_path": ["Read-only."],
        "colour": ["Unknown field."],
    }
    unknown = alice.client.patch(url, {"colour": "red"}, format="json")
    assert unknown.status_code == 400 and unknown.json() == {"colour": ["Unknown field."]}
    bad = alice.client.patch(url, {"priority": 11}, format="json")
    assert bad.status_code == 400 and "priority" in bad.json()
    nested = alice.client.patch(url, {"extraction": {"engine": "html", "x": 1}}, format="json")
    assert nested.status_code == 400 and "extraction" in nested.json()
    page = alice.client.get(url).json()
    assert page["status"] == "queued" and page["priority"] == 5 and page["page_id"] == page_id


def test_patch_another_users_or_a_deleted_page_is_404() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    first, second = list(upload(alice, project, ["a.html", "b.html"])["pages"])
    response = bob.client.patch(page_url(project, first), {"priority": 1}, format="json")
    assert response.status_code == 404
    assert alice.client.get(page_url(project, first)).json()["priority"] == 5
    assert alice.client.delete(page_url(project, second)).status_code == 204
    gone = alice.client.patch(page_url(project, second), {"priority": 1}, format="json")
    assert gone.status_code == 404


# -- ?deleted=only -----------------------------------------------------------------------------


def test_deleted_only_lists_the_owners_deleted_pages_in_the_envelope() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    pages = list(upload(alice, project, ["a.html", "b.html", "c.html"])["pages"])
    for page_id in pages[:2]:
        assert alice.client.delete(page_url(project, page_id)).status_code == 204
    base = f"/api/projects/{project}/pages/"
    deleted = alice.client.get(f"{base}?deleted=only&limit=1").json()
    assert set(deleted) == {"data", "pagination"}
    assert deleted["pagination"]["total"] == 2 and deleted["pagination"]["pages"] == 2
    both = alice.client.get(f"{base}?deleted=only").json()["data"]
    assert {row["page_id"] for row in both} == set(pages[:2])
    assert all(row["deleted_at"] for row in both)
    live = alice.client.get(base).json()
    assert [row["page_id"] for row in live["data"]] == [pages[2]]
    filtered = alice.client.get(f"{base}?deleted=only&status=done").json()
    assert filtered["pagination"]["total"] == 0
    assert alice.client.get(f"{base}?deleted=yes").status_code == 400
    assert bob.client.get(f"{base}?deleted=only").status_code == 404


def test_deleted_only_lists_the_owners_deleted_projects() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    kept = make_project(alice, "kept.example")
    gone = make_project(alice, "gone.example")
    make_project(bob, "bobs.example")
    bobs_gone = make_project(bob, "bobs-gone.example")
    assert alice.client.delete(f"/api/projects/{gone}/").status_code == 204
    assert bob.client.delete(f"/api/projects/{bobs_gone}/").status_code == 204
    deleted = alice.client.get("/api/projects/?deleted=only").json()
    assert [row["project_id"] for row in deleted["data"]] == [gone]
    assert deleted["pagination"]["total"] == 1
    assert [row["project_id"] for row in alice.client.get("/api/projects/").json()["data"]] == [
        kept
    ]
    assert alice.client.get("/api/projects/?deleted=all").status_code == 400


def test_deleted_only_lists_the_owners_deleted_batches_in_the_envelope() -> None:
    """No route deletes a batch on its own (a project's delete takes them, and its routes
    answer 404 then): one deleted through the model layer is listed."""
    from nimbus.models import Batch

    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    batches = [upload(alice, project, [f"{name}.html"])["batch_id"] for name in "abc"]
    for batch_id in batches[:2]:
        Batch.objects.auth("alice").get(project_id=project, batch_id=batch_id).delete()
    base = f"/api/projects/{project}/batches/"
    deleted = alice.client.get(f"{base}?deleted=only&limit=1").json()
    assert set(deleted) == {"data", "pagination"}
    assert deleted["pagination"]["total"] == 2 and deleted["pagination"]["pages"] == 2
    both = alice.client.get(f"{base}?deleted=only").json()["data"]
    assert {row["batch_id"] for row in both} == set(batches[:2])
    assert all(row["deleted_at"] for row in both)
    live = alice.client.get(base).json()
    assert [row["batch_id"] for row in live["data"]] == [batches[2]]
    assert alice.client.get(f"{base}?deleted=yes").status_code == 400
    assert bob.client.get(f"{base}?deleted=only").status_code == 404


# -- restore -----------------------------------------------------------------------------------


def test_restoring_a_project_brings_back_what_its_delete_took() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html", "c.html"])
    a, b, c = list(batch["pages"])
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 200
    assert alice.client.delete(page_url(project, c)).status_code == 204  # on its own, before
    assert alice.client.delete(f"/api/projects/{project}/").status_code == 204
    assert alice.client.get(f"/api/projects/{project}/").status_code == 404
    response = alice.client.post(f"/api/projects/{project}/restore")  # no slash needed
    assert response.status_code == 200, response.json()
    assert response.json()["project_id"] == project and response.json()["deleted_at"] is None
    assert alice.client.get(f"/api/projects/{project}/").status_code == 200
    listed = alice.client.get(f"/api/projects/{project}/pages/").json()["data"]
    assert {row["page_id"] for row in listed} == {a, b}
    still = alice.client.get(f"/api/projects/{project}/pages/?deleted=only").json()["data"]
    assert [row["page_id"] for row in still] == [c]
    restored_batch = alice.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/")
    assert restored_batch.status_code == 200
    assert restored_batch.json()["page_count"] == 2
    log = alice.client.get(page_url(project, a, "logs/"))
    assert log.status_code == 200 and log.json()["pagination"]["total"] >= 1
    assert_agreement("alice", project, {batch["batch_id"]}, {c})
    # the queue works again: the page still queued is claimable
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 200


def test_restoring_a_live_missing_or_another_users_project_is_404() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    assert alice.client.post(f"/api/projects/{project}/restore/").status_code == 404
    assert alice.client.post("/api/projects/nope/restore/").status_code == 404
    assert alice.client.delete(f"/api/projects/{project}/").status_code == 204
    assert bob.client.post(f"/api/projects/{project}/restore/").status_code == 404
    assert alice.client.get(f"/api/projects/{project}/").status_code == 404  # still deleted
    assert alice.client.post(f"/api/projects/{project}/restore/").status_code == 200
    assert alice.client.post(f"/api/projects/{project}/restore/").status_code == 404


def test_restoring_a_page_puts_it_back_in_the_queue_and_its_batch() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html"])
    a, b = list(batch["pages"])
    assert alice.client.delete(page_url(project, a)).status_code == 204
    before = alice.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/").json()
    assert before["page_count"] == 1
    response = alice.client.post(page_url(project, a, "restore/"))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "queued" and response.json()["deleted_at"] is None
    after = alice.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/").json()
    assert after["page_count"] == 2 and set(after["pages"]) == {a, b}
    items = Queue.objects.auth("alice").get(project).get("items")
    assert {item["page_id"] for item in items} == {a, b}
    assert_agreement("alice", project, {batch["batch_id"]}, set())


def test_restoring_a_page_is_404_unless_deleted_and_yours_and_409_in_a_deleted_project() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    a, b = list(upload(alice, project, ["a.html", "b.html"])["pages"])
    assert alice.client.post(page_url(project, a, "restore/")).status_code == 404  # live
    assert alice.client.post(page_url(project, "page_000000000000", "restore/")).status_code == 404
    assert alice.client.delete(page_url(project, a)).status_code == 204
    assert bob.client.post(page_url(project, a, "restore/")).status_code == 404
    assert alice.client.get(page_url(project, a)).status_code == 404
    # its project deleted too: the page cannot come back before the project
    assert alice.client.delete(f"/api/projects/{project}/").status_code == 204
    refused = alice.client.post(page_url(project, a, "restore/"))
    assert refused.status_code == 409
    assert "project" in refused.json()["detail"] and "deleted" in refused.json()["detail"]
    assert bob.client.post(page_url(project, a, "restore/")).status_code == 404
    # the project's restore brings back b (deleted with it), not a (deleted on its own)
    assert alice.client.post(f"/api/projects/{project}/restore/").status_code == 200
    assert alice.client.get(page_url(project, b)).status_code == 200
    assert alice.client.get(page_url(project, a)).status_code == 404
    assert alice.client.post(page_url(project, a, "restore/")).status_code == 200
    assert alice.client.get(page_url(project, a)).json()["status"] == "queued"


def test_a_project_deleted_while_its_page_is_restored_is_409(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The project is read live, then deleted before the page's restore writes: 409 naming the
    project, not the model layer's 400."""
    from nimbus.lifecycle import moves
    from nimbus.models import Project

    alice = api_user("alice")
    project = make_project(alice)
    page_id = next(iter(upload(alice, project, ["a.html"])["pages"]))
    assert alice.client.delete(page_url(project, page_id)).status_code == 204
    real = moves.restore_objects

    def project_deleted_first(instances, scope):  # type: ignore[no-untyped-def]
        Project.objects.bind(scope).get(project).delete()
        monkeypatch.setattr(moves, "restore_objects", real)
        return real(instances, scope)

    monkeypatch.setattr(moves, "restore_objects", project_deleted_first)
    refused = alice.client.post(page_url(project, page_id, "restore/"))
    assert refused.status_code == 409, refused.json()
    assert "restore the project first" in refused.json()["detail"]


def test_a_project_delete_takes_its_queue_and_its_restore_brings_it_back_as_it_was() -> None:
    """The queue (``queue:{project_id}``, not a Reference: see ``models.queue``) is deleted
    with its project, untouched by a move racing that delete, and restored with it: claims
    and attempts as they were, the queued pages claimable again."""
    from datamodel import Scope
    from nimbus import conf
    from nimbus.lifecycle import queue as queueing

    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html"])
    claimed = alice.client.post(f"/api/projects/{project}/queue/claim/").json()
    before = Queue.objects.auth("alice").get(project).get("items")
    assert alice.client.delete(f"/api/projects/{project}/").status_code == 204
    assert Queue.objects.auth("alice").get_or_none(project) is None
    deleted = Queue.objects.auth("alice").get(project, include_deleted=True)
    assert deleted.get("deleted_at") is not None and deleted.get("items") == before
    scope = Scope(conf.get_connection(), "alice")
    queueing.set_items(scope, project, {claimed["page_id"]: None})  # a move racing the delete
    again = Queue.objects.auth("alice").get(project, include_deleted=True)
    assert again.get("items") == before and again.get("_version") == deleted.get("_version")
    assert alice.client.post(f"/api/projects/{project}/restore/").status_code == 200
    assert Queue.objects.auth("alice").get(project).get("items") == before
    assert_agreement("alice", project, {batch["batch_id"]}, set())
    other = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert other.status_code == 200 and other.json()["page_id"] != claimed["page_id"]
    ack = f"/api/projects/{project}/queue/{claimed['page_id']}/ack/"
    assert alice.client.post(ack, {}, format="json").status_code == 200
