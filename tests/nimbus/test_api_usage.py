"""A project's usage counters over HTTP: ``total_pages`` counts its live pages and
``total_batches`` its live batches, whatever uploads, deletes and restores happened. Every
upload is a batch: a page uploaded on its own is a batch of one, and a batch a page left stays
(empty) and counted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.nimbus.api_support import ApiUser, api_user, make_page, make_project
from tests.nimbus.test_lifecycle import upload

pytestmark = pytest.mark.usefixtures("domain")


def usage(user: ApiUser, project: str) -> dict[str, Any]:
    response = user.client.get(f"/api/projects/{project}/")
    assert response.status_code == 200, response.json()
    return response.json()["usage"]


def counts(user: ApiUser, project: str) -> tuple[int, int]:
    found = usage(user, project)
    return found["total_pages"], found["total_batches"]


def test_a_new_project_counts_nothing() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    assert usage(alice, project) == {"total_pages": 0, "total_batches": 0, "last_activity": None}


def test_single_page_uploads_count_once_each_path() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    make_page(alice, project, "a.html")
    assert counts(alice, project) == (1, 1)  # a batch of one
    first_activity = usage(alice, project)["last_activity"]
    assert first_activity is not None
    make_page(alice, project, "b.html")
    assert counts(alice, project) == (2, 2)
    again = alice.client.post(
        f"/api/projects/{project}/pages/", {"source_path": "a.html"}, format="json"
    )
    assert again.status_code == 200  # replaced, not a new page; in a new batch
    assert counts(alice, project) == (2, 3)
    assert usage(alice, project)["last_activity"] >= first_activity


def test_a_batch_counts_its_new_pages_and_itself() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    make_page(alice, project, "a.html")
    upload(alice, project, ["a.html", "b.html", "c.html"])  # a.html uploaded again
    assert counts(alice, project) == (3, 2)  # a.html's batch of one, and this one
    upload(alice, project, ["b.html", "d.html"])
    assert counts(alice, project) == (4, 3)


def test_a_page_delete_and_restore_move_the_count() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    a, b = list(upload(alice, project, ["a.html", "b.html"])["pages"])
    base = f"/api/projects/{project}/pages"
    assert alice.client.delete(f"{base}/{a}/").status_code == 204
    assert counts(alice, project) == (1, 1)
    assert alice.client.delete(f"{base}/{a}/").status_code == 404  # gone already: no change
    assert counts(alice, project) == (1, 1)
    assert alice.client.post(f"{base}/{a}/restore/").status_code == 200
    assert counts(alice, project) == (2, 1)
    assert alice.client.delete(f"{base}/{b}/").status_code == 204
    again = alice.client.post(f"{base}/", {"source_path": "b.html"}, format="json")
    assert again.status_code == 200  # the deleted page brought back by its upload
    assert counts(alice, project) == (2, 2)  # in a batch of one


def test_a_project_restore_counts_what_came_back() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    c = list(upload(alice, project, ["a.html", "b.html", "c.html"])["pages"])[2]
    make_page(alice, project, "d.html")
    assert alice.client.delete(f"/api/projects/{project}/pages/{c}/").status_code == 204
    assert counts(alice, project) == (3, 2)  # d.html is a batch of one
    assert alice.client.delete(f"/api/projects/{project}/").status_code == 204
    assert alice.client.get(f"/api/projects/{project}/").status_code == 404
    restored = alice.client.post(f"/api/projects/{project}/restore/")
    assert restored.status_code == 200
    assert restored.json()["usage"]["total_pages"] == 3  # c was deleted on its own before
    assert counts(alice, project) == (3, 2)


def test_a_wrong_count_is_put_right_by_the_next_change() -> None:
    """The counters are counted, not added to: a count that went wrong (a lost update, data
    from before) is right again after the next upload."""
    from nimbus.models import Project

    alice = api_user("alice")
    project = make_project(alice)
    make_page(alice, project, "a.html")
    stored = Project.objects.auth("alice").get(project)
    stored.set("usage", {**stored.get("usage"), "total_pages": 40, "total_batches": 7})
    stored.save()
    make_page(alice, project, "b.html")
    assert counts(alice, project) == (2, 2)  # a batch of one each
