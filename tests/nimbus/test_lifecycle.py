"""The page lifecycle (``nimbus.lifecycle``): a page's status, its queue entry, its status
object and its batch's counters move together, through every route that changes them."""

from __future__ import annotations

import pytest

from nimbus.models import Batch, Queue
from tests.nimbus.api_support import ApiUser, api_user

pytestmark = pytest.mark.usefixtures("domain")


def make_project(user: ApiUser, name: str = "repairsbypost.com") -> str:
    response = user.client.post("/api/projects/", {"name": name}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["project_id"]


def upload(user: ApiUser, project_id: str, paths: list[str], priority: int = 5) -> dict:
    pages = [{"source_path": path, "priority": priority} for path in paths]
    response = user.client.post(
        f"/api/projects/{project_id}/batches/", {"pages": pages}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def page_of(batch: dict, index: int) -> str:
    return list(batch["pages"])[index]


def status_url(project: str, page_id: str) -> str:
    return f"/api/projects/{project}/pages/{page_id}/status/"


def test_deleting_a_queued_page_leaves_the_queue_working_and_the_batch_counted() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html", "c.html"])
    deleted = page_of(batch, 0)
    response = alice.client.delete(f"/api/projects/{project}/pages/{deleted}/")
    assert response.status_code == 204
    claimed = []
    for _ in range(2):
        claim = alice.client.post(f"/api/projects/{project}/queue/claim/")
        assert claim.status_code == 200, claim.status_code
        claimed.append(claim.json()["page_id"])
    assert sorted(claimed) == sorted([page_of(batch, 1), page_of(batch, 2)])
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 204
    detail = alice.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/").json()
    assert deleted not in detail["pages"]
    assert detail["summary"]["pending"] == 2 and detail["page_count"] == 2
    for page_id in claimed:
        ack = alice.client.post(f"/api/projects/{project}/queue/{page_id}/ack/", {}, format="json")
        assert ack.status_code == 200
    detail = alice.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/").json()
    assert detail["summary"] == {**detail["summary"], "completed": 2, "pending": 0}
    assert detail["status"] == "completed"


def test_status_queued_puts_the_page_in_the_queue() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = alice.client.post(
        f"/api/projects/{project}/pages/", {"source_path": "a.html"}, format="json"
    ).json()["page_id"]
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 204
    moved = alice.client.post(status_url(project, page_id), {"status": "queued"}, format="json")
    assert moved.status_code == 200 and moved.json()["status"] == "queued"
    claim = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claim.status_code == 200 and claim.json()["page_id"] == page_id
    page = alice.client.get(f"/api/projects/{project}/pages/{page_id}/").json()
    assert page["status"] == "processing"


def test_a_page_set_done_through_status_is_not_claimed_again() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html"])
    page_id = page_of(batch, 0)
    for status in ("processing", "done"):
        moved = alice.client.post(status_url(project, page_id), {"status": status}, format="json")
        assert moved.status_code == 200, moved.json()
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 204
    assert Queue.objects.auth("alice").get(project).get("items") == []
    detail = alice.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/").json()
    assert detail["summary"]["completed"] == 1 and detail["status"] == "completed"


def test_a_page_set_processing_through_status_can_be_acked() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_of(upload(alice, project, ["a.html"]), 0)
    alice.client.post(status_url(project, page_id), {"status": "processing"}, format="json")
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 204
    ack = alice.client.post(f"/api/projects/{project}/queue/{page_id}/ack/", {}, format="json")
    assert ack.status_code == 200 and ack.json()["status"] == "done"


def test_a_failed_attempt_that_will_be_retried_is_queued_again() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html"])
    page_id = page_of(batch, 0)
    alice.client.post(f"/api/projects/{project}/queue/claim/")
    failed = alice.client.post(
        f"/api/projects/{project}/queue/{page_id}/fail/", {"error": "timeout"}, format="json"
    ).json()
    assert failed["retry"] is True and failed["page"]["status"] == "queued"
    detail = alice.client.get(f"/api/projects/{project}/pages/{page_id}/").json()
    assert detail["status"] == "queued"
    stored = Batch.objects.auth("alice").get(project_id=project, batch_id=batch["batch_id"])
    assert stored.get("pages")[page_id]["status"] == "queued"


def test_an_illegal_move_is_409_naming_the_states() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_of(upload(alice, project, ["a.html"]), 0)
    response = alice.client.post(status_url(project, page_id), {"status": "done"}, format="json")
    assert response.status_code == 409
    message = response.json()["detail"]
    assert "'queued'" in message and "'done'" in message and "version" not in message
    ack = alice.client.post(f"/api/projects/{project}/queue/{page_id}/ack/", {}, format="json")
    assert ack.status_code == 409 and "'queued'" in ack.json()["detail"]
