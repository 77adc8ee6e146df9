"""How API URLs resolve: with or without the trailing slash, JSON errors for unknown URLs and
wrong methods, and the rest of the site left as Django answers it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from nimbus.models import key_hash
from tests.nimbus.api_support import api_user

pytestmark = pytest.mark.usefixtures("domain")


def test_every_api_route_answers_without_its_trailing_slash() -> None:
    alice = api_user("alice")
    created = alice.client.post("/api/projects", {"name": "p"}, format="json")
    assert created.status_code == 201, created.status_code
    project = created.json()["project_id"]
    base = f"/api/projects/{project}"
    page = alice.client.post(f"{base}/pages", {"source_path": "a.html"}, format="json")
    assert page.status_code == 201
    page_id = page.json()["page_id"]
    calls = [
        ("get", "/api", None, 200),
        ("get", "/api/me", None, 200),
        ("get", "/api/status", None, 200),
        ("get", "/api/keys", None, 200),
        ("get", "/api/projects", None, 200),
        ("patch", base, {"name": "q"}, 200),
        ("get", f"{base}/pages", None, 200),
        ("get", f"{base}/pages/{page_id}", None, 200),
        ("post", f"{base}/pages/{page_id}/logs", {"step": "s", "message": "m"}, 201),
        ("post", f"{base}/pages/{page_id}/status", {"status": "queued"}, 200),
        ("post", f"{base}/batches", {"pages": [{"source_path": "b.html"}]}, 201),
        ("get", "/api/schema", None, 200),
        ("get", "/api/docs", None, 200),
        ("delete", f"{base}/pages/{page_id}", None, 204),
        ("delete", base, None, 204),
        ("delete", f"/api/keys/{key_hash(alice.secret)}", None, 204),
    ]
    for method, url, body, status in calls:
        response = getattr(alice.client, method)(url, body, format="json")
        assert response.status_code == status, (method, url, response.status_code)
        if url == f"{base}/batches":
            claimed = alice.client.post(f"{base}/queue/claim")
            assert claimed.status_code == 200
            queued = f"{base}/queue/{claimed.json()['page_id']}"
            assert (
                alice.client.post(f"{queued}/fail", {"error": "e"}, format="json").status_code
                == 200
            )
            assert alice.client.post(f"{base}/queue/claim").status_code == 200
            assert alice.client.post(f"{queued}/ack", {}, format="json").status_code == 200


def test_a_slashless_write_is_not_redirected_even_in_debug(settings) -> None:
    settings.DEBUG = True  # CommonMiddleware raises instead of redirecting a POST then
    alice = api_user("alice")
    assert alice.client.post("/api/projects", {"name": "p"}, format="json").status_code == 201


def test_urls_reverse_to_their_canonical_form_with_the_slash() -> None:
    assert reverse("api:projects") == "/api/projects/"
    assert reverse("api:project", kwargs={"project_id": "proj_1"}) == "/api/projects/proj_1/"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/nope/"),
        ("get", "/api/nope"),
        ("post", "/api/nope"),
        ("delete", "/api/projects/proj_1/pages/page_1/extra/"),
        ("get", "/api/projects/proj_1/queue/"),
    ],
)
def test_unknown_api_urls_are_a_json_404(method: str, url: str) -> None:
    alice = api_user("alice")
    response = getattr(alice.client, method)(url)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"detail"}
    anonymous = getattr(Client(enforce_csrf_checks=True), method)(url)
    assert anonymous.status_code == 404 and set(anonymous.json()) == {"detail"}


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/api/projects/"),
        ("delete", "/api/projects"),
        ("post", "/api"),
        ("post", "/api/me/"),
        ("post", "/api/schema/"),
        ("post", "/api/docs/"),
    ],
)
def test_a_wrong_method_on_a_known_api_url_is_a_json_405(method: str, url: str) -> None:
    alice = api_user("alice")
    response = getattr(alice.client, method)(url)
    assert response.status_code == 405, response.status_code
    assert response.headers["Content-Type"] == "application/json"
    assert "not allowed" in response.json()["detail"]


def test_urls_outside_the_api_keep_djangos_answers() -> None:
    missing = Client().get("/nope/")
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert Client().get("/apis/").status_code == 404
    assert Client().get("/admin").status_code == 301  # APPEND_SLASH, as before
