"""The page lifecycle (``nimbus.lifecycle``): a page's status, its queue entry, its status
object and its batch's counters move together, through every route that changes them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from datamodel import ids
from nimbus.models import Batch, Page, Queue
from tests.nimbus.api_support import ApiUser, api_user, make_page, make_project, stores_for

pytestmark = pytest.mark.usefixtures("domain")


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
    page_id = make_page(alice, project)
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


# -- every move, legal and illegal -------------------------------------------------------------

STATES = ["uploaded", "queued", "processing", "done", "failed"]
# What each route may do from each state, written out here independently of nimbus.lifecycle:
# (state, event) -> the state after it; an event missing here is refused (409, or 204 for a
# claim, which names no page) and changes nothing.
EXPECTED = {
    ("uploaded", "status:queued"): "queued",
    ("queued", "status:processing"): "processing",
    ("processing", "status:done"): "done",
    ("processing", "status:failed"): "failed",
    ("queued", "claim"): "processing",
    ("processing", "ack"): "done",
    ("processing", "fail"): "queued",  # attempts remain: queued for another try
    ("processing", "fail:last"): "failed",
    **{(state, "upload"): "queued" for state in STATES},
    **{(state, "delete"): "deleted" for state in STATES},
}
EVENTS = [f"status:{state}" for state in STATES] + [
    "claim",
    "ack",
    "fail",
    "fail:last",
    "upload",
    "delete",
]


def page_in_state(user: ApiUser, project: str, state: str, path: str = "a.html") -> str:
    """A page of ``project`` brought to ``state`` through the API, attempts left to spare."""
    if state == "uploaded":
        response = user.client.post(
            f"/api/projects/{project}/pages/", {"source_path": path}, format="json"
        )
        assert response.status_code == 201
        return response.json()["page_id"]
    page_id = page_of(upload(user, project, [path]), 0)
    if state == "queued":
        return page_id
    assert user.client.post(f"/api/projects/{project}/queue/claim/").json()["page_id"] == page_id
    if state in ("done", "failed"):
        body = {"status": state, "error": "broken"}
        assert (
            user.client.post(status_url(project, page_id), body, format="json").status_code == 200
        )
    return page_id


def act(user: ApiUser, project: str, page_id: str, event: str, path: str = "a.html") -> int:
    """Make ``event`` happen to ``page_id`` through the API; the HTTP status."""
    base = f"/api/projects/{project}"
    if event.startswith("status:"):
        body = {"status": event.split(":")[1]}
        return user.client.post(status_url(project, page_id), body, format="json").status_code
    if event == "claim":
        return user.client.post(f"{base}/queue/claim/").status_code
    if event == "ack":
        return user.client.post(f"{base}/queue/{page_id}/ack/", {}, format="json").status_code
    if event.startswith("fail"):
        body = {"error": "timeout"}
        return user.client.post(f"{base}/queue/{page_id}/fail/", body, format="json").status_code
    if event == "upload":
        response = user.client.post(
            f"{base}/batches/", {"pages": [{"source_path": path}]}, format="json"
        )
        return response.status_code
    if event == "restore":
        return user.client.post(f"{base}/pages/{page_id}/restore/").status_code
    assert event == "delete"
    return user.client.delete(f"{base}/pages/{page_id}/").status_code


def observed_state(user: ApiUser, project: str, page_id: str) -> str:
    response = user.client.get(f"/api/projects/{project}/pages/{page_id}/")
    if response.status_code == 404:
        return "deleted"
    assert response.status_code == 200
    return response.json()["status"]


def assert_agreement(user_id: str, project: str, batch_ids: set[str], deleted: set[str]) -> None:
    """The page statuses, the queue, the status objects and the batches of ``project`` agree.

    * a page is in the queue iff it is queued or processing; its item is unclaimed iff it is
      queued; every queue item's page is live; no page has two items;
    * a page's status object shows its status and batch (a deleted page's is deleted too);
    * every batch's summary and page count follow its page map, whose entries are exactly the
      live pages in that batch, each with its page's status.
    """
    from nimbus.models import Page, PageStatus
    from nimbus.models.batch import summarize

    live = {
        row["page_id"]: row
        for row in Page.objects.auth(user_id)
        .filter(project_id=project)
        .values("page_id", "status", "batch_id")
    }
    queue = Queue.objects.auth(user_id).get_or_none(project)
    items = queue.get("items") if queue is not None else []
    by_page = {item["page_id"]: item for item in items}
    assert len(by_page) == len(items), "a page has two queue items"
    for page_id, row in live.items():
        status = row["status"]
        item = by_page.get(page_id)
        assert (item is not None) == (status in ("queued", "processing")), (page_id, status, item)
        if item is not None:
            assert (item.get("claimed_at") is None) == (status == "queued"), (status, item)
        record = PageStatus.objects.auth(user_id).get_or_none(project_id=project, page_id=page_id)
        assert record is None or record.get("status") == status, (page_id, status)
        assert record is None or record.get("batch_id") == row["batch_id"], (page_id, record)
        assert record is not None or status == "uploaded", page_id
    assert set(by_page) <= set(live), f"queue items of pages not live: {set(by_page) - set(live)}"
    for page_id in deleted - set(live):
        assert (
            PageStatus.objects.auth(user_id).get_or_none(project_id=project, page_id=page_id)
            is None
        )
    for batch_id in batch_ids:
        batch = Batch.objects.auth(user_id).get(project_id=project, batch_id=batch_id)
        pages = batch.get("pages")
        assert batch.get("summary") == summarize(pages), batch_id
        assert batch.get("page_count") == len(pages), batch_id
        members = {pid for pid, row in live.items() if row["batch_id"] == batch_id}
        assert set(pages) == members, (batch_id, set(pages) ^ members)
        for page_id, entry in pages.items():
            assert entry["status"] == live[page_id]["status"], (batch_id, page_id)


CASES = [(state, event) for state in STATES for event in EVENTS]


@pytest.mark.parametrize(("state", "event"), CASES, ids=[f"{s}-{e}" for s, e in CASES])
def test_every_move(state: str, event: str) -> None:
    from nimbus.lifecycle import MAX_ATTEMPTS

    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_in_state(alice, project, state)
    if event == "fail:last" and state == "processing":
        for _ in range(MAX_ATTEMPTS - 1):  # use up the attempts but the last
            assert act(alice, project, page_id, "fail") == 200
            assert act(alice, project, page_id, "claim") == 200
    batches = {
        row["batch_id"]
        for row in Batch.objects.auth("alice").filter(project_id=project).values("batch_id")
    }
    expected = EXPECTED.get((state, event))
    code = act(alice, project, page_id, event)
    after = observed_state(alice, project, page_id)
    if expected is None:
        assert code == (204 if event == "claim" else 409), code
        assert after == state
    else:
        assert code in (200, 201, 204), code
        assert after == expected
    batches |= {
        row["batch_id"]
        for row in Batch.objects.auth("alice").filter(project_id=project).values("batch_id")
    }
    assert_agreement("alice", project, batches, {page_id} if after == "deleted" else set())


@pytest.mark.parametrize("state", STATES)
def test_a_restored_page_comes_back_in_its_status(state: str) -> None:
    """Deleted in any state, a page comes back in that state: in the queue if queued (an
    unclaimed item) or processing (claimed again now, so its worker may still ack it), its
    status object and batch entry back, the batch counting it again."""
    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_in_state(alice, project, state)
    other = page_in_state(alice, project, "queued", path="other.html")
    batches = {
        row["batch_id"]
        for row in Batch.objects.auth("alice").filter(project_id=project).values("batch_id")
    }
    assert act(alice, project, page_id, "delete") == 204
    assert_agreement("alice", project, batches, {page_id})
    assert act(alice, project, page_id, "restore") == 200
    assert observed_state(alice, project, page_id) == state
    assert_agreement("alice", project, batches, set())
    log = alice.client.get(f"/api/projects/{project}/pages/{page_id}/logs/").json()["data"]
    assert log[-1]["message"].startswith("restored") and log[-1]["data"]["to"] == state
    if state == "processing":
        ack = alice.client.post(f"/api/projects/{project}/queue/{page_id}/ack/", {}, format="json")
        assert ack.status_code == 200 and ack.json()["status"] == "done"
    if state == "queued":  # claimable again
        claimed = {alice.client.post(f"/api/projects/{project}/queue/claim/").json()["page_id"]}
        claimed.add(alice.client.post(f"/api/projects/{project}/queue/claim/").json()["page_id"])
        assert claimed == {page_id, other}
    assert act(alice, project, page_id, "restore") == 404  # not deleted any more


def test_the_restore_moves_are_one_per_status() -> None:
    from nimbus.lifecycle import DELETED, MOVES

    restores = {move.target: move for move in MOVES if move.event == "restore"}
    assert set(restores) == set(STATES)
    assert all(move.source == DELETED for move in restores.values())
    assert {t for t, m in restores.items() if m.queue != "remove"} == {"queued", "processing"}


def test_every_refused_move_names_the_states() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_in_state(alice, project, "done")
    for target in STATES:
        response = alice.client.post(
            status_url(project, page_id), {"status": target}, format="json"
        )
        assert response.status_code == 409
        assert response.json()["detail"] == (
            f"page {page_id!r} cannot go from 'done' to {target!r}; "
            "it may go to nowhere: 'done' is final"
        )
    fail = alice.client.post(
        f"/api/projects/{project}/queue/{page_id}/fail/", {"error": "x"}, format="json"
    )
    assert fail.status_code == 409
    assert fail.json()["detail"] == (
        f"page {page_id!r} is 'done': only a page that is 'processing' can be failed"
    )


def test_an_expired_claim_is_claimed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from nimbus.lifecycle import queue

    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_in_state(alice, project, "processing")
    assert act(alice, project, page_id, "claim") == 204
    monkeypatch.setattr(queue, "CLAIM_TIMEOUT", dt.timedelta(seconds=-1))
    again = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert again.status_code == 200
    assert again.json()["page_id"] == page_id and again.json()["attempts"] == 2
    assert observed_state(alice, project, page_id) == "processing"
    assert_agreement("alice", project, set(), set())


# -- a state machine over the HTTP API ---------------------------------------------------------

PATHS = ["a.html", "b.html", "c.html", "d.html"]
ANY_PATH = st.sampled_from([*PATHS, None])  # None: a page being processed


class PageLifecycle(RuleBasedStateMachine):
    """Two users, a project each, the same few paths: upload batches (the same paths again
    too), single pages, set statuses, claim, ack, fail (retried or final), delete, and try
    each other's pages, restore deleted pages, change priorities, delete and restore a
    project. After every step: no 5xx; every route did what ``EXPECTED`` says from the state
    it found; page statuses, queue items, status objects and batch counts agree; nothing
    deleted is claimable; another user's pages answer 404 and do not change; a deleted
    project's routes answer 404 (a page restore 409), and its restore brings back what its
    delete took."""

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, ApiUser] = {}
        self.projects: dict[str, str] = {}
        self.batches: dict[str, set[str]] = {}
        self.deleted: dict[str, set[str]] = {}
        self.gone: set[str] = set()  # users whose project is deleted
        self.at_delete: dict[str, dict[str, str]] = {}  # their live pages when it was

    @initialize()
    def start(self) -> None:
        for name in ("alice", "bob"):
            user = api_user()
            self.users[name] = user
            self.projects[name] = make_project(user, f"{name}.example")
            self.batches[name] = set()
            self.deleted[name] = set()

    def page(self, name: str, path: str | None) -> tuple[ApiUser, str, str, str]:
        """The user, project, page id of ``path`` and the page's state (or "deleted", which
        also stands for never uploaded). ``None`` picks a page being processed, if any (so
        ack and fail find one often)."""
        user, project = self.users[name], self.projects[name]
        if path is None:
            busy = {
                row["page_id"]
                for row in Page.objects.auth(user.user_id)
                .filter(project_id=project, status="processing")
                .values("page_id")
            }
            path = next((p for p in PATHS if ids.page_id(project, p) in busy), PATHS[0])
        page_id = ids.page_id(project, path)
        found = Page.objects.auth(user.user_id).get_or_none(project_id=project, page_id=page_id)
        return user, project, page_id, found.get("status") if found is not None else "deleted"

    def expect(self, name: str, page_id: str, event: str, code: int, before: str) -> None:
        path = next(p for p in PATHS if ids.page_id(self.projects[name], p) == page_id)
        _, _, page_id, after = self.page(name, path)
        assert code < 500, (event, code)
        if before == "deleted" and event != "upload":
            assert code == 404, (event, code)
            assert after == "deleted"
            return
        expected = EXPECTED.get((before, event))
        if expected is None:
            assert code == 409, (before, event, code)
            assert after == before, (before, event, after)
        else:
            assert code in (200, 201, 204), (before, event, code)
            if expected == "deleted":
                self.deleted[name].add(page_id)
            assert after == expected, (before, event, after)

    @rule(
        name=st.sampled_from(["alice", "bob"]),
        paths=st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True),
        priority=st.integers(1, 10),
    )
    def upload_batch(self, name: str, paths: list[str], priority: int) -> None:
        user, project = self.users[name], self.projects[name]
        pages = [{"source_path": path, "priority": priority} for path in paths]
        response = user.client.post(
            f"/api/projects/{project}/batches/", {"pages": pages}, format="json"
        )
        if name in self.gone:
            assert response.status_code == 404, response.status_code
            return
        assert response.status_code == 201, response.status_code
        self.batches[name].add(response.json()["batch_id"])
        for path in paths:
            _, _, page_id, after = self.page(name, path)
            assert after == "queued"  # deleted ones too: an upload brings a page back
            self.deleted[name].discard(page_id)

    @rule(name=st.sampled_from(["alice", "bob"]), path=st.sampled_from(PATHS))
    def upload_single(self, name: str, path: str) -> None:
        """A new path is stored as uploaded (201); one uploaded before, even if deleted
        since, is replaced and queued afresh (200). Either way in a new batch of its own,
        which the batch it was in before no longer counts (the invariant checks both)."""
        user, project, page_id, _ = self.page(name, path)
        stored = Page.objects.auth(user.user_id).get_or_none(
            project_id=project, page_id=page_id, include_deleted=True
        )
        response = user.client.post(
            f"/api/projects/{project}/pages/", {"source_path": path}, format="json"
        )
        if name in self.gone:
            assert response.status_code == 404, response.status_code
            return
        if stored is None:
            assert response.status_code == 201 and response.json()["status"] == "uploaded"
        else:
            assert response.status_code == 200 and response.json()["status"] == "queued"
            self.deleted[name].discard(page_id)
        batch_id = response.json()["batch_id"]
        assert batch_id not in self.batches[name], batch_id
        self.batches[name].add(batch_id)

    @rule(
        name=st.sampled_from(["alice", "bob"]),
        path=ANY_PATH,
        state=st.sampled_from(STATES),
    )
    def set_status(self, name: str, path: str | None, state: str) -> None:
        user, project, page_id, before = self.page(name, path)
        code = act(user, project, page_id, f"status:{state}")
        self.expect(name, page_id, f"status:{state}", code, before)

    @rule(name=st.sampled_from(["alice", "bob"]))
    def claim(self, name: str) -> None:
        user, project = self.users[name], self.projects[name]
        queued = {
            row["page_id"]: row["priority"]
            for row in Page.objects.auth(user.user_id)
            .filter(project_id=project, status="queued")
            .values("page_id", "priority")
        }
        response = user.client.post(f"/api/projects/{project}/queue/claim/")
        if name in self.gone:
            assert response.status_code == 404, response.status_code
            return
        if not queued:
            assert response.status_code == 204, response.status_code
            return
        assert response.status_code == 200, response.status_code
        item = response.json()
        assert item["page_id"] in queued and item["priority"] == max(queued.values())
        page = Page.objects.auth(user.user_id).get(project_id=project, page_id=item["page_id"])
        assert page.get("status") == "processing"

    @rule(name=st.sampled_from(["alice", "bob"]), path=ANY_PATH)
    def ack(self, name: str, path: str | None) -> None:
        user, project, page_id, before = self.page(name, path)
        self.expect(name, page_id, "ack", act(user, project, page_id, "ack"), before)

    @rule(name=st.sampled_from(["alice", "bob"]), path=ANY_PATH)
    def fail(self, name: str, path: str | None) -> None:
        from nimbus.lifecycle import MAX_ATTEMPTS

        user, project, page_id, before = self.page(name, path)
        queue = Queue.objects.auth(user.user_id).get_or_none(project)
        item = (
            next((i for i in queue.get("items") if i["page_id"] == page_id), None)
            if queue
            else None
        )
        last = item is not None and item["attempts"] >= MAX_ATTEMPTS
        event = "fail:last" if last else "fail"
        self.expect(name, page_id, event, act(user, project, page_id, event), before)

    @rule(name=st.sampled_from(["alice", "bob"]), path=ANY_PATH)
    def delete(self, name: str, path: str | None) -> None:
        user, project, page_id, before = self.page(name, path)
        self.expect(name, page_id, "delete", act(user, project, page_id, "delete"), before)

    @rule(
        path=st.sampled_from(PATHS),
        event=st.sampled_from([f"status:{s}" for s in STATES] + ["claim", "ack", "fail", "delete"]),
    )
    def trespass(self, path: str, event: str) -> None:  # restore: in trespass_restore
        """Bob tries alice's page (and her queue): 404, and nothing of hers changes."""
        _, project, page_id, before = self.page("alice", path)
        queue = Queue.objects.auth(self.users["alice"].user_id).get_or_none(project)
        items = queue.get("items") if queue is not None else None
        code = act(self.users["bob"], project, page_id, event)
        assert code == 404, (event, code)
        assert self.page("alice", path)[3] == before
        queue = Queue.objects.auth(self.users["alice"].user_id).get_or_none(project)
        assert (queue.get("items") if queue is not None else None) == items

    @precondition(lambda self: any(self.deleted.values()))
    @rule(name=st.sampled_from(["alice", "bob"]), index=st.integers(0, len(PATHS) - 1))
    def restore_deleted(self, name: str, index: int) -> None:
        """Restore one of the pages the ``delete`` rule deleted (``restore`` tells apart)."""
        project = self.projects[name]
        deleted = [p for p in PATHS if ids.page_id(project, p) in self.deleted[name]]
        if deleted:
            self.restore(name, deleted[index % len(deleted)])

    @rule(name=st.sampled_from(["alice", "bob"]), path=st.sampled_from(PATHS))
    def restore(self, name: str, path: str) -> None:
        """A deleted page comes back in the status it was deleted in (200); a live or never
        uploaded one is 404; one in a deleted project 409."""
        user, project, page_id, before = self.page(name, path)
        stored = Page.objects.auth(user.user_id).get_or_none(
            project_id=project, page_id=page_id, include_deleted=True
        )
        code = act(user, project, page_id, "restore")
        after = self.page(name, path)[3]
        if stored is not None and stored.get("deleted_at") and name in self.gone:
            assert code == 409, code  # its project first
            assert after == "deleted"
        elif stored is None or not stored.get("deleted_at"):
            assert code == 404, code
            assert after == before
        else:
            assert code == 200, code
            assert after == stored.get("status")
            self.deleted[name].discard(page_id)

    @rule(name=st.sampled_from(["alice", "bob"]), path=ANY_PATH, progress=st.integers(-5, 105))
    def report_progress(self, name: str, path: str | None, progress: int) -> None:
        """A worker's progress report: shown by a processing page's status object, refused
        (409) for a page in any other state; the page does not move."""
        user, project, page_id, before = self.page(name, path)
        response = user.client.post(
            f"/api/projects/{project}/queue/{page_id}/progress/",
            {"progress": progress, "current_step": "step"},
            format="json",
        )
        assert self.page(name, path)[3] == before
        if not 0 <= progress <= 100:
            assert response.status_code == 400, response.status_code
        elif name in self.gone or before == "deleted":
            assert response.status_code == 404, response.status_code
        elif before != "processing":
            assert response.status_code == 409, response.status_code
        else:
            assert response.status_code == 200, response.status_code
            processing = response.json()["processing"]
            assert (processing["progress"], processing["current_step"]) == (progress, "step")

    @rule(name=st.sampled_from(["alice", "bob"]), path=ANY_PATH, priority=st.integers(1, 10))
    def edit_priority(self, name: str, path: str | None, priority: int) -> None:
        """PATCH a page's priority: its queue item follows (``claim`` checks it)."""
        user, project, page_id, before = self.page(name, path)
        response = user.client.patch(
            f"/api/projects/{project}/pages/{page_id}/", {"priority": priority}, format="json"
        )
        if before == "deleted":
            assert response.status_code == 404, response.status_code
            return
        assert response.status_code == 200, response.status_code
        assert response.json()["priority"] == priority
        assert response.json()["status"] == before

    @rule(name=st.sampled_from(["alice", "bob"]))
    def delete_or_restore_project(self, name: str) -> None:
        """Delete the user's project (its pages, batches, status objects and logs go with
        it), or restore it: what its delete took comes back, pages deleted before do not."""
        user, project = self.users[name], self.projects[name]
        before = {
            row["page_id"]: row["status"]
            for row in Page.objects.auth(user.user_id)
            .filter(project_id=project)
            .values("page_id", "status")
        }
        if name in self.gone:
            assert (
                self.users["bob" if name == "alice" else "alice"]
                .client.post(f"/api/projects/{project}/restore/")
                .status_code
                == 404
            )
            response = user.client.post(f"/api/projects/{project}/restore/")
            assert response.status_code == 200, response.status_code
            self.gone.discard(name)
            after = {
                row["page_id"]: row["status"]
                for row in Page.objects.auth(user.user_id)
                .filter(project_id=project)
                .values("page_id", "status")
            }
            assert after == self.at_delete.pop(name)
        else:
            response = user.client.delete(f"/api/projects/{project}/")
            assert response.status_code == 204, response.status_code
            self.gone.add(name)
            self.at_delete[name] = before
            assert user.client.get(f"/api/projects/{project}/").status_code == 404
            assert user.client.get(f"/api/projects/{project}/pages/").status_code == 404

    @rule(path=st.sampled_from(PATHS))
    def trespass_restore(self, path: str) -> None:
        """Bob restores alice's page (deleted or not): 404, and it stays as it was."""
        _, project, page_id, before = self.page("alice", path)
        assert act(self.users["bob"], project, page_id, "restore") == 404
        assert self.page("alice", path)[3] == before

    @invariant()
    def statuses_queue_and_batches_agree(self) -> None:
        from datamodel import Scope
        from nimbus import conf, lifecycle

        for name, user in self.users.items():
            if name in self.gone:
                live = Page.objects.auth(user.user_id).filter(project_id=self.projects[name])
                assert live.count() == 0
                continue
            assert_agreement(
                user.user_id, self.projects[name], self.batches[name], self.deleted[name]
            )
            in_batches = (
                Page.objects.auth(user.user_id)
                .filter(project_id=self.projects[name])
                .values_list("batch_id", flat=True)
            )
            assert set(in_batches) <= self.batches[name], "every live page is in an upload's batch"
            scope = Scope(conf.get_connection(), user.user_id)
            assert lifecycle.reconcile(scope, self.projects[name]) == []


