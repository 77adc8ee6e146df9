"""The browsable API's HTML forms, filled in and posted as a browser does: multipart form data
with the CSRF token, nested fields named ``settings.tone``, optional fields left blank, by a
Nimbus user signed in with a session (how the browsable API is used)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from unittest.mock import ANY

import pytest
from django.test import Client

from nimbus.models import User
from tests.nimbus.conftest import ADMIN_EMAIL, signed_in

pytestmark = [pytest.mark.usefixtures("domain"), pytest.mark.django_db]


class FormReader(HTMLParser):
    """The fields of the first ``multipart/form-data`` form (DRF's HTML form; the raw data
    form after it is posted by JavaScript), with the values a browser would send."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] | None = None
        self.done = False
        self.select: str | None = None
        self.options: list[tuple[str, bool]] = []
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self.done and attributes.get("enctype") == "multipart/form-data":
            self.fields = []
        if self.fields is None or self.done:
            return
        if tag == "input" and attributes.get("name"):
            self.fields.append((attributes["name"], attributes.get("value", "")))
        elif tag == "select":
            self.select, self.options = attributes["name"], []
        elif tag == "option" and self.select is not None:
            self.options.append((attributes.get("value", ""), "selected" in attributes))
        elif tag == "textarea":
            self.textarea = attributes["name"]
            self.fields.append((self.textarea, ""))

    def handle_endtag(self, tag: str) -> None:
        if self.fields is None or self.done:
            return
        if tag == "form":
            self.done = True
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select" and self.select is not None:
            chosen = [value for value, selected in self.options if selected]
            self.fields.append((self.select, (chosen or [self.options[0][0]])[0]))
            self.select = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None and self.fields:
            self.fields[-1] = (self.textarea, self.fields[-1][1] + data)


def submit(client: Client, url: str, **values: str) -> Any:
    """Fill in the browsable API's form at ``url`` (``values`` by field name) and post it."""
    page = client.get(url, HTTP_ACCEPT="text/html")
    reader = FormReader()
    reader.feed(page.content.decode())
    assert reader.fields is not None, f"no HTML form at {url}"
    names = {name for name, _ in reader.fields}
    assert set(values) <= names, (url, sorted(names))
    data = {name: values.get(name, value) for name, value in reader.fields}
    return client.post(url, data, HTTP_ACCEPT="application/json")


def post_raw(client: Client, url: str, body: dict[str, Any]) -> Any:
    """Post ``body`` as the raw data form does (JSON, the CSRF token in a header)."""
    token = client.get(url, HTTP_ACCEPT="text/html").cookies["csrftoken"].value
    return client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)


@pytest.fixture
def browser(nimbus_admin: User) -> Client:
    return signed_in(ADMIN_EMAIL, enforce_csrf_checks=True)


def test_the_create_forms_post(browser: Client, nimbus_admin: User) -> None:
    created = submit(
        browser,
        "/api/projects/",
        name="from the form",
        **{"settings.tone": "casual", "settings.max_pages_per_batch": "50"},
    )
    assert created.status_code == 201, created.json()
    project = created.json()
    assert project["name"] == "from the form" and project["user_id"] == nimbus_admin.pk
    assert project["settings"]["tone"] == "casual"
    assert project["settings"]["max_pages_per_batch"] == 50
    assert project["settings"]["ai_model"] == "gpt-4"  # left blank: the default stays
    base = f"/api/projects/{project['project_id']}"
    page = submit(browser, f"{base}/pages/", source_path="a.html", priority="7")
    assert page.status_code == 201, page.json()
    assert page.json()["priority"] == 7
    logs = f"{base}/pages/{page.json()['page_id']}/logs/"
    entry = submit(browser, logs, step="upload", message="by hand", data="")  # cleared
    assert entry.status_code == 201, entry.json()
    key = submit(browser, "/api/keys/", name="from the form", permissions="read")
    assert key.status_code == 201, key.json()
    assert key.json()["permissions"] == ["read"]


def test_the_forms_of_other_actions_show_and_take_their_own_bodies(browser: Client) -> None:
    project = post_raw(browser, "/api/projects/", {"name": "p"}).json()["project_id"]
    base = f"/api/projects/{project}"
    page_id = post_raw(browser, f"{base}/pages/", {"source_path": "a.html"}).json()["page_id"]
    moved = submit(browser, f"{base}/pages/{page_id}/status/", status="queued")
    assert moved.status_code == 200, moved.json()
    assert moved.json()["status"] == "queued"
    # A batch's list of pages has no HTML form: the raw data form posts it as JSON.
    batch = post_raw(browser, f"{base}/batches/", {"pages": [{"source_path": "b.html"}]})
    assert batch.status_code == 201, batch.json()
    claimed = submit(browser, f"{base}/queue/claim/")
    assert claimed.status_code == 200
    queued = f"{base}/queue/{claimed.json()['page_id']}"
    failed = submit(browser, f"{queued}/fail/", error="timeout")
    assert failed.status_code == 200, failed.json()
    assert submit(browser, f"{base}/queue/claim/").status_code == 200
    acked = submit(browser, f"{queued}/ack/", result='{"score": 1}')
    assert acked.status_code == 200, acked.json()
    assert acked.json()["status"] == "done"
    assert acked.json()["optimization"] == {"score": 1, "completed": ANY}


def test_a_form_post_is_still_strict(browser: Client) -> None:
    token = browser.get("/api/projects/", HTTP_ACCEPT="text/html").cookies["csrftoken"].value
    for extra, errors in [
        ({"colour": "red"}, {"colour": ["Unknown field."]}),
        ({"settings.loud": "1"}, {"settings": {"loud": ["Unknown field."]}}),
        ({"name.first": "x"}, {"name.first": ["Unknown field."]}),
    ]:
        response = browser.post(
            "/api/projects/",
            {"csrfmiddlewaretoken": token, "name": "p", **extra},
            HTTP_ACCEPT="application/json",
        )
        assert (response.status_code, response.json()) == (400, errors)
    json_token = browser.post(
        "/api/projects/",
        {"name": "p", "csrfmiddlewaretoken": token},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert json_token.status_code == 400  # only a form carries the token in its body
