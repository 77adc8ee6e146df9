"""What the state machine in ``test_api_state`` expects of the API: a model of each user's
projects, pages, batches and keys, what each list holds by that model, and the requests
that read them back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rest_framework.test import APIClient

from tests.nimbus.api_support import ApiUser

ALL = "limit=100"  # a whole list on one page (the model never holds more)


def call(client: APIClient, method: str, url: str, body: Any = None) -> Any:
    """The response to one request, which is never a server error."""
    response = getattr(client, method)(url, body, format="json")
    assert response.status_code < 500, (method, url, response.status_code, response.content)
    return response


def key_client(secret: str) -> APIClient:
    """A client that authenticates with the API key ``secret``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@dataclass
class PageModel:
    source_path: str
    status: str  # "uploaded" (a new single page) or "queued" (a batch's, or uploaded again)
    priority: int
    batch_id: str | None
    deleted: bool = False  # deleted on its own (a project's delete is the project's flag)

    def row(self) -> tuple[Any, ...]:
        return (self.source_path, self.status, self.priority, self.batch_id)


@dataclass
class ProjectModel:
    project_id: str
    name: str
    tone: str
    deleted: bool = False
    pages: dict[str, PageModel] = field(default_factory=dict)  # by page id
    batches: list[str] = field(default_factory=list)

    def page_ids(self, *, deleted: bool) -> set[str]:
        return {pid for pid, page in self.pages.items() if page.deleted == deleted}

    def members(self, batch_id: str) -> set[str]:
        """The pages a batch counts: its live ones (a page uploaded since, in another batch
        or on its own, has left it)."""
        return {pid for pid in self.page_ids(deleted=False) if self.pages[pid].batch_id == batch_id}


@dataclass
class KeyModel:
    name: str
    secret: str
    revoked: bool = False


@dataclass
class UserModel:
    api: ApiUser
    projects: list[ProjectModel] = field(default_factory=list)
    keys: dict[str, KeyModel] = field(default_factory=dict)  # by hash; the client's first

    def made_keys(self) -> list[tuple[str, KeyModel]]:
        """The keys made through the API (the client's own is never revoked)."""
        return list(self.keys.items())[1:]

    def lists(self) -> dict[str, dict[str, Any]]:
        """What each of the user's lists holds: id -> what its row shows."""
        return {
            "projects/": {p.project_id: p.name for p in self.projects if not p.deleted},
            "projects/?deleted=only": {p.project_id: p.name for p in self.projects if p.deleted},
            "keys/": {digest: key.name for digest, key in self.keys.items() if not key.revoked},
        }


def project_lists(project: ProjectModel) -> dict[str, dict[str, Any]]:
    """What each of a live project's lists holds: id -> what its row shows."""
    pages = project.pages
    return {
        "pages/": {pid: pages[pid].row() for pid in project.page_ids(deleted=False)},
        "pages/?deleted=only": {pid: pages[pid].row() for pid in project.page_ids(deleted=True)},
        "batches/": {batch_id: len(project.members(batch_id)) for batch_id in project.batches},
    }


def page_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """What the model keeps of a page (its list row or its detail)."""
    return (row["source_path"], row["status"], row["priority"], row["batch_id"])


ROW = {  # each list: the id of its rows, and what the model keeps of a row
    "projects/": ("project_id", lambda row: row["name"]),
    "projects/?deleted=only": ("project_id", lambda row: row["name"]),
    "keys/": ("key_hash", lambda row: row["name"]),
    "pages/": ("page_id", page_row),
    "pages/?deleted=only": ("page_id", page_row),
    "batches/": ("batch_id", lambda row: row["page_count"]),
}
ORDERINGS = {
    "projects/": ["created_at", "-created_at", "name", "-name"],
    "keys/": ["created_at", "-name"],
    "pages/": ["created_at", "-priority", "priority", "source_path", "-source_path"],
    "batches/": ["created_at", "-created_at"],
}


def listed(client: APIClient, url: str, expected: dict[str, Any], kind: str) -> None:
    """The list at ``url`` holds exactly ``expected`` (id -> row), in its total too."""
    key, shown = ROW[kind]
    joiner = "&" if "?" in url else "?"
    response = call(client, "get", f"{url}{joiner}{ALL}")
    assert response.status_code == 200, (url, response.status_code)
    body = response.json()
    assert body["pagination"]["total"] == len(expected), (url, body["pagination"], expected)
    assert {row[key]: shown(row) for row in body["data"]} == expected, url
    deleted = "deleted=only" in url
    assert all(bool(row["deleted_at"]) == deleted for row in body["data"]), url