def _batch_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new second for every batch id, so uploads need not wait for the clock."""
    import datetime as dt
    import itertools

    from datamodel import ids as ids_module

    seconds = itertools.count()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def batch_id(moment: dt.datetime | None = None) -> str:
        return (start + dt.timedelta(seconds=next(seconds))).strftime("batch_%Y%m%d_%H%M%S")

    monkeypatch.setattr(ids_module, "batch_id", batch_id)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_the_page_lifecycle_holds_through_the_api(
    backend: str, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _batch_ids(monkeypatch)
    with stores_for(backend, settings, tmp_path, f"lifecycle{uuid.uuid4().hex[:8]}:"):
        run_state_machine_as_test(
            PageLifecycle,
            settings=hyp_settings(
                max_examples=30,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            ),
        )


@pytest.mark.usefixtures("embedded")
def test_concurrent_workers_claim_each_page_once_and_see_no_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight workers claim and ack (or fail, retried) one project's pages at once on the
    embedded SQLite default: every page is claimed by one worker at a time, ends done, and no
    worker ever sees a conflict (each read-modify-write retries from a fresh read)."""
    from concurrent.futures import ThreadPoolExecutor

    from datamodel import Scope
    from nimbus import conf, lifecycle, workflows
    from nimbus.models import Project

    _batch_ids(monkeypatch)
    scope = Scope(conf.get_connection(), "alice")
    project = Project.objects.bind(scope).create(name="busy.example")
    paths = [{"source_path": f"p{i}.html", "priority": i % 10 + 1} for i in range(24)]
    batch = workflows.upload_batch(scope, project, paths)
    holders: dict[str, int] = {}
    problems: list[str] = []

    def worker(number: int) -> None:
        while True:
            item = lifecycle.claim(scope, project.pk)
            if item is None:
                return
            page_id = item["page_id"]
            if page_id in holders:
                problems.append(f"{page_id} claimed by {number} while {holders[page_id]} has it")
            holders[page_id] = number
            if item["attempts"] == 1 and number % 2 == 0:
                del holders[page_id]  # the page is claimable again once fail() releases it
                _, retry = lifecycle.fail(scope, project.pk, page_id, "flaky")
                assert retry
            else:
                lifecycle.ack(scope, project.pk, page_id)
                del holders[page_id]

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker, n) for n in range(8)]:
            future.result()  # re-raises a worker's Conflict, if any
    assert problems == []
    statuses = {
        row["status"]
        for row in Page.objects.bind(scope).filter(project_id=project.pk).values("status")
    }
    assert statuses == {"done"}
    stored = Batch.objects.bind(scope).get(project_id=project.pk, batch_id=batch.get("batch_id"))
    assert stored.get("summary")["completed"] == 24 and stored.get("status") == "completed"
    assert_agreement("alice", project.pk, {batch.get("batch_id")}, set())


