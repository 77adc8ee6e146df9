"""Issue 16, data lost or unreachable: batches of different projects and users never touch each
other, a deleted page's path can be uploaded again, a deleted project's children answer 404,
concurrent uploads all succeed, a single page posted again replaces and re-queues it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from datamodel import Scope
from nimbus import conf, lifecycle
from nimbus.models import DOMAIN_MODELS, Batch, Page
from tests.nimbus.api_support import ApiUser, api_user, make_project
from tests.nimbus.test_lifecycle import assert_agreement

pytestmark = pytest.mark.usefixtures("domain")


def pages(count: int, prefix: str = "page") -> list[dict[str, Any]]:
    return [{"source_path": f"dist/{prefix}-{i}.html", "priority": i + 1} for i in range(count)]


def post_batch(user: ApiUser, project: str, items: list[dict[str, Any]]) -> Any:
    return user.client.post(f"/api/projects/{project}/batches/", {"pages": items}, format="json")


def start_of_second() -> None:
    """Wait for the next second to begin, so the calls that follow share one second."""
    time.sleep(1.02 - time.time() % 1)


def sync(*options: str) -> int:
    """``nimbus_sync``'s exit status over the domain models (printed output on failure)."""
    models = [f"--model={model._meta.name}" for model in DOMAIN_MODELS]
    out = StringIO()
    try:
        call_command("nimbus_sync", *options, *models, "--verbosity", "2", stdout=out)
    except CommandError as exc:
        print(out.getvalue(), exc)
        return exc.returncode
    return 0


def sync_check() -> int:
    """``nimbus_sync --check``'s exit status."""
    return sync("--check")


def test_batches_of_two_projects_in_one_second_are_both_kept() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    first, second = make_project(alice, "one.example"), make_project(alice, "two.example")
    third = make_project(bob, "bob.example")
    start_of_second()
    uploads = [
        (alice, first, post_batch(alice, first, pages(2, "one"))),
        (alice, second, post_batch(alice, second, pages(3, "two"))),
        (bob, third, post_batch(bob, third, pages(1, "bob"))),
    ]
    for user, project, response in uploads:
        assert response.status_code == 201, response.json()
        batch = response.json()
        assert batch["batch_id"].startswith("batch_") and len(batch["batch_id"]) == 21
        listed = user.client.get(f"/api/projects/{project}/batches/").json()
        assert [row["batch_id"] for row in listed["data"]] == [batch["batch_id"]]
        detail = user.client.get(f"/api/projects/{project}/batches/{batch['batch_id']}/")
        assert detail.status_code == 200
        assert detail.json()["project_id"] == project
        assert detail.json()["pages"] == batch["pages"]
    assert sync_check() == 0


def test_a_deleted_pages_path_uploaded_again_brings_the_page_back() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = next(iter(post_batch(alice, project, pages(1)).json()["pages"]))
    url = f"/api/projects/{project}/pages/{page_id}/"
    assert alice.client.delete(url).status_code == 204
    assert alice.client.get(url).status_code == 404
    again = post_batch(alice, project, pages(1))
    assert again.status_code == 201
    assert again.json()["pages"][page_id]["status"] == "queued"
    detail = alice.client.get(url)
    assert detail.status_code == 200 and detail.json()["status"] == "queued"
    assert detail.json()["batch_id"] == again.json()["batch_id"]
    listed = alice.client.get(f"/api/projects/{project}/pages/").json()
    assert [row["page_id"] for row in listed["data"]] == [page_id]
    claimed = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claimed.status_code == 200 and claimed.json()["page_id"] == page_id
    assert sync_check() == 0


