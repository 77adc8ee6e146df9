"""A Worker written from the data-structures spec alone (tests/cloudflare/spec-reader.mjs)
reads every key a scripted run of the API leaves in the NIMBUS_* namespaces, and finds each
where the spec puts it, in the spec's shape, agreeing with the API's answers.

The Python side runs on the local Cloudflare API (KV and D1 on Miniflare); the Worker runs in
the same Miniflare instance with the namespaces bound, so both see the same KV."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from datamodel import ids, initialize
from datastore import CacheClient
from nimbus import conf, key_usage
from nimbus.models import DOMAIN_MODELS, User, key_hash
from tests.cloudflare.local_api import LocalCloudflare
from tests.nimbus.conftest import PASSWORD
from tests.nimbus.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
PATHS = ["dist/local/rolex-repair.html", "dist/local/omega.html", "dist/local/tag.html"]
SINGLE = "dist/local/contact.html"
OPTIMIZED = [{"id": "block-0", "type": "h1", "content": "Rolex repair", "optimized_content": "x"}]
RESULT = {"model": "gpt-4", "confidence": 0.93, "changes": 7, "optimized_blocks": OPTIMIZED}


def extraction(path: str) -> dict[str, Any]:
    """What the gulp extraction uploads for a page."""
    name = path.rsplit("/", 1)[-1].removesuffix(".html")
    return {
        "engine": "html",
        "main_selector": "main",
        "head": {
            "title": f"{name} | Repairs by Post",
            "metaDescription": f"All about {name}",
            "canonical": f"https://repairsbypost.com/{name}",
            "favicon": "/favicon.ico",
            "ogImage": "/og.png",
        },
        "dimensions": {"location": "birmingham", "brand": name, "service": "watch-repair"},
        "above_fold_blocks": [
            {"id": "block-0", "type": "h1", "content": name, "attributes": {"class": "hero"}}
        ],
        "rest_of_page_blocks": [{"id": "block-1", "type": "p", "content": "Since 1990."}],
        "selector_map": {"block-0": "main > h1", "block-1": "main > p"},
    }


@pytest.fixture(params=["rest", "gateway"])
def cloudflare(
    request: pytest.FixtureRequest, settings, cloudflare_api: LocalCloudflare
) -> Iterator[LocalCloudflare]:
    """The Django app on Cloudflare KV + D1 (the local REST API, or the gateway Worker on the
    same namespaces and database), with the domain tables."""
    cloudflare_api.reset()
    settings.NIMBUS = cloudflare_api.nimbus_settings(request.param)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)
    yield cloudflare_api
    key_usage.reset()
    conf.reset()
    cloudflare_api.reset()


class Caller:
    """An API client with one key, counting the requests it makes."""

    def __init__(self, secret: str) -> None:
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        self.requests = 0

    def __call__(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        self.requests += 1
        response = getattr(self.client, method)(f"/api/{path}", body, format="json")
        assert response.status_code == expect, (path, response.content[:500])
        return response.json() if response.content else None


def spec_read(cloudflare: LocalCloudflare, route: str, **params: str) -> dict[str, Any]:
    response = cloudflare.http.get(f"spec/{route}", params=params or None)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_worker_written_from_the_spec_reads_what_the_api_wrote(
    cloudflare: LocalCloudflare,
) -> None:
    user = User.objects.system().new(email="ada@example.com")
    user.set_password(PASSWORD)
    user.save()
    user_id = user.pk
    secret = ids.api_key()
    ApiKeyFactory.create(
        owner=user_id, secret=secret, name="Production Key", user_email="ada@example.com"
    )
    api = Caller(secret)

    # A project, a batch of three pages and one page on its own.
    settings = {"tone": "premium", "domain": "repairsbypost.com"}
    project = api("post", "projects/", {"name": "repairsbypost.com", "settings": settings}, 201)
    project_id = project["project_id"]
    pages = [
        {"source_path": path, "extraction": extraction(path), "priority": priority}
        for path, priority in zip(PATHS, (10, 9, 1), strict=True)
    ]
    batch = api("post", f"projects/{project_id}/batches/", {"pages": pages}, 201)
    batch_id = batch["batch_id"]
    single = {"source_path": SINGLE, "extraction": extraction(SINGLE)}
    single_batch = api("post", f"projects/{project_id}/pages/", single, 201)["batch_id"]
    failed, done, queued = (ids.page_id(project_id, path) for path in PATHS)
    uploaded = ids.page_id(project_id, SINGLE)

    # The first page is claimed and fails until it has no attempts left; the second is acked
    # with its optimization; the third stays queued.
    while True:
        assert api("post", f"projects/{project_id}/queue/claim/")["page_id"] == failed
        body = {"error": "AI timed out"}
        if not api("post", f"projects/{project_id}/queue/{failed}/fail/", body)["retry"]:
            break
    assert api("post", f"projects/{project_id}/queue/claim/")["page_id"] == done
    api("post", f"projects/{project_id}/queue/{done}/ack/", {"result": RESULT})
    note = {"level": "warn", "step": "process", "message": "slow", "data": {"ms": 9}}
    api("post", f"projects/{project_id}/pages/{queued}/logs/", {**note, "duration_ms": 12}, 201)
    api("post", f"projects/{project_id}/pages/{uploaded}/logs/", note, 201)

    # A second key, used a few times; usage counters are written in batches.
    second = api("post", "keys/", {"name": "Development Key"}, 201)["key"]
    dev = Caller(second)
    answers = {
        "project": dev("get", f"projects/{project_id}/"),
        "batch": dev("get", f"projects/{project_id}/batches/{batch_id}/"),
        "pages": dev("get", f"projects/{project_id}/pages/?limit=10"),
    }
    key_usage.flush()

    # A sign-in through the browsable API (a session) and a cache entry.
    browser = Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT=BROWSER)
    signed_in = browser.post(
        "/api-auth/login/?next=/api/", {"username": "ada@example.com", "password": PASSWORD}
    )
    assert signed_in.status_code == 302
    session_key = browser.cookies["sessionid"].value
    cached = {"title": "Rolex repair", "blocks": 2}
    CacheClient(conf.kv_store(), "content", value_type="page_data").set("rolex", cached, ttl=300)

    # What the Worker reads.
    walk = spec_read(cloudflare, f"user/{user_id}", paths=",".join([*PATHS, SINGLE]))
    assert walk["problems"] == []
    read = walk["read"]
    assert read[f"user:{user_id}"]["email"] == "ada@example.com"
    assert read["email:ada@example.com"]["user_id"] == user_id
    assert read[f"projects:{user_id}"] == [project_id]
    stored_project = read[f"project:{project_id}"]
    assert stored_project["name"] == answers["project"]["name"] == "repairsbypost.com"
    assert stored_project["settings"]["tone"] == "premium"
    assert stored_project["usage"]["total_batches"] == 2  # the page on its own has its own
    assert stored_project["usage"]["total_pages"] == 4

    stored_batch = read[f"batch:{project_id}:{batch_id}"]
    assert stored_batch["page_count"] == answers["batch"]["page_count"] == 3
    assert stored_batch["summary"] == answers["batch"]["summary"]
    summary = stored_batch["summary"]
    assert (summary["completed"], summary["failed"], summary["pending"]) == (1, 1, 1)
    assert sorted(stored_batch["pages"]) == sorted([failed, done, queued])
    assert single_batch != batch_id
    alone = read[f"batch:{project_id}:{single_batch}"]
    assert (alone["status"], alone["page_count"], list(alone["pages"])) == (
        "uploading",
        1,
        [uploaded],
    )

    statuses = {failed: "failed", done: "done", queued: "queued", uploaded: "uploaded"}
    listed = {page["page_id"]: page["status"] for page in answers["pages"]["data"]}
    assert listed == statuses
    for page_id, status in statuses.items():
        assert read[f"status:{project_id}:{page_id}"]["status"] == status
        assert read[f"page:{project_id}:{page_id}"]["page_id"] == page_id
        assert read[f"logs:{project_id}:{page_id}"]["entries"]
    assert [item["page_id"] for item in read[f"queue:{project_id}"]["items"]] == [queued]
    assert read[f"status:{project_id}:{failed}"]["error"]["message"] == "AI timed out"
    result = read[f"status:{project_id}:{done}"]["result"]
    assert (result["success"], result["changes"], result["confidence"]) == (True, 7, 0.93)
    optimization = read[f"page:{project_id}:{done}"]["optimization"]
    assert {name: optimization[name] for name in RESULT} == RESULT
    assert read[f"logs:{project_id}:{queued}"]["entries"][-1]["message"] == "slow"

    hashes = sorted(f"sha256:{key_hash(key)}" for key in (secret, second))
    assert sorted(read[f"apikeys:{user_id}"]) == hashes
    for key, caller in ((secret, api), (second, dev)):
        usage = read[f"apikey:{key_hash(key)}"]["usage"]
        assert usage == {"requests_today": caller.requests, "requests_total": caller.requests}

    session = spec_read(cloudflare, f"session/{session_key}")
    assert session["problems"] == []
    stored_session = session["read"][f"session:{session_key}"]
    assert stored_session["user_id"] == user_id
    assert stored_session["email"] == "ada@example.com"
    assert (stored_session["ip"], stored_session["user_agent"]) == ("203.0.113.7", BROWSER)

    entry = spec_read(cloudflare, "cache/content:rolex")
    assert entry["problems"] == []
    assert entry["read"]["cache:content:rolex"]["data"] == cached
    assert entry["read"]["cache:content:rolex"]["type"] == "page_data"


def test_the_worker_names_what_does_not_fit_the_spec(cloudflare: LocalCloudflare) -> None:
    """Keys written by hand, each wrong in one way the spec rules out."""
    kv = conf.kv_store()
    now = "2026-01-02T03:04:05.678Z"
    project_id, batch_id = "proj_0123456789ab", "batch_20260102_030405"
    page_id = ids.page_id(project_id, "a.html")
    secret_hash = key_hash(ids.api_key())

    def put(namespace: str, key: str, value: Any) -> None:
        kv.put(namespace, key, json.dumps(value))

    put("NIMBUS_USERS", "user:user_1", {"user_id": "user_1", "email": "u@e.com", "created": "now"})
    put("NIMBUS_EMAILS", "email:u@e.com", {"user_id": "user_2", "created": now})
    put("NIMBUS_USERS", "projects:user_1", [project_id])
    put("NIMBUS_USERS", "apikeys:user_1", [f"sha256:{secret_hash}"])
    usage = {"requests_today": "3", "requests_total": 3}
    key = {"user_id": "user_1", "created": now, "active": True, "name": "k", "usage": usage}
    put("NIMBUS_KEYS", f"apikey:{secret_hash}", key)
    settings = {"tone": "casual", "max_pages_per_batch": 9, "default_concurrency": 1}
    project = {
        "project_id": project_id,
        "user_id": "user_2",
        "name": "p",
        "created": now,
        "settings": {**settings, "ai_model": "gpt-4", "domain": "d"},
        "usage": {"total_pages": 0, "total_batches": 1, "last_activity": now},
    }
    put("NIMBUS_PROJECTS", f"project:{project_id}", project)
    item = {"page_id": page_id, "batch_id": batch_id, "priority": 11, "queued_at": now}
    put("NIMBUS_QUEUE", f"queue:{project_id}", {"items": [{**item, "attempts": 0}]})
    page = {
        "page_id": page_id,
        "project_id": project_id,
        "batch_id": batch_id,
        "source_path": "a.html",
        "uploaded": now,
        "extraction": {**extraction("a.html"), "selector_map": {"block-0": 1}},
        "optimization": None,
    }
    put("NIMBUS_PAGES", f"page:{project_id}:{page_id}", page)
    entry = {"status": "queued", "uploaded": now}
    summary = {"completed": 1, "failed": 0, "pending": 0, "average_time_ms": 0}
    batch = {"batch_id": batch_id, "project_id": project_id, "created": now, "page_count": 2}
    batch.update(status="done", pages={page_id: entry}, summary=summary)
    put("NIMBUS_BATCHES", f"batch:{project_id}:{batch_id}", batch)
    status = {"status": "processing", "batch_id": batch_id, "updated": now}
    put("NIMBUS_STATUS", f"status:{project_id}:{page_id}", status)
    log = {"timestamp": now, "level": "debug", "step": "upload", "message": "m"}
    put("NIMBUS_LOGS", f"logs:{project_id}:{page_id}", {"page_id": page_id, "entries": [log]})
    put("NIMBUS_SESSIONS", "session:s1", {"user_id": "u", "email": "e", "created": now})

    problems = spec_read(cloudflare, "user/user_1", paths="a.html")["problems"]
    expected = [
        "user:user_1: created: expected an ISO 8601 timestamp",
        'email:u@e.com: user_id is "user_2", expected "user_1"',
        f'project:{project_id}: listed in projects:user_1 but owned by "user_2"',
        f"project:{project_id}: usage.total_pages is 0, but 1 pages were found",
        f"apikey:{secret_hash}: last_used: missing",
        f"apikey:{secret_hash}: usage.requests_today: expected a count",
        f"queue:{project_id}: last_processed: missing",
        f"queue:{project_id}: items[0].priority: expected an integer from 1 to 10",
        f"page:{project_id}:{page_id}: optimization: expected an object, got null",
        f"page:{project_id}:{page_id}: extraction.selector_map.block-0: expected a string",
        f'batch:{project_id}:{batch_id}: status: expected "uploading" | "queued"',
        f"batch:{project_id}:{batch_id}: page_count is number 2, expected number 1",
        f"batch:{project_id}:{batch_id}: summary.completed is number 1, expected number 0",
        f"batch:{project_id}:{batch_id}: summary.pending is number 0, expected number 1",
        f'batch:{project_id}:{batch_id}: pages.{page_id}.status is "queued", expected',
        f"status:{project_id}:{page_id}: status is processing but processing is missing",
        f'logs:{project_id}:{page_id}: entries[0].level: expected "info" | "warn" | "error"',
    ]
    missing = [text for text in expected if not any(text in problem for problem in problems)]
    assert missing == [], problems
    assert not any("whose status is" in text for text in problems)  # processing: claimed

    session = spec_read(cloudflare, "session/s1")["problems"]
    assert session == [
        "session:s1: expires: missing",
        "session:s1: ip: missing",
        "session:s1: user_agent: missing",
    ]
    assert spec_read(cloudflare, "cache/none")["problems"] == ["cache:none: missing"]