def test_the_expected_moves_are_the_lifecycle_table() -> None:
    """``EXPECTED`` (written out above) and ``nimbus.lifecycle.MOVES`` say the same thing, so
    the route tests cover every row of the table."""
    from nimbus.lifecycle import DELETED, MOVES, NEW

    names = {"retry": "fail", "fail": "fail:last"}
    table = {}
    for move in MOVES:
        if move.source in (NEW, DELETED) or (move.event == "claim" and move.source == move.target):
            continue  # first uploads, uploads of deleted pages, expired claims: tested apart
        event = f"status:{move.target}" if move.event == "status" else move.event
        table[(move.source, names.get(event, event))] = move.target
    assert table == {key: value.replace("deleted", DELETED) for key, value in EXPECTED.items()}


def test_each_move_is_logged() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    page_id = page_in_state(alice, project, "processing")
    act(alice, project, page_id, "fail")
    act(alice, project, page_id, "claim")
    act(alice, project, page_id, "ack")
    logs = alice.client.get(f"/api/projects/{project}/pages/{page_id}/logs/").json()["data"]
    assert [(entry["step"], entry["level"], entry["message"]) for entry in logs] == [
        ("upload", "info", "uploaded and queued"),
        ("queue", "info", "claimed"),
        ("process", "error", "failed; queued for another attempt"),
        ("queue", "info", "claimed"),
        ("process", "info", "done"),
    ]
    assert logs[2]["data"] == {"from": "processing", "to": "queued", "error": "timeout"}


