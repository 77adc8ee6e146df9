"""The platform API: scoping, pages, batches, the queue, logs, validation, limits."""

from __future__ import annotations

import time

import pytest

from datastore import codec
from nimbus import conf
from nimbus.models import Batch, Page, key_hash
from nimbus.workflows import MAX_ATTEMPTS
from tests.nimbus.api_support import ApiUser, api_user, make_page, make_project

pytestmark = pytest.mark.usefixtures("domain")


def upload(user: ApiUser, project_id: str, count: int, **extra) -> dict:
    pages = [
        {"source_path": f"dist/local/page-{i}.html", "priority": (i % 10) + 1, **extra}
        for i in range(count)
    ]
    response = user.client.post(
        f"/api/projects/{project_id}/batches/", {"pages": pages}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_user_b_gets_404_everywhere_on_user_a_objects() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    project = make_project(alice)
    batch = upload(alice, project, 2)
    page_id = next(iter(batch["pages"]))
    alice.client.post(
        f"/api/projects/{project}/pages/{page_id}/logs/",
        {"step": "s", "message": "m"},
        format="json",
    )
    base = f"/api/projects/{project}"
    calls = [
        ("get", f"{base}/", None),
        ("patch", f"{base}/", {"name": "mine"}),
        ("delete", f"{base}/", None),
        ("post", f"{base}/restore/", None),
        ("get", f"{base}/pages/", None),
        ("post", f"{base}/pages/", {"source_path": "x.html"}),
        ("get", f"{base}/pages/{page_id}/", None),
        ("patch", f"{base}/pages/{page_id}/", {"priority": 1}),
        ("post", f"{base}/pages/{page_id}/restore/", None),
        ("get", f"{base}/pages/?deleted=only", None),
        ("delete", f"{base}/pages/{page_id}/", None),
        ("post", f"{base}/pages/{page_id}/status/", {"status": "processing"}),
        ("get", f"{base}/pages/{page_id}/logs/", None),
        ("post", f"{base}/pages/{page_id}/logs/", {"step": "s", "message": "evil"}),
        ("get", f"{base}/batches/", None),
        ("post", f"{base}/batches/", {"pages": [{"source_path": "x.html"}]}),
        ("get", f"{base}/batches/{batch['batch_id']}/", None),
        ("post", f"{base}/queue/claim/", None),
        ("post", f"{base}/queue/{page_id}/ack/", {}),
        ("post", f"{base}/queue/{page_id}/fail/", {"error": "x"}),
        ("delete", f"/api/keys/{key_hash(alice.secret)}/", None),
    ]
    for method, url, body in calls:
        response = getattr(bob.client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert "name" not in response.json() and "data" not in response.json()
    # nothing changed for alice
    assert alice.client.get(f"{base}/").json()["name"] == "repairsbypost.com"
    assert alice.client.get(f"{base}/pages/").json()["pagination"]["total"] == 2
    # the upload's entry and alice's own
    assert alice.client.get(f"{base}/pages/{page_id}/logs/").json()["pagination"]["total"] == 2
    assert bob.client.get("/api/projects/").json()["data"] == []
    assert alice.client.get("/api/me/").status_code == 200  # alice's key still works


def test_pages_list_filters_ordering_and_envelope() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    first = upload(alice, project, 12)
    second = upload(alice, project, 3, extraction={"engine": "html"})
    pages = alice.client.get(f"/api/projects/{project}/pages/?limit=5&page=2&ordering=-priority")
    body = pages.json()
    assert set(body) == {"data", "pagination"}
    assert body["pagination"]["total"] == 12  # the second upload re-addressed pages 0-2
    assert body["pagination"]["page"] == 2 and body["pagination"]["pages"] == 3
    assert [row["priority"] for row in body["data"]] == sorted(
        [row["priority"] for row in body["data"]], reverse=True
    )
    by_batch = alice.client.get(f"/api/projects/{project}/pages/?batch_id={second['batch_id']}")
    assert by_batch.json()["pagination"]["total"] == 3
    assert first["batch_id"] != second["batch_id"]
    queued = alice.client.get(f"/api/projects/{project}/pages/?status=queued")
    assert queued.json()["pagination"]["total"] == 12
    bad = alice.client.get(f"/api/projects/{project}/pages/?ordering=content&limit=abc")
    assert bad.status_code == 400


def test_pages_list_with_their_objects_in_one_query() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    upload(alice, project, 7, extraction={"engine": "html"})
    url = f"/api/projects/{project}/pages/?limit=5&ordering=source_path"
    rows = alice.client.get(url).json()
    kv, sql = conf.kv_store().round_trips, conf.sql_database().round_trips
    with kv.track() as kv_delta, sql.track() as sql_delta:
        expanded = alice.client.get(url + "&expand=objects").json()
    plain = (kv_delta.count, sql_delta.count)
    assert expanded["pagination"] == rows["pagination"]
    assert [page["page_id"] for page in expanded["data"]] == [
        row["page_id"] for row in rows["data"]
    ]
    for page in expanded["data"]:
        detail = alice.client.get(f"/api/projects/{project}/pages/{page['page_id']}/").json()
        assert page == detail and page["extraction"] == {"engine": "html"}
    with kv.track() as kv_delta, sql.track() as sql_delta:
        alice.client.get(url)
    # the objects cost one bulk KV read more than the rows, whatever the page size
    assert plain == (kv_delta.count + 1, sql_delta.count)
    bad = alice.client.get(url + "&expand=everything")
    assert bad.status_code == 400 and "expand" in bad.text


def test_page_detail_is_the_full_object_and_ids_are_deterministic() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    extraction = {
        "engine": "html",
        "main_selector": "main",
        "head": {"title": "Rolex repair"},
        "above_fold_blocks": [{"id": "block-0", "type": "h1", "content": "Rolex repair"}],
        "dimensions": {"brand": "rolex"},
    }
    created = alice.client.post(
        f"/api/projects/{project}/pages/",
        {"source_path": "dist/local/rolex-repair.html", "extraction": extraction},
        format="json",
    )
    assert created.status_code == 201
    page_id = created.json()["page_id"]
    from datamodel import ids

    assert page_id == ids.page_id(project, "dist/local/rolex-repair.html")
    detail = alice.client.get(f"/api/projects/{project}/pages/{page_id}/").json()
    assert detail["extraction"]["above_fold_blocks"][0]["content"] == "Rolex repair"
    again = alice.client.post(
        f"/api/projects/{project}/pages/",
        {"source_path": "dist/local/rolex-repair.html"},
        format="json",
    )
    assert again.status_code == 200  # the same path again replaces the page and queues it
    assert again.json()["page_id"] == page_id and again.json()["status"] == "queued"


def test_a_page_uploaded_alone_has_a_batch_of_its_own_each_time() -> None:
    """Every upload is a batch: a new page uploaded on its own is ``uploaded`` in a batch of
    one (``uploading``), its page and status object naming it. Uploaded again alone, it is
    queued in a new batch of one, and the batch it was in (one of its own, or a batch of
    many) counts it no longer."""
    from nimbus.models import PageStatus, Queue

    alice = api_user("alice")
    project = make_project(alice)
    url = f"/api/projects/{project}/pages/"

    def batch_of(page_id: str) -> Batch:
        page = Page.objects.auth("alice").get(project_id=project, page_id=page_id)
        status = PageStatus.objects.auth("alice").get(project_id=project, page_id=page_id)
        assert isinstance(page.get("batch_id"), str)
        assert status.get("batch_id") == page.get("batch_id")
        assert status.get("status") == page.get("status")
        return Batch.objects.auth("alice").get(project_id=project, batch_id=page.get("batch_id"))

    created = alice.client.post(url, {"source_path": "alone.html"}, format="json")
    assert created.status_code == 201
    page_id, first_id = created.json()["page_id"], created.json()["batch_id"]
    first = batch_of(page_id)
    assert first.get("batch_id") == first_id
    assert (first.get("status"), first.get("page_count")) == ("uploading", 1)
    assert {pid: entry["status"] for pid, entry in first.get("pages").items()} == {
        page_id: "uploaded"
    }
    assert first.get("summary")["pending"] == 1

    again = alice.client.post(url, {"source_path": "alone.html"}, format="json")
    assert again.status_code == 200
    second = batch_of(page_id)
    assert second.get("batch_id") == again.json()["batch_id"] != first_id
    assert (second.get("status"), second.get("page_count")) == ("queued", 1)
    assert {pid: entry["status"] for pid, entry in second.get("pages").items()} == {
        page_id: "queued"
    }
    left = Batch.objects.auth("alice").get(project_id=project, batch_id=first_id)
    assert (left.get("pages"), left.get("page_count")) == ({}, 0)
    (item,) = Queue.objects.auth("alice").get(project).get("items")
    assert (item["page_id"], item["batch_id"]) == (page_id, second.get("batch_id"))

    many = upload(alice, project, 2)  # a path of a batch of many, uploaded again alone
    moved = alice.client.post(url, {"source_path": "dist/local/page-0.html"}, format="json")
    assert moved.status_code == 200
    assert batch_of(moved.json()["page_id"]).get("page_count") == 1
    rest = Batch.objects.auth("alice").get(project_id=project, batch_id=many["batch_id"])
    assert rest.get("page_count") == 1 and moved.json()["page_id"] not in rest.get("pages")
    usage = alice.client.get(f"/api/projects/{project}/").json()["usage"]
    assert (usage["total_batches"], usage["total_pages"]) == (4, 3)


def test_pages_uploaded_one_by_one_take_the_next_batch_ids_at_a_fixed_cost() -> None:
    """Many single uploads in a second run the project's batch ids ahead of the clock; each
    takes the second after the latest one without trying every second up to it."""
    alice = api_user("alice")
    project = make_project(alice)
    kv, sql = conf.kv_store().round_trips, conf.sql_database().round_trips
    costs, batch_ids = [], []
    for number in range(12):
        with kv.track() as kv_delta, sql.track() as sql_delta:
            created = alice.client.post(
                f"/api/projects/{project}/pages/", {"source_path": f"{number}.html"}, format="json"
            )
        assert created.status_code == 201
        batch_ids.append(created.json()["batch_id"])
        costs.append((kv_delta.count, sql_delta.count))
    assert batch_ids == sorted(set(batch_ids))  # distinct, in order
    assert costs[3] == costs[-1], costs  # one taken id tried, then the latest's next second


def test_status_transitions() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = make_page(alice, project)
    url = f"/api/projects/{project}/pages/{page_id}/status/"

    def move(status: str) -> int:
        return alice.client.post(url, {"status": status}, format="json").status_code

    assert move("processing") == 409  # uploaded -> processing skips queued
    assert move("done") == 409
    assert move("queued") == 200
    assert move("uploaded") == 409
    assert move("processing") == 200
    assert move("done") == 200
    assert move("failed") == 409  # done is final
    assert alice.client.post(url, {"status": "bogus"}, format="json").status_code == 400
    status_object = conf.kv_store().get("NIMBUS_STATUS", f"status:{project}:{page_id}")
    assert status_object is not None and b'"done"' in status_object


def test_batch_upload_round_trips_do_not_grow_with_pages() -> None:
    alice = api_user("alice")
    costs = []
    for count in (5, 200):
        # a project each: pages uploaded again also leave their earlier batch (fixed cost)
        project = make_project(alice, f"site-{count}.example")
        time.sleep(1.01 - time.time() % 1)  # batch ids have one-second resolution
        kv, sql = conf.kv_store().round_trips, conf.sql_database().round_trips
        with kv.track() as kv_delta, sql.track() as sql_delta:
            upload(alice, project, count, extraction={"engine": "html"})
        costs.append((kv_delta.count, sql_delta.count))
        usage = alice.client.get(f"/api/projects/{project}/").json()["usage"]
        assert usage["total_pages"] == count
    assert costs[0] == costs[1]


def test_batch_summary_follows_page_statuses() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, 3)
    url = f"/api/projects/{project}/batches/{batch['batch_id']}/"
    assert alice.client.get(url).json()["summary"]["pending"] == 3
    claims = [alice.client.post(f"/api/projects/{project}/queue/claim/").json() for _ in range(3)]
    alice.client.post(
        f"/api/projects/{project}/queue/{claims[0]['page_id']}/ack/", {}, format="json"
    )
    for _ in range(MAX_ATTEMPTS):
        alice.client.post(
            f"/api/projects/{project}/queue/{claims[1]['page_id']}/fail/",
            {"error": "AI timeout"},
            format="json",
        )
        alice.client.post(f"/api/projects/{project}/queue/claim/")
    summary = alice.client.get(url).json()
    assert summary["summary"]["completed"] == 1
    assert summary["summary"]["failed"] == 1
    assert summary["summary"]["pending"] == 1
    assert summary["status"] == "processing"
    stored = Batch.objects.auth("alice").get(project_id=project, batch_id=batch["batch_id"])
    assert stored.get("pages")[claims[1]["page_id"]]["error"] == "AI timeout"


def test_queue_claims_highest_priority_first_and_retries_failures() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    upload(alice, project, 4)  # priorities 1, 2, 3, 4
    claim = f"/api/projects/{project}/queue/claim/"
    first = alice.client.post(claim).json()
    assert first["priority"] == 4 and first["attempts"] == 1
    page = Page.objects.auth("alice").get(project_id=project, page_id=first["page_id"])
    assert page.get("status") == "processing"
    fail = f"/api/projects/{project}/queue/{first['page_id']}/fail/"
    retried = alice.client.post(fail, {"error": "timeout"}, format="json").json()
    assert retried["retry"] is True and retried["page"]["status"] == "queued"
    again = alice.client.post(claim).json()
    assert again["page_id"] == first["page_id"] and again["attempts"] == 2
    alice.client.post(fail, {"error": "timeout"}, format="json")
    third = alice.client.post(claim).json()
    assert third["attempts"] == MAX_ATTEMPTS
    final = alice.client.post(fail, {"error": "timeout"}, format="json").json()
    assert final["retry"] is False and final["page"]["status"] == "failed"
    remaining = [alice.client.post(claim).json()["priority"] for _ in range(3)]
    assert remaining == [3, 2, 1]
    assert alice.client.post(claim).status_code == 204
    ack = alice.client.post(
        f"/api/projects/{project}/queue/{first['page_id']}/ack/", {}, format="json"
    )
    assert ack.status_code == 409  # no longer claimed
    logs = alice.client.get(f"/api/projects/{project}/pages/{first['page_id']}/logs/").json()
    errors = [entry for entry in logs["data"] if entry["level"] == "error"]
    assert len(errors) == MAX_ATTEMPTS


def test_logs_append_and_list() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = make_page(alice, project)
    url = f"/api/projects/{project}/pages/{page_id}/logs/"
    for i in range(5):
        entry = {"level": "info", "step": "upload", "message": f"step {i}", "duration_ms": i}
        assert alice.client.post(url, entry, format="json").status_code == 201
    listed = alice.client.get(f"{url}?limit=2&page=3").json()
    assert [entry["message"] for entry in listed["data"]] == ["step 3", "step 4"]
    assert listed["pagination"]["total"] == 6  # the upload's own entry first
    bad = alice.client.post(url, {"level": "loud", "message": ""}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"level", "step", "message"}


def test_soft_deleted_objects_disappear() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = make_page(alice, project)
    assert alice.client.delete(f"/api/projects/{project}/pages/{page_id}/").status_code == 204
    assert alice.client.get(f"/api/projects/{project}/pages/{page_id}/").status_code == 404
    assert alice.client.get(f"/api/projects/{project}/pages/").json()["data"] == []
    assert alice.client.delete(f"/api/projects/{project}/").status_code == 204
    assert alice.client.get(f"/api/projects/{project}/").status_code == 404
    assert alice.client.get("/api/projects/").json()["pagination"]["total"] == 0
    assert Page.objects.system().get(project_id=project, page_id=page_id, include_deleted=True)


def test_validation_errors_are_field_level() -> None:
    alice = api_user("alice")
    response = alice.client.post(
        "/api/projects/",
        {"name": "", "settings": {"tone": "loud", "max_pages_per_batch": 0}},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"name", "settings"}
    assert set(response.json()["settings"]) == {"tone", "max_pages_per_batch"}
    project = make_project(alice)
    empty = alice.client.post(f"/api/projects/{project}/batches/", {"pages": []}, format="json")
    assert empty.status_code == 400 and "pages" in empty.json()
    duplicate = alice.client.post(
        f"/api/projects/{project}/batches/",
        {"pages": [{"source_path": "a.html"}, {"source_path": "a.html"}]},
        format="json",
    )
    assert duplicate.status_code == 409


def test_oversize_bodies_are_413(settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    alice = api_user("alice")
    response = alice.client.post("/api/projects/", {"name": "x" * 5000}, format="json")
    assert response.status_code == 413
    assert alice.client.get("/api/projects/").json()["data"] == []


def test_a_page_log_stays_bounded_in_bytes_and_an_oversized_entry_is_refused() -> None:
    from nimbus.models import PageLog
    from nimbus.models.logs import MAX_ENTRY_BYTES, MAX_LOG_BYTES

    alice = api_user("alice")
    project = make_project(alice)
    page_id = make_page(alice, project)
    url = f"/api/projects/{project}/pages/{page_id}/logs/"
    bulk = "x" * (MAX_ENTRY_BYTES - 200)
    for i in range(MAX_LOG_BYTES // len(bulk) + 10):
        entry = {"step": "optimize", "message": f"step {i}", "data": {"html": bulk}}
        assert alice.client.post(url, entry, format="json").status_code == 201
    log = PageLog.objects.system(using=conf.get_connection()).get(
        project_id=project, page_id=page_id
    )
    stored = len(codec.dumps(log.get("entries")))
    assert stored <= MAX_LOG_BYTES  # the oldest entries went
    listed = alice.client.get(f"{url}?limit=1000").json()["data"]
    assert listed[-1]["message"] == f"step {MAX_LOG_BYTES // len(bulk) + 9}"  # the newest kept
    too_big = {"step": "optimize", "message": "m", "data": {"html": "x" * MAX_ENTRY_BYTES}}
    refused = alice.client.post(url, too_big, format="json")
    assert refused.status_code == 400 and "may take" in refused.json()["data"][0]
