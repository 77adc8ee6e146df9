"""The status object (NIMBUS_STATUS) as the data-structures spec lays it out: ``processing``
while a page is processed (a worker reports its progress), ``result`` once done (from the
ack's optimization), ``error`` once failed; read at ``GET .../pages/{page_id}/status/``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from nimbus.lifecycle import MAX_ATTEMPTS
from nimbus.models import Batch, Queue
from tests.nimbus.api_support import ApiUser, api_user, make_project
from tests.nimbus.test_lifecycle import assert_agreement, upload

pytestmark = pytest.mark.usefixtures("domain")


def status_object(user: ApiUser, project: str, page_id: str) -> dict[str, Any]:
    response = user.client.get(f"/api/projects/{project}/pages/{page_id}/status/")
    assert response.status_code == 200, response.json()
    return response.json()


def is_iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def claimed_page(user: ApiUser, body: dict[str, Any] | None = None) -> tuple[str, str, str]:
    """A project of ``user``'s with one page, claimed (with ``body``); the project, the
    page and its batch."""
    project = make_project(user)
    batch = upload(user, project, ["a.html"])
    claim = user.client.post(f"/api/projects/{project}/queue/claim/", body or {}, format="json")
    assert claim.status_code == 200, claim.json()
    return project, claim.json()["page_id"], batch["batch_id"]


def queue_url(project: str, page_id: str, action: str) -> str:
    return f"/api/projects/{project}/queue/{page_id}/{action}/"


def test_a_queued_page_shows_its_status_alone() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html"])
    record = status_object(alice, project, next(iter(batch["pages"])))
    assert record["status"] == "queued" and record["batch_id"] == batch["batch_id"]
    assert (record["processing"], record["result"], record["error"]) == (None, None, None)
    assert is_iso(record["updated"])


def test_a_claimed_page_shows_its_step_from_the_claim_and_progress_0() -> None:
    alice = api_user("alice")
    project, page_id, _ = claimed_page(alice)
    processing = status_object(alice, project, page_id)["processing"]
    assert processing["current_step"] == "ai_optimization" and processing["progress"] == 0
    assert is_iso(processing["started"])
    other, other_page, _ = claimed_page(alice, {"current_step": "extracting"})
    assert status_object(alice, other, other_page)["processing"]["current_step"] == "extracting"
    long = alice.client.post(
        f"/api/projects/{other}/queue/claim/", {"current_step": "x" * 101}, format="json"
    )
    assert long.status_code == 400 and "current_step" in long.json()


def test_a_worker_reports_progress_without_moving_the_page() -> None:
    alice = api_user("alice")
    project, page_id, batch_id = claimed_page(alice)
    started = status_object(alice, project, page_id)["processing"]["started"]
    logs = f"/api/projects/{project}/pages/{page_id}/logs/"
    entries = alice.client.get(logs).json()["pagination"]["total"]
    item = Queue.objects.auth("alice").get(project).get("items")
    entry = Batch.objects.auth("alice").get(project_id=project, batch_id=batch_id).get("pages")
    url = queue_url(project, page_id, "progress")
    report = alice.client.post(url, {"progress": 40, "current_step": "rewriting"}, format="json")
    assert report.status_code == 200, report.json()
    assert report.json()["processing"] == {
        "started": started,
        "current_step": "rewriting",
        "progress": 40,
    }
    assert report.json()["status"] == "processing"
    assert alice.client.post(url, {"progress": 70}, format="json").status_code == 200
    processing = status_object(alice, project, page_id)["processing"]
    assert processing == {"started": started, "current_step": "rewriting", "progress": 70}
    step = alice.client.post(url, {"current_step": "checking"}, format="json")
    assert step.json()["processing"]["progress"] == 70
    page = alice.client.get(f"/api/projects/{project}/pages/{page_id}/").json()
    assert page["status"] == "processing"
    assert alice.client.get(logs).json()["pagination"]["total"] == entries
    assert Queue.objects.auth("alice").get(project).get("items") == item
    stored = Batch.objects.auth("alice").get(project_id=project, batch_id=batch_id)
    assert stored.get("pages") == entry
    assert_agreement("alice", project, {batch_id}, set())
    acked = alice.client.post(queue_url(project, page_id, "ack"), {}, format="json")
    assert acked.status_code == 200
    assert status_object(alice, project, page_id)["processing"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"progress": 101}, "progress"),
        ({"progress": -1}, "progress"),
        ({"progress": "half"}, "progress"),
        ({"progress": 10, "colour": "red"}, "colour"),
        ({"current_step": ""}, "current_step"),
        ({}, "non_field_errors"),
    ],
)
def test_a_bad_progress_report_is_400_naming_the_field(body: dict[str, Any], field: str) -> None:
    alice = api_user("alice")
    project, page_id, _ = claimed_page(alice)
    response = alice.client.post(queue_url(project, page_id, "progress"), body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    if not body:
        assert response.json()[field] == ["give progress (0-100), current_step or both"]
    assert status_object(alice, project, page_id)["processing"]["progress"] == 0


def test_progress_of_a_page_that_is_not_processing_is_409_and_of_anothers_404() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    page_id = next(iter(upload(alice, project, ["a.html"])["pages"]))
    url = queue_url(project, page_id, "progress")
    refused = alice.client.post(url, {"progress": 10}, format="json")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"page {page_id!r} is 'queued': only a page that is 'processing' can report progress"
    )
    assert status_object(alice, project, page_id)["processing"] is None
    assert bob.client.post(url, {"progress": 10}, format="json").status_code == 404
    missing = queue_url(project, "page_000000000000", "progress")
    assert alice.client.post(missing, {"progress": 10}, format="json").status_code == 404
    assert bob.client.get(f"/api/projects/{project}/pages/{page_id}/status/").status_code == 404


def test_an_ack_with_an_optimization_fills_the_page_and_the_result() -> None:
    alice = api_user("alice")
    project, page_id, _ = claimed_page(alice)
    optimization = {
        "model": "gpt-4",
        "confidence": 0.95,
        "changes": 47,
        "optimized_blocks": [
            {"id": "block-0", "type": "h1", "content": "Rolex", "optimized_content": "Rolex!"}
        ],
    }
    acked = alice.client.post(
        queue_url(project, page_id, "ack"), {"optimization": optimization}, format="json"
    )
    assert acked.status_code == 200, acked.json()
    stored = acked.json()["optimization"]
    assert {key: stored[key] for key in optimization} == optimization
    assert set(stored) == {*optimization, "completed"} and is_iso(stored["completed"])
    record = status_object(alice, project, page_id)
    assert record["status"] == "done" and record["processing"] is None
    assert record["result"] == {
        "completed": stored["completed"],
        "success": True,
        "changes": 47,
        "confidence": 0.95,
    }


def test_an_ack_without_an_optimization_or_with_a_free_form_result() -> None:
    alice = api_user("alice")
    project, page_id, _ = claimed_page(alice)
    acked = alice.client.post(queue_url(project, page_id, "ack"), {}, format="json")
    assert set(acked.json()["optimization"]) == {"completed"}
    result = status_object(alice, project, page_id)["result"]
    assert result["success"] is True and result["changes"] is None
    assert result["confidence"] is None and is_iso(result["completed"])
    other, other_page, _ = claimed_page(alice)
    body = {"result": {"changes": 3, "score": 1}, "optimization": {"model": "gpt-4"}}
    acked = alice.client.post(queue_url(other, other_page, "ack"), body, format="json")
    assert acked.json()["optimization"] == {
        "changes": 3,
        "score": 1,
        "model": "gpt-4",
        "completed": acked.json()["optimization"]["completed"],
    }
    assert status_object(alice, other, other_page)["result"]["changes"] == 3


@pytest.mark.parametrize(
    "optimization",
    [
        {"confidence": 1.5},
        {"changes": -1},
        {"model": "gpt-4", "temperature": 1},
        {"optimized_blocks": [{"id": "b"}]},
    ],
)
def test_a_bad_optimization_is_400_and_the_page_stays_processing(
    optimization: dict[str, Any],
) -> None:
    alice = api_user("alice")
    project, page_id, _ = claimed_page(alice)
    response = alice.client.post(
        queue_url(project, page_id, "ack"), {"optimization": optimization}, format="json"
    )
    assert response.status_code == 400 and "optimization" in response.json(), response.json()
    assert status_object(alice, project, page_id)["status"] == "processing"


def test_a_failure_shows_its_message_and_code() -> None:
    alice = api_user("alice")
    project, page_id, _ = claimed_page(alice)
    url = queue_url(project, page_id, "fail")
    retried = alice.client.post(url, {"error": "timed out", "code": "AI_TIMEOUT"}, format="json")
    assert retried.status_code == 200 and retried.json()["retry"] is True
    record = status_object(alice, project, page_id)
    assert record["status"] == "queued" and record["processing"] is None
    assert record["error"]["message"] == "timed out" and record["error"]["code"] == "AI_TIMEOUT"
    for _ in range(MAX_ATTEMPTS - 1):
        assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 200
        assert alice.client.post(url, {"error": "bad"}, format="json").status_code == 200
    record = status_object(alice, project, page_id)
    assert record["status"] == "failed"
    assert record["error"]["message"] == "bad" and record["error"]["code"] == "FAILED"
    assert is_iso(record["error"]["timestamp"]) and record["result"] is None
    lower = alice.client.post(url, {"error": "x", "code": "timeout"}, format="json")
    assert lower.status_code == 400 and "code" in lower.json()


def test_status_moves_show_the_same_shapes() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    first, second = list(upload(alice, project, ["a.html", "b.html"])["pages"])
    url = f"/api/projects/{project}/pages/{first}/status/"
    moved = alice.client.post(
        url, {"status": "processing", "current_step": "by hand"}, format="json"
    )
    assert moved.status_code == 200, moved.json()
    assert status_object(alice, project, first)["processing"]["current_step"] == "by hand"
    refused = alice.client.post(url, {"status": "done", "current_step": "x"}, format="json")
    assert refused.status_code == 400 and "current_step" in refused.json()
    assert alice.client.post(url, {"status": "failed"}, format="json").status_code == 200
    error = status_object(alice, project, first)["error"]
    assert error["message"] == "failed" and error["code"] == "FAILED"
    other = f"/api/projects/{project}/pages/{second}/status/"
    assert alice.client.post(other, {"status": "processing"}, format="json").status_code == 200
    assert alice.client.post(other, {"status": "done"}, format="json").status_code == 200
    result = status_object(alice, project, second)["result"]
    assert result["success"] is True and result["changes"] is None
    page = alice.client.get(f"/api/projects/{project}/pages/{second}/").json()
    assert page["optimization"] is None  # a worker's ack fills it, not /status/