def test_claim_drops_queue_items_of_pages_deleted_behind_its_back() -> None:
    """Items left in a queue by pages deleted before deletes took them out (or by a write
    that bypassed the lifecycle) are dropped by the next claim, which hands out the next page."""
    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html"])
    stale, live = page_of(batch, 0), page_of(batch, 1)
    Page.objects.auth("alice").get(project_id=project, page_id=stale).delete()  # no lifecycle
    claim = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claim.status_code == 200 and claim.json()["page_id"] == live
    items = Queue.objects.auth("alice").get(project).get("items")
    assert [item["page_id"] for item in items] == [live]


def test_enqueue_takes_back_a_deleted_page_that_an_upload_restored() -> None:
    """What an upload that brings a deleted page back does: restore and rewrite the page,
    then ``lifecycle.enqueue``: its status object comes back, queued, and it is claimable."""
    from datamodel import Scope
    from nimbus import conf, lifecycle
    from nimbus.models import PageStatus

    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html"])
    page_id = page_of(batch, 0)
    assert alice.client.delete(f"/api/projects/{project}/pages/{page_id}/").status_code == 204
    scope = Scope(conf.get_connection(), "alice")
    page = Page.objects.bind(scope).get(project_id=project, page_id=page_id, include_deleted=True)
    page.restore()
    page = Page.objects.bind(scope).get(project_id=project, page_id=page_id)
    page.set({"status": "queued", "batch_id": None})
    page.save()
    lifecycle.enqueue(scope, [page])
    record = PageStatus.objects.bind(scope).get(project_id=project, page_id=page_id)
    assert record.get("status") == "queued" and record.get("batch_id") is None
    claim = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claim.status_code == 200 and claim.json()["page_id"] == page_id
    logs = alice.client.get(f"/api/projects/{project}/pages/{page_id}/logs/").json()["data"]
    assert logs[-2]["message"] == "uploaded again after its delete, queued"
    assert_agreement("alice", project, {batch["batch_id"]}, set())