def test_a_deleted_projects_children_answer_404_everywhere() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    batch = post_batch(alice, project, pages(2)).json()
    page_id = next(iter(batch["pages"]))
    base = f"/api/projects/{project}"
    logs = f"{base}/pages/{page_id}/logs/"
    assert alice.client.post(logs, {"step": "s", "message": "m"}, format="json").status_code == 201
    assert alice.client.delete(f"{base}/").status_code == 204
    calls: list[tuple[str, str, Any]] = [
        ("get", f"{base}/", None),
        ("get", f"{base}/pages/", None),
        ("post", f"{base}/pages/", {"source_path": "new.html"}),
        ("get", f"{base}/pages/{page_id}/", None),
        ("delete", f"{base}/pages/{page_id}/", None),
        ("post", f"{base}/pages/{page_id}/status/", {"status": "processing"}),
        ("get", logs, None),
        ("post", logs, {"step": "s", "message": "after delete"}),
        ("get", f"{base}/batches/", None),
        ("post", f"{base}/batches/", {"pages": pages(1, "late")}),
        ("get", f"{base}/batches/{batch['batch_id']}/", None),
        ("post", f"{base}/queue/claim/", None),
        ("post", f"{base}/queue/{page_id}/ack/", {}),
        ("post", f"{base}/queue/{page_id}/fail/", {"error": "x"}),
    ]
    for method, url, body in calls:
        response = getattr(alice.client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
    # the delete cascaded: the children are soft-deleted with their project, not just hidden
    stored = Page.objects.system().get(project_id=project, page_id=page_id, include_deleted=True)
    assert stored.get("deleted_at") is not None
    assert sync_check() == 0


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on threads released at once, at the start of a second."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    start_of_second()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def uploader(user: ApiUser, project: str, prefix: str, count: int) -> Callable[[], Any]:
    return lambda: post_batch(user, project, pages(count, prefix))


def test_concurrent_uploads_to_one_and_two_projects_all_succeed() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    busy = make_project(alice, "busy.example")
    other = make_project(bob, "other.example")
    uploads = [(alice, busy, f"busy{i}") for i in range(6)] + [
        (bob, other, f"other{i}") for i in range(2)
    ]

    responses = run_together([uploader(*upload, count=2) for upload in uploads])
    assert [response.status_code for response in responses] == [201] * len(uploads), [
        response.json() for response in responses
    ]
    for user, project, count in ((alice, busy, 6), (bob, other, 2)):
        ids = {r.json()["batch_id"] for r in responses if r.json()["project_id"] == project}
        assert len(ids) == count
        listed = user.client.get(f"/api/projects/{project}/batches/?limit=100").json()
        assert {row["batch_id"] for row in listed["data"]} == ids
        assert listed["pagination"]["total"] == count
        detail = user.client.get(f"/api/projects/{project}/").json()
        assert detail["usage"]["total_batches"] == count
        assert detail["usage"]["total_pages"] == 2 * count
        listed_pages = user.client.get(f"/api/projects/{project}/pages/").json()
        assert listed_pages["pagination"]["total"] == 2 * count
    assert sync_check() == 0


def test_concurrent_uploads_of_the_same_paths_all_succeed() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    responses = run_together([lambda: post_batch(alice, project, pages(3)) for _ in range(4)])
    assert [response.status_code for response in responses] == [201] * 4, [
        response.json() for response in responses
    ]
    listed = alice.client.get(f"/api/projects/{project}/pages/").json()
    assert listed["pagination"]["total"] == 3
    usage = alice.client.get(f"/api/projects/{project}/").json()["usage"]
    assert (usage["total_pages"], usage["total_batches"]) == (3, 4)
    assert lifecycle.reconcile(Scope(conf.get_connection(), None), project) == []
    assert_agreement("alice", project, {r.json()["batch_id"] for r in responses}, set())
    assert sync_check() == 0


def uploads_in_order(
    monkeypatch: pytest.MonkeyPatch,
    user: ApiUser,
    project: str,
    first: str,
    between: Callable[[], Any] | None = None,
) -> set[str]:
    """Two uploads of the same paths, on threads: both write their pages (the pages'
    compare-and-set puts one after the other), then make the rest of their moves
    (``lifecycle.enqueue``) one after the other, the upload that wrote the pages last first
    (``first="newer"``) or the other; ``between`` runs between the two. Their batch ids."""
    real = lifecycle.enqueue
    written = threading.Barrier(2, timeout=30)
    turn = threading.Event()

    def enqueue(scope: Scope, written_pages: list[Page], **options: Any) -> None:
        written.wait()  # both uploads have written their pages
        stored = Page.objects.bind(scope).get(project_id=project, page_id=written_pages[0].pk)
        latest = stored.get("batch_id") == written_pages[0].get("batch_id")
        if latest != (first == "newer"):
            assert turn.wait(30)
            real(scope, written_pages, **options)
            return
        try:
            real(scope, written_pages, **options)
            if between is not None:
                between()
        finally:
            turn.set()

    monkeypatch.setattr(lifecycle, "enqueue", enqueue)
    responses = run_together([lambda: post_batch(user, project, pages(3)) for _ in range(2)])
    monkeypatch.setattr(lifecycle, "enqueue", real)
    assert [response.status_code for response in responses] == [201, 201]
    return {response.json()["batch_id"] for response in responses}


@pytest.mark.parametrize("first", ["newer", "older"])
def test_two_uploads_of_the_same_paths_leave_each_page_in_the_batch_that_wrote_it_last(
    first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever upload makes the rest of its moves first, the batch that wrote a page last
    counts it, the other batch drops it, and ``reconcile`` finds nothing."""
    alice = api_user("alice")
    project = make_project(alice)
    batch_ids = uploads_in_order(monkeypatch, alice, project, first)
    assert lifecycle.reconcile(Scope(conf.get_connection(), None), project) == []
    assert_agreement("alice", project, batch_ids, set())
    rows = Page.objects.auth("alice").filter(project_id=project).values("page_id", "batch_id")
    (latest,) = {row["batch_id"] for row in rows}
    for batch_id in batch_ids:
        batch = Batch.objects.auth("alice").get(project_id=project, batch_id=batch_id)
        expected = {row["page_id"] for row in rows} if batch_id == latest else set()
        assert set(batch.get("pages")) == expected, batch_id
        assert batch.get("page_count") == len(expected)
        assert batch.get("summary")["pending"] == len(expected)
    assert sync_check() == 0


def test_a_late_upload_move_leaves_the_claim_of_a_newer_upload_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The newer upload's page is claimed before the older upload's late queue write: the
    claimed item stays (an older upload's fresh item would make the processing page claimable
    as if queued), and the worker acks the page."""
    alice = api_user("alice")
    project = make_project(alice)
    claims: list[Any] = []

    def claim() -> None:
        claims.append(alice.client.post(f"/api/projects/{project}/queue/claim/"))

    batch_ids = uploads_in_order(monkeypatch, alice, project, "newer", between=claim)
    assert claims[0].status_code == 200
    page_id = claims[0].json()["page_id"]
    assert lifecycle.reconcile(Scope(conf.get_connection(), None), project) == []
    assert_agreement("alice", project, batch_ids, set())
    ack = alice.client.post(f"/api/projects/{project}/queue/{page_id}/ack/", {}, format="json")
    assert ack.status_code == 200 and ack.json()["status"] == "done"
    assert sync_check() == 0


def test_posting_an_existing_page_path_replaces_and_requeues_it() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    url = f"/api/projects/{project}/pages/"
    created = alice.client.post(
        url, {"source_path": "a.html", "extraction": {"engine": "html"}}, format="json"
    )
    assert created.status_code == 201 and created.json()["status"] == "uploaded"
    page_id = created.json()["page_id"]
    again = alice.client.post(
        url, {"source_path": "a.html", "extraction": {"engine": "dom"}}, format="json"
    )
    assert again.status_code == 200, again.json()
    assert again.json()["page_id"] == page_id and again.json()["status"] == "queued"
    detail = alice.client.get(f"{url}{page_id}/").json()
    assert detail["extraction"] == {"engine": "dom"} and detail["status"] == "queued"
    claimed = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claimed.status_code == 200 and claimed.json()["page_id"] == page_id
    assert alice.client.get(url).json()["pagination"]["total"] == 1
    assert alice.client.delete(f"{url}{page_id}/").status_code == 204
    back = alice.client.post(url, {"source_path": "a.html"}, format="json")
    assert back.status_code == 200 and back.json()["status"] == "queued"
    assert alice.client.get(f"{url}{page_id}/").status_code == 200
    assert sync_check() == 0


def test_sync_repairs_a_rows_owner_and_project_drift() -> None:
    alice = api_user("alice")
    project, elsewhere = make_project(alice), make_project(alice, "elsewhere.example")
    batch = post_batch(alice, project, pages(2)).json()
    sql = conf.sql_database()
    sql.execute(
        "UPDATE batch_meta SET project_id = ?, user_id = ?, _version = 5 WHERE batch_id = ?",
        [elsewhere, "mallory", batch["batch_id"]],
    )
    sql.execute("UPDATE page_meta SET user_id = ?, _version = 7", ["mallory"])
    assert alice.client.get(f"/api/projects/{project}/batches/").json()["data"] == []
    assert sync_check() == 1
    assert sync("--repair") == 0
    assert sync_check() == 0
    listed = alice.client.get(f"/api/projects/{project}/batches/").json()["data"]
    assert [row["batch_id"] for row in listed] == [batch["batch_id"]]
    assert alice.client.get(f"/api/projects/{elsewhere}/batches/").json()["data"] == []
    assert alice.client.get(f"/api/projects/{project}/pages/").json()["pagination"]["total"] == 2


@pytest.mark.usefixtures("embedded")
def test_concurrent_uploads_on_the_embedded_default_all_succeed() -> None:
    alice, bob = api_user("alice"), api_user("bob")
    busy, other = make_project(alice, "busy.example"), make_project(bob, "other.example")
    uploads = [(alice, busy, f"b{i}") for i in range(8)] + [(bob, other, "o0"), (bob, other, "o1")]
    responses = run_together([uploader(*upload, count=3) for upload in uploads])
    assert [r.status_code for r in responses] == [201] * len(uploads), [r.json() for r in responses]
    for user, project, count in ((alice, busy, 8), (bob, other, 2)):
        listed = user.client.get(f"/api/projects/{project}/batches/?limit=100").json()
        assert listed["pagination"]["total"] == count
        assert (
            user.client.get(f"/api/projects/{project}/").json()["usage"]["total_batches"] == count
        )
    assert sync_check() == 0
