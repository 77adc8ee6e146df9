"""``nimbus_sync`` checks and repairs the page lifecycle of every project: the queue, status
objects, batch page maps and usage counters that disagree with the pages."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from nimbus.models import DOMAIN_MODELS, Page, PageStatus, Project, Queue
from tests.nimbus.api_support import api_user, make_page, make_project
from tests.nimbus.test_lifecycle import assert_agreement, upload

pytestmark = pytest.mark.usefixtures("domain")

MODELS = [f"--model={model._meta.name}" for model in DOMAIN_MODELS]


def sync(*options: str) -> tuple[int, str]:
    """``nimbus_sync``'s exit status and output over the domain models."""
    out = StringIO()
    try:
        call_command("nimbus_sync", *options, *MODELS, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def drifted_project() -> tuple[str, list[str]]:
    """A project of alice's with four disagreements made by hand: a page's status written
    directly (its status object and batch entry still say queued, its queue item is left), a
    queue item removed, and a wrong page count. The project and its batch's page ids."""
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html", "c.html"])
    a, b, c = list(batch["pages"])
    page = Page.objects.auth("alice").get(project_id=project, page_id=a)
    page.set("status", "done")
    page.save()  # the page only, without the rest of its move
    queue = Queue.objects.auth("alice").get(project)
    queue.set("items", [item for item in queue.get("items") if item["page_id"] != b])
    queue.save()
    stored = Project.objects.auth("alice").get(project)
    stored.set("usage", {**stored.get("usage"), "total_pages": 9})
    stored.save()
    return project, [a, b, c]


def test_check_reports_lifecycle_drift_per_project_and_repair_sets_it_from_the_pages() -> None:
    project, (a, b, _) = drifted_project()
    bob = api_user("bob")
    clean = make_project(bob, "clean.example")
    make_page(bob, clean)
    code, out = sync("--check")
    assert code == 1
    assert "lifecycle: 2 projects checked, 1 drifted, 5 disagreements with their pages" in out
    assert f"{project}: queue item of page {a!r}, which is 'done'" in out
    assert f"{project}: page {b!r} is 'queued' but not in the queue" in out
    assert f"{project}: status object of page {a!r} says 'queued', the page 'done'" in out
    assert f"{project}: batch " in out and f"says page {a!r} is 'queued', the page 'done'" in out
    assert f"{project}: project usage says total_pages 9, it has 3 live pages" in out
    assert clean not in out
    assert "Run with --repair to set the lifecycle from the pages." in out
    assert "5 lifecycle disagreements with the pages in 1 projects" in out
    code, out = sync()  # without --check: reported, exit 0
    assert code == 0 and "5 disagreements" in out
    code, out = sync("--repair")
    assert code == 0, out
    assert "1 drifted, 5 disagreements with their pages, 5 repaired" in out
    code, out = sync("--check")
    assert code == 0, out
    assert "lifecycle: 2 projects checked, 0 drifted, 0 disagreements with their pages" in out
    batches = {row["batch_id"] for row in Page.objects.auth("alice").values("batch_id")}
    assert_agreement("alice", project, batches, set())
    alice = api_user("alice")
    assert alice.client.get(f"/api/projects/{project}/").json()["usage"]["total_pages"] == 3
    claimed = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claimed.status_code == 200  # b is claimable again


def test_the_json_report_carries_the_lifecycle() -> None:
    project, _ = drifted_project()
    code, out = sync("--check", "--json")
    assert code == 1
    report = json.loads(out.split("\n")[0])
    assert report["lifecycle"]["checked"] == 1 and report["lifecycle"]["drift"] == 5
    [entry] = report["lifecycle"]["projects"]
    assert entry["project_id"] == project and len(entry["found"]) == 5
    assert entry["error"] is None
    assert report["drift"] == 5  # the metadata rows are right
    code, out = sync("--repair", "--json")
    assert code == 0 and json.loads(out)["lifecycle"]["repaired"] == 5
    code, out = sync("--check", "--json")
    assert code == 0
    assert json.loads(out)["lifecycle"] == {"checked": 1, "drift": 0, "repaired": 0, "projects": []}


def test_repair_makes_what_is_missing_for_the_projects_owner() -> None:
    """A lost queue and a lost status object are made again by the repair, which runs with
    system access, as the project's owner's: the owner's routes see them."""
    from nimbus import conf

    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html"])
    a, _ = list(batch["pages"])
    kv = conf.kv_store()
    kv.delete("NIMBUS_QUEUE", f"queue:{project}")
    kv.delete("NIMBUS_STATUS", f"status:{project}:{a}")
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 204
    assert sync("--repair")[0] == 0  # the rows of the lost objects go, then the lifecycle
    assert sync("--check")[0] == 0
    record = PageStatus.objects.auth("alice").get(project_id=project, page_id=a)
    assert record.get("status") == "queued" and record.get("batch_id") == batch["batch_id"]
    assert alice.client.post(f"/api/projects/{project}/queue/claim/").status_code == 200
    assert_agreement("alice", project, {batch["batch_id"]}, set())


def test_the_lifecycle_is_left_out_when_no_model_it_reads_is_checked() -> None:
    drifted_project()
    out = StringIO()
    call_command("nimbus_sync", "--check", "--model", "USER", stdout=out, stderr=StringIO())
    assert "lifecycle" not in out.getvalue()