def check_project(
    client: APIClient, project: ProjectModel, seen: dict[str, Any] | None = None
) -> None:
    """``project`` answers its owner's ``client`` as the model says: its detail and lists,
    and each page and batch (those whose answer changed since ``seen`` recorded it, with
    ``seen``); 404 on all of them while it is deleted."""
    base = f"/api/projects/{project.project_id}"
    children: dict[str, Any] = {}  # URL -> what it answers: None for a 404
    for pid, page in project.pages.items():
        gone = project.deleted or page.deleted
        children[f"{base}/pages/{pid}/"] = None if gone else page.row()
    for batch_id in project.batches:
        members = None if project.deleted else frozenset(project.members(batch_id))
        children[f"{base}/batches/{batch_id}/"] = members
    if project.deleted:
        for url in [f"{base}/", *(f"{base}/{kind}" for kind in project_lists(project))]:
            assert call(client, "get", url).status_code == 404, url
    else:
        check_live_project(client, project)
    for url, expected in children.items():
        if seen is not None and url in seen and seen[url] == expected:
            continue
        response = call(client, "get", url)
        assert response.status_code == (404 if expected is None else 200), url
        if expected is not None and "/pages/" in url:
            assert page_row(response.json()) == expected, url
        elif expected is not None:
            found = response.json()
            assert set(found["pages"]) == expected, (url, set(found["pages"]) ^ expected)
            # a batch whose pages are all uploaded alone (new paths) is still uploading
            uploading = bool(expected) and all(
                project.pages[pid].status == "uploaded" for pid in expected
            )
            status = "uploading" if uploading else "queued"
            assert (found["page_count"], found["status"]) == (len(expected), status), url
            summary = {"completed": 0, "failed": 0, "pending": len(expected), "average_time_ms": 0}
            assert found["summary"] == summary, url
        if seen is not None:
            seen[url] = expected


def check_live_project(client: APIClient, project: ProjectModel) -> None:
    """A live project's detail (what was written, and its usage) and its lists."""
    base = f"/api/projects/{project.project_id}"
    detail = call(client, "get", f"{base}/")
    assert detail.status_code == 200, detail.status_code
    found = detail.json()
    written = (found["name"], found["settings"]["tone"], found["deleted_at"])
    assert written == (project.name, project.tone, None)
    usage = (found["usage"]["total_batches"], found["usage"]["total_pages"])
    # counted, not added up: the live batches and pages (an upload again counts once)
    assert usage == (len(project.batches), len(project.page_ids(deleted=False)))
    for kind, expected in project_lists(project).items():
        listed(client, f"{base}/{kind}", expected, kind)


def trespasses(
    project_id: str, page_id: str, path: str, batch_id: str, digest: str
) -> dict[str, tuple[str, str, Any]]:
    """Every route on a project, a page and a batch of it, and a key: name -> (method, URL,
    body); uploads send ``path``."""
    base = f"/api/projects/{project_id}"
    page = f"{base}/pages/{page_id}/"
    return {
        "get project": ("get", f"{base}/", None),
        "patch project": ("patch", f"{base}/", {"name": "mine now"}),
        "delete project": ("delete", f"{base}/", None),
        "restore project": ("post", f"{base}/restore/", None),
        "list pages": ("get", f"{base}/pages/", None),
        "list deleted pages": ("get", f"{base}/pages/?deleted=only", None),
        "upload page": ("post", f"{base}/pages/", {"source_path": path}),
        "get page": ("get", page, None),
        "patch page": ("patch", page, {"priority": 1}),
        "delete page": ("delete", page, None),
        "restore page": ("post", f"{page}restore/", None),
        "list batches": ("get", f"{base}/batches/", None),
        "upload batch": ("post", f"{base}/batches/", {"pages": [{"source_path": path}]}),
        "get batch": ("get", f"{base}/batches/{batch_id}/", None),
        "revoke key": ("delete", f"/api/keys/{digest}/", None),
    }


def walk(
    client: APIClient,
    url: str,
    expected: dict[str, Any],
    kind: str,
    limit: int,
    order: str,
    cursor: bool,
) -> None:
    """Walk the list at ``url`` ``limit`` rows at a time in ``order``, by ``page=`` or by
    ``cursor=``: it holds ``expected`` (id -> row), each object once, in order, and each
    page's envelope agrees (total, page, pages, has_next)."""
    url = f"{url}{'&' if '?' in url else '?'}limit={limit}&ordering={order}"
    key, shown = ROW[kind]
    rows: list[dict[str, Any]] = []
    number, after = 1, ""
    pages = -(-len(expected) // limit)
    while True:
        tail = f"&cursor={quote(after)}" if after else "" if cursor else f"&page={number}"
        response = call(client, "get", url + tail)
        assert response.status_code == 200, (url, response.status_code)
        body = response.json()
        pagination = body["pagination"]
        assert pagination["total"] == len(expected), (url, pagination)
        assert len(body["data"]) == min(limit, len(expected) - len(rows)), (url, pagination)
        rows += body["data"]
        assert pagination["has_next"] == (len(rows) < len(expected)), (url, pagination)
        if not cursor:
            assert (pagination["page"], pagination["pages"]) == (number, pages), pagination
        if not pagination["has_next"]:
            break
        number, after = number + 1, pagination["next_cursor"] if cursor else ""
        assert number <= pages, (url, pagination)
    assert {row[key]: shown(row) for row in rows} == expected, url
    assert len(rows) == len(expected), url
    values = [row[order.lstrip("-")] for row in rows]
    assert values == sorted(values, reverse=order.startswith("-")), (url, values)