def test_enqueue_refuses_pages_an_upload_did_not_write() -> None:
    from datamodel import Scope
    from nimbus import conf, lifecycle

    alice = api_user("alice")
    project = make_project(alice)
    scope = Scope(conf.get_connection(), "alice")
    unsaved = Page.objects.bind(scope).new(project_id=project, source_path="a.html")
    with pytest.raises(ValueError, match="saved, queued or uploaded"):
        lifecycle.enqueue(scope, [unsaved])


def test_reconcile_finds_and_repairs_what_a_half_done_move_left() -> None:
    """Pages written without the rest of their moves (as a process that died midway leaves
    them): ``reconcile`` names each disagreement and ``repair=True`` sets it from the pages."""
    from datamodel import Scope
    from nimbus import conf, lifecycle

    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html", "c.html", "d.html"])
    a, b, c, d = (page_of(batch, i) for i in range(4))
    scope = Scope(conf.get_connection(), "alice")
    pages = Page.objects.bind(scope)
    for page_id, status in ((a, "done"), (b, "processing"), (c, "uploaded")):
        page = pages.get(project_id=project, page_id=page_id)
        page.set("status", status)
        page.save()  # the page only, as if the process died right after
    queue = Queue.objects.bind(scope).get(project)
    queue.set("items", [item for item in queue.get("items") if item["page_id"] != d])
    queue.save()
    found = lifecycle.reconcile(scope, project)
    assert len(found) == 10, found  # 4 in the queue, 3 status objects, 3 batch entries
    assert f"page {d!r} is 'queued' but not in the queue" in found
    assert f"page {b!r} is 'processing' but its queue item is not claimed" in found
    assert lifecycle.reconcile(scope, project) == found  # reading only
    assert lifecycle.reconcile(scope, project, repair=True) == found
    assert lifecycle.reconcile(scope, project) == []
    assert_agreement("alice", project, {batch["batch_id"]}, set())
    claim = alice.client.post(f"/api/projects/{project}/queue/claim/")
    assert claim.status_code == 200 and claim.json()["page_id"] == d


