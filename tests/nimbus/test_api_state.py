"""A state machine over the HTTP API with two users: projects, batches, single pages and API
keys, as their owner sees them (details, lists and their totals) and as the other user does
(404, and nothing changes). ``test_lifecycle.PageLifecycle`` covers page statuses and the
queue; this one covers what holds them: which objects exist, which are listed, whose they are."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
from rest_framework.test import APIClient

from datamodel import ids
from nimbus.models import key_hash
from tests.nimbus.api_model import (
    ORDERINGS,
    ROW,
    KeyModel,
    PageModel,
    ProjectModel,
    UserModel,
    call,
    check_project,
    key_client,
    listed,
    project_lists,
    trespasses,
    walk,
)
from tests.nimbus.api_support import api_user, stores_for

pytestmark = pytest.mark.usefixtures("domain")

USERS = ("alice", "bob")
PATHS = ["a.html", "b.html", "c.html", "d.html"]
TONES = ["premium", "professional", "casual"]
MAX_PROJECTS = 4  # per user, so the same few projects see many steps
MAX_KEYS = 3  # made through the API, per user
PROJECT_LISTS = ("projects/", "projects/?deleted=only")
USER_LISTS = (*PROJECT_LISTS, "keys/")
# Names as a user types them: any text but control characters (DRF trims the ends, and a
# name left blank is a 400 naming the field).
NAMES = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=24
)


class ApiState(RuleBasedStateMachine):
    """Two users, a few projects each, the same few paths: create, patch, delete and restore
    projects; upload batches and single pages (the same paths again, deleted ones too);
    delete and restore pages; make, use and revoke API keys; page through lists; try every
    route on the other user's objects, and revoked keys anywhere.

    After every step: no 5xx (``call``); each rule's response is what the model expects;
    the lists the step could change hold exactly the model's objects, totals included (a
    user's projects, deleted projects and keys; each touched project's pages, deleted pages
    and batches); each touched project answers its detail with what was written, and each
    page and batch of it whose expected answer changed answers it (a deleted project: 404
    on its detail, its lists and every child). At the end of each run (``teardown``), every
    list and every object is read back once more."""

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, UserModel] = {}
        self.relisted: set[tuple[str, str]] = set()  # (user, list) to read after the step
        self.touched: set[str] = set()  # projects to read after the step
        self.seen: dict[str, Any] = {}  # what each page and batch answered when last read
        self.settled = True

    @initialize()
    def start(self) -> None:
        """Each user with a project holding a batch of three pages, and a key of their own
        besides their client's, so that every rule finds something to act on."""
        for name in USERS:
            api = api_user()
            user = self.users[name] = UserModel(api)
            (row,) = self.call(api.client, "get", "/api/keys/").json()["data"]  # the factory's
            user.keys[key_hash(api.secret)] = KeyModel(row["name"], api.secret)
        for name in USERS:
            self.create_project(name, f"{name}.example", None)
            self.upload_batch(name, index=0, aim=False, paths=PATHS[:3], twice=1, priority=5)
            self.create_key(name, f"{name}'s key")

    def call(self, client: APIClient, method: str, url: str, body: Any = None) -> Any:
        """A rule's request: until the invariant has checked what it did, the model may not
        match the stores (so a failed step's teardown checks nothing)."""
        self.settled = False
        return call(client, method, url, body)

    def other(self, name: str) -> str:
        return USERS[1 - USERS.index(name)]

    def project(
        self, name: str, index: int, aim: bool = False, *, deleted: bool = False
    ) -> ProjectModel:
        """One of the user's projects; with ``aim``, one that is ``deleted`` (or live) if
        there is one, so that a route meets what it acts on often enough."""
        projects = self.users[name].projects
        aimed = [project for project in projects if project.deleted == deleted]
        chosen = aimed if aim and aimed else projects
        return chosen[index % len(chosen)]

    def page(
        self, name: str, index: int, path: str, aim: bool, *, deleted: bool
    ) -> tuple[ProjectModel, str]:
        """A project of the user and a page id in it; with ``aim``, a page deleted on its own
        (or a live page of a live project) if there is one."""
        aimed = [
            (project, pid)
            for project in self.users[name].projects
            for pid in project.page_ids(deleted=deleted)
            if deleted or not project.deleted
        ]
        if aim and aimed:
            return aimed[index % len(aimed)]
        project = self.project(name, index)
        return project, ids.page_id(project.project_id, path)

    def touch(self, project: ProjectModel) -> None:
        """Read ``project`` back after this step."""
        self.touched.add(project.project_id)

    def relist(self, name: str, *kinds: str) -> None:
        """Read these lists of the user back after this step (all of them without kinds)."""
        self.relisted.update((name, kind) for kind in kinds or USER_LISTS)

    # -- projects ------------------------------------------------------------------------------

    @rule(name=st.sampled_from(USERS), project_name=NAMES, tone=st.sampled_from([None, *TONES]))
    def create_project(self, name: str, project_name: str, tone: str | None) -> None:
        user = self.users[name]
        if len(user.projects) >= MAX_PROJECTS:
            return
        self.relist(name, *PROJECT_LISTS)
        body: dict[str, Any] = {"name": project_name}
        if tone is not None:
            body["settings"] = {"tone": tone}
        response = self.call(user.api.client, "post", "/api/projects/", body)
        if not project_name.strip():
            assert response.status_code == 400 and "name" in response.json(), response.json()
            return
        assert response.status_code == 201, response.json()
        created = response.json()
        assert created["name"] == project_name.strip() and created["deleted_at"] is None
        project = ProjectModel(created["project_id"], project_name.strip(), tone or "professional")
        user.projects.append(project)
        self.touch(project)

    @rule(
        name=st.sampled_from(USERS),
        index=st.integers(0, MAX_PROJECTS - 1),
        project_name=st.none() | NAMES,
        tone=st.none() | st.sampled_from(TONES),
    )
    def patch_project(
        self, name: str, index: int, project_name: str | None, tone: str | None
    ) -> None:
        """Rename a project and/or set its tone (settings merge into what it has)."""
        project = self.project(name, index)
        self.touch(project)
        self.relist(name, *PROJECT_LISTS)
        body: dict[str, Any] = {} if project_name is None else {"name": project_name}
        if tone is not None:
            body["settings"] = {"tone": tone}
        url = f"/api/projects/{project.project_id}/"
        response = self.call(self.users[name].api.client, "patch", url, body)
        if project.deleted:
            assert response.status_code == 404, response.status_code
        elif project_name is not None and not project_name.strip():
            assert response.status_code == 400 and "name" in response.json()
        else:
            assert response.status_code == 200, response.json()
            project.name = project.name if project_name is None else project_name.strip()
            project.tone = tone or project.tone

    @rule(name=st.sampled_from(USERS), index=st.integers(0, MAX_PROJECTS - 1), aim=st.booleans())
    def delete_project(self, name: str, index: int, aim: bool) -> None:
        """A live project is deleted, with its pages and batches (204); a deleted one 404."""
        project = self.project(name, index, aim, deleted=False)
        self.touch(project)
        self.relist(name, *PROJECT_LISTS)
        url = f"/api/projects/{project.project_id}/"
        response = self.call(self.users[name].api.client, "delete", url)
        assert response.status_code == (404 if project.deleted else 204), response.status_code
        project.deleted = True

    @rule(name=st.sampled_from(USERS), index=st.integers(0, MAX_PROJECTS - 1), aim=st.booleans())
    def restore_project(self, name: str, index: int, aim: bool) -> None:
        """A deleted project comes back with what its delete took (pages deleted on their
        own before stay deleted); a live one is 404."""
        project = self.project(name, index, aim, deleted=True)
        self.touch(project)
        self.relist(name, *PROJECT_LISTS)
        url = f"/api/projects/{project.project_id}/restore/"
        response = self.call(self.users[name].api.client, "post", url)
        assert response.status_code == (200 if project.deleted else 404), response.status_code
        project.deleted = False

    # -- pages and batches ---------------------------------------------------------------------

    @rule(
        name=st.sampled_from(USERS),
        index=st.integers(0, MAX_PROJECTS - 1),
        aim=st.booleans(),
        paths=st.lists(st.sampled_from(PATHS), min_size=1, max_size=4, unique=True),
        twice=st.integers(0, 9),
        priority=st.integers(1, 10),
    )
    def upload_batch(
        self, name: str, index: int, aim: bool, paths: list[str], twice: int, priority: int
    ) -> None:
        """Upload 1-4 pages in a batch: each is queued in it, a path uploaded before (even
        deleted since) leaving its earlier batch. The same path twice in one batch (one
        upload in ten) is refused, and nothing is written. Batch ids come from the clock
        (unpatched, unlike in ``PageLifecycle``), so the two users' uploads in one second
        get the same id, each in their own project: the other's batch is read back too."""
        project = self.project(name, index, aim, deleted=False)
        self.touch(project)
        sent = paths + paths[:1] if twice == 0 else paths
        pages = [{"source_path": path, "priority": priority} for path in sent]
        url = f"/api/projects/{project.project_id}/batches/"
        response = self.call(self.users[name].api.client, "post", url, {"pages": pages})
        if project.deleted:
            assert response.status_code == 404, response.status_code
            return
        if sent != paths:
            assert response.status_code in (400, 409), response.status_code
            return
        assert response.status_code == 201, response.json()
        batch = response.json()
        page_ids = {ids.page_id(project.project_id, path): path for path in paths}
        assert set(batch["pages"]) == set(page_ids) and batch["page_count"] == len(paths)
        assert batch["batch_id"] not in project.batches
        project.batches.append(batch["batch_id"])
        for page_id, path in page_ids.items():
            project.pages[page_id] = PageModel(path, "queued", priority, batch["batch_id"])
        for theirs in self.users[self.other(name)].projects:
            if batch["batch_id"] in theirs.batches:  # uploaded in the same second: read theirs
                self.touch(theirs)
                url = f"/api/projects/{theirs.project_id}/batches/{batch['batch_id']}/"
                self.seen.pop(url, None)

    @rule(
        name=st.sampled_from(USERS),
        index=st.integers(0, MAX_PROJECTS - 1),
        aim=st.booleans(),
        path=st.sampled_from(PATHS),
        priority=st.integers(1, 10),
    )
    def upload_page(self, name: str, index: int, aim: bool, path: str, priority: int) -> None:
        """A new path is stored as uploaded (201); one uploaded before, even if deleted
        since, is replaced and queued afresh (200); either way in a new batch of one."""
        project = self.project(name, index, aim, deleted=False)
        self.touch(project)
        url = f"/api/projects/{project.project_id}/pages/"
        body = {"source_path": path, "priority": priority}
        response = self.call(self.users[name].api.client, "post", url, body)
        if project.deleted:
            assert response.status_code == 404, response.status_code
            return
        page_id = ids.page_id(project.project_id, path)
        again = page_id in project.pages
        assert response.status_code == (200 if again else 201), response.json()
        written = response.json()
        batch_id = written["batch_id"]
        assert batch_id and batch_id not in project.batches, batch_id
        project.batches.append(batch_id)
        page = project.pages[page_id] = PageModel(
            path, "queued" if again else "uploaded", priority, batch_id
        )
        assert (written["page_id"], written["status"]) == (page_id, page.status)
        for theirs in self.users[self.other(name)].projects:
            if batch_id in theirs.batches:  # uploaded in the same second: read theirs
                self.touch(theirs)
                self.seen.pop(f"/api/projects/{theirs.project_id}/batches/{batch_id}/", None)

    @rule(
        name=st.sampled_from(USERS),
        index=st.integers(0, 15),
        path=st.sampled_from(PATHS),
        aim=st.booleans(),
    )
    def delete_page(self, name: str, index: int, path: str, aim: bool) -> None:
        """A live page of a live project is deleted (204); any other 404."""
        project, page_id = self.page(name, index, path, aim, deleted=False)
        self.touch(project)
        url = f"/api/projects/{project.project_id}/pages/{page_id}/"
        response = self.call(self.users[name].api.client, "delete", url)
        page = project.pages.get(page_id)
        if project.deleted or page is None or page.deleted:
            assert response.status_code == 404, response.status_code
            return
        assert response.status_code == 204, response.status_code
        page.deleted = True

    @rule(
        name=st.sampled_from(USERS),
        index=st.integers(0, 15),
        path=st.sampled_from(PATHS),
        aim=st.booleans(),
    )
    def restore_page(self, name: str, index: int, path: str, aim: bool) -> None:
        """A page deleted on its own comes back as it was, in its batch (200); a live or
        never uploaded one is 404; any page of a deleted project 409 (its project first)."""
        project, page_id = self.page(name, index, path, aim, deleted=True)
        self.touch(project)
        url = f"/api/projects/{project.project_id}/pages/{page_id}/restore/"
        response = self.call(self.users[name].api.client, "post", url)
        page = project.pages.get(page_id)
        if page is not None and project.deleted:
            assert response.status_code == 409, response.status_code
        elif page is None or not page.deleted:
            assert response.status_code == 404, response.status_code
        else:
            assert response.status_code == 200, response.status_code
            assert response.json()["batch_id"] == page.batch_id
            page.deleted = False

    # -- API keys ------------------------------------------------------------------------------

    @rule(name=st.sampled_from(USERS), key_name=NAMES)
    def create_key(self, name: str, key_name: str) -> None:
        user = self.users[name]
        if len(user.made_keys()) >= MAX_KEYS:
            return
        self.relist(name, "keys/")
        response = self.call(user.api.client, "post", "/api/keys/", {"name": key_name})
        if not key_name.strip():
            assert response.status_code == 400 and "name" in response.json()
            return
        assert response.status_code == 201, response.json()
        created = response.json()
        assert created["key_hash"] == key_hash(created["key"])
        assert created["user_id"] == user.api.user_id
        user.keys[created["key_hash"]] = KeyModel(key_name.strip(), created["key"])

    def key(self, name: str, index: int) -> tuple[str, UserModel, str, KeyModel]:
        """A key made through the API, the user's if they have one, else the other's."""
        if not self.users[name].made_keys():
            name = self.other(name)
        user = self.users[name]
        made = user.made_keys()
        return (name, user, *made[index % len(made)])

    @precondition(lambda self: any(user.made_keys() for user in self.users.values()))
    @rule(name=st.sampled_from(USERS), index=st.integers(0, MAX_KEYS - 1), itself=st.booleans())
    def revoke_key(self, name: str, index: int, itself: bool) -> None:
        """Revoke a key made through the API, with the user's client's key or with itself:
        204, and the key no longer authenticates (401); again, 404 (401 by itself)."""
        name, user, digest, key = self.key(name, index)
        self.relist(name, "keys/")
        client = key_client(key.secret) if itself else user.api.client
        response = self.call(client, "delete", f"/api/keys/{digest}/")
        expected = (401 if itself else 404) if key.revoked else 204
        assert response.status_code == expected, response.status_code
        key.revoked = True
        refused = self.call(key_client(key.secret), "get", "/api/me/")
        assert refused.status_code == 401, refused.status_code

    @precondition(lambda self: any(user.made_keys() for user in self.users.values()))
    @rule(name=st.sampled_from(USERS), index=st.integers(0, MAX_KEYS - 1), write=st.booleans())
    def use_key(self, name: str, index: int, write: bool) -> None:
        """A live key acts as its owner; a revoked one is 401, to read or to write (and the
        write creates nothing)."""
        name, user, digest, key = self.key(name, index)
        client = key_client(key.secret)
        if not key.revoked:
            me = self.call(client, "get", "/api/me/")
            assert me.status_code == 200, me.status_code
            assert (me.json()["user_id"], me.json()["key"]["id"]) == (user.api.user_id, digest)
            listed(client, "/api/projects/", user.lists()["projects/"], "projects/")
            return
        self.relist(name)
        project = user.projects[index % len(user.projects)]
        requests: list[tuple[str, str, Any]] = [
            ("get", "/api/me/", None),
            ("get", f"/api/projects/{project.project_id}/", None),
            ("get", "/api/keys/", None),
        ]
        if write:
            requests += [
                ("post", "/api/projects/", {"name": "with a revoked key"}),
                ("delete", f"/api/projects/{project.project_id}/", None),
                ("post", "/api/keys/", {"name": "from a revoked key"}),
            ]
        for method, url, body in requests:
            response = self.call(client, method, url, body)
            assert response.status_code == 401, (method, url, response.status_code)
        self.touch(project)

    # -- lists, page by page -------------------------------------------------------------------

    @rule(
        name=st.sampled_from(USERS),
        index=st.integers(0, MAX_PROJECTS - 1),
        kind=st.sampled_from(list(ROW)),
        limit=st.integers(1, 3),
        ordering=st.integers(0, 5),
        cursor=st.booleans(),
    )
    def page_through(
        self, name: str, index: int, kind: str, limit: int, ordering: int, cursor: bool
    ) -> None:
        """Walk a list ``limit`` rows at a time, by ``page=`` or by ``cursor=``, in one of
        its orderings: every object once, in order, each page's envelope consistent."""
        user = self.users[name]
        project = user.projects[index % len(user.projects)]
        if kind in user.lists():
            base, expected = f"/api/{kind}", user.lists()[kind]
        elif project.deleted:
            return
        else:
            base = f"/api/projects/{project.project_id}/{kind}"
            expected = project_lists(project)[kind]
        orderings = ORDERINGS[kind.split("?")[0]]
        order = orderings[ordering % len(orderings)]
        self.settled = False
        walk(user.api.client, base, expected, kind, limit, order, cursor)

    # -- the other user's objects --------------------------------------------------------------

    @rule(name=st.sampled_from(USERS), index=st.integers(0, 15), path=st.sampled_from(PATHS))
    def trespass(self, name: str, index: int, path: str) -> None:
        """The user tries every route on one of the other user's projects (live or deleted),
        on a page, a batch and a key of theirs: each is 404 with nothing of theirs in it, and
        nothing of theirs changes (the invariant reads their lists and the project)."""
        victim = self.users[self.other(name)]
        project = self.project(self.other(name), index)
        self.touch(project)
        for user_name in USERS:  # what either user lists, and nothing of the other's
            self.relist(user_name)
        pages = sorted(project.pages) or [ids.page_id(project.project_id, path)]
        batches = project.batches or ["batch_20260101_000000"]
        keys = list(victim.keys)
        routes = trespasses(
            project.project_id,
            pages[index % len(pages)],
            path,
            batches[index % len(batches)],
            keys[index % len(keys)],
        )
        for route, (method, url, body) in routes.items():
            response = self.call(self.users[name].api.client, method, url, body)
            assert response.status_code == 404, (route, response.status_code)
            assert set(response.json()) == {"detail"}, (route, response.json())

    # -- what holds after every step -----------------------------------------------------------

    @invariant()
    def what_the_step_could_change_is_as_the_model_says(self) -> None:
        for name, kind in sorted(self.relisted):
            user = self.users[name]
            listed(user.api.client, f"/api/{kind}", user.lists()[kind], kind)
        for user in self.users.values():
            for project in user.projects:
                if project.project_id in self.touched:
                    check_project(user.api.client, project, self.seen)
        self.relisted.clear()
        self.touched.clear()
        self.settled = True

    def teardown(self) -> None:
        """At the end of a run: every list, every project and all it holds."""
        if not self.settled:
            return  # a step failed: that is the error to report
        for user in self.users.values():
            for kind, expected in user.lists().items():
                listed(user.api.client, f"/api/{kind}", expected, kind)
            for project in user.projects:
                check_project(user.api.client, project)


@pytest.fixture
def backend(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> Iterator[str]:
    """The stores the machine runs on: the in-memory default, SQLite, KV on Redis (under a
    key prefix of its own, removed afterwards) with SQL on SQLite, or Cloudflare KV and D1
    through the gateway Worker (in Miniflare)."""
    name: str = request.param
    if name == "gateway":
        from datamodel import initialize
        from nimbus import conf
        from nimbus.models import DOMAIN_MODELS

        cloudflare = request.getfixturevalue("cloudflare_api")
        cloudflare.reset()
        settings.NIMBUS = cloudflare.nimbus_settings("gateway")
        initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)
        yield name
        cloudflare.reset()
        return
    with stores_for(name, settings, tmp_path, f"apistate{uuid.uuid4().hex[:8]}:"):
        yield name


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis", "gateway"], indirect=True)
def test_projects_batches_pages_and_keys_hold_through_the_api(backend: str) -> None:
    run_state_machine_as_test(
        ApiState,
        settings=hyp_settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