def test_reconcile_finds_wrong_batches_lost_status_objects_and_counts() -> None:
    """Besides statuses: a status object or a queue item naming another batch than its
    page's, a live page without a status object, a status object of a deleted page, a batch
    summary that does not follow its map and wrong usage counters; a system scope repairs
    them as the project's owner."""
    from datamodel import Scope
    from nimbus import conf, lifecycle
    from nimbus.models import PageStatus, Project

    alice = api_user("alice")
    project = make_project(alice)
    batch = upload(alice, project, ["a.html", "b.html", "c.html"])
    a, b, c = (page_of(batch, i) for i in range(3))
    assert alice.client.delete(f"/api/projects/{project}/pages/{c}/").status_code == 204
    scope = Scope(conf.get_connection(), "alice")
    statuses = PageStatus.objects.bind(scope)
    record = statuses.get(project_id=project, page_id=a)
    record.set("batch_id", "batch_20000101_000000")
    record.save()
    statuses.get(project_id=project, page_id=b).delete()
    gone = statuses.get(project_id=project, page_id=c, include_deleted=True)
    gone.restore()  # the status object of a deleted page, live again
    queue = Queue.objects.bind(scope).get(project)
    queue.set("items", [{**item, "batch_id": None} for item in queue.get("items")])
    queue.save()
    stored = Batch.objects.bind(scope).get(project_id=project, batch_id=batch["batch_id"])
    stored.set("summary", {**stored.get("summary"), "pending": 7})
    stored.save()
    owned = Project.objects.bind(scope).get(project)
    owned.set("usage", {**owned.get("usage"), "total_batches": 3})
    owned.save()
    system = Scope(conf.get_connection(), None)
    found = lifecycle.reconcile(system, project)
    expected = [
        f"queue item of page {a!r} names batch None, the page is in {batch['batch_id']!r}",
        f"queue item of page {b!r} names batch None, the page is in {batch['batch_id']!r}",
        f"status object of page {a!r} names batch 'batch_20000101_000000', "
        f"the page is in {batch['batch_id']!r}",
        f"page {b!r} has no status object",
        f"status object of page {c!r}, which is not live",
        f"batch {batch['batch_id']!r} has a summary or page count not of its page map",
        "project usage says total_batches 3, it has 1 live batches",
    ]
    assert sorted(found) == sorted(expected)
    assert sorted(lifecycle.reconcile(system, project, repair=True)) == sorted(expected)
    assert lifecycle.reconcile(system, project) == []
    assert lifecycle.reconcile(scope, project) == []
    assert_agreement("alice", project, {batch["batch_id"]}, {c})
