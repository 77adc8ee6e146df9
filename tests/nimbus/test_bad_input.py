"""Bad input across the API and the model layer: each gets a clear 4xx or error, and nothing
stored changes (the stores are compared before and after)."""

from __future__ import annotations

import base64
import json

import pytest

from datamodel import ValidationError
from nimbus import conf
from nimbus.models import Page, Project
from tests.nimbus.api_support import api_user, make_page

pytestmark = pytest.mark.usefixtures("domain")


def snapshot() -> tuple[dict, dict]:
    kv = conf.kv_store()
    values = {}
    for namespace in kv.namespaces():
        if namespace == "NIMBUS_CACHE":  # the rate limiter's counters move with every request
            continue
        keys = kv.list(namespace, limit=1000).keys
        values.update({(namespace, k): v for k, v in kv.get_many(namespace, keys).items()})
    sql = conf.sql_database()
    tables = [
        row["name"] for row in sql.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    ]
    rows = {table: sql.execute(f'SELECT * FROM "{table}" ORDER BY 1') for table in tables}
    return values, {table: [dict(r) for r in result] for table, result in rows.items()}


def test_bad_requests_change_nothing(settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 200_000
    alice = api_user("alice")
    project = alice.client.post("/api/projects/", {"name": "p"}, format="json").json()["project_id"]
    page_id = make_page(alice, project)
    before = snapshot()
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    base = f"/api/projects/{project}"
    bad = [
        ("post", "/api/projects/", {"name": "x" * 300_000}, 413),
        (
            "post",
            f"{base}/pages/",
            {"source_path": "b.html", "extraction": {"dimensions": {"d": deep}}},
            400,
        ),
        (
            "post",
            f"{base}/batches/",
            {"pages": [{"source_path": f"{i}.html"} for i in range(1001)]},
            400,
        ),
        ("post", f"{base}/pages/", {"source_path": "c.html", "colour": "red"}, 400),
        ("patch", f"{base}/", {"name": "n", "owner": "bob"}, 400),
        ("get", "/api/projects/proj_x:evil/", None, 404),
        ("get", f"{base}/pages/page%00id/", None, 404),
        ("get", f"{base}/pages/?status=' OR 1=1 --", None, 400),
        ("post", f"{base}/pages/{page_id}/status/", {"status": "done; DROP TABLE page_meta"}, 400),
        ("post", f"{base}/pages/{page_id}/logs/", {"step": "s", "message": "m", "level": []}, 400),
    ]
    for method, url, body, status in bad:
        response = getattr(alice.client, method)(url, body, format="json")
        assert response.status_code == status, (method, url, response.status_code)
    invalid = alice.client.generic(
        "POST", "/api/projects/", "{not json", content_type="application/json"
    )
    assert invalid.status_code == 400
    nested = alice.client.generic(
        "POST",
        "/api/projects/",
        '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}",
        content_type="application/json",
    )
    assert nested.status_code in (400, 413)
    sqlish = alice.client.get(f"{base}/pages/?batch_id=' OR '1'='1")
    assert sqlish.status_code == 200 and sqlish.json()["data"] == []
    assert snapshot() == before


def test_bad_values_through_the_model_layer_change_nothing() -> None:
    Project.objects.auth("alice").create(project_id="proj_1", name="a page's parent")
    pages = Page.objects.auth("alice")
    page = pages.create(project_id="proj_1", source_path="a.html")
    before = snapshot()
    for values in [
        {"status": "nope"},
        {"priority": "high"},
        {"extraction": {"x": float("nan")}},
        {"source_path": "x" * 2000},
        {"unknown_field": 1},
        {"_auth": ["mallory"]},
    ]:
        with pytest.raises(ValidationError):
            page.set(values)
    with pytest.raises(ValidationError):
        pages.create(
            project_id="proj_1",
            source_path="a.html",
            extraction={"big": "x" * (26 * 1024 * 1024)},
            page_id="p:bad",
        )
    with pytest.raises(ValidationError, match="not a sync field"):
        pages.query().where("extraction", "x")
    assert json.dumps(page.get_data())  # the instance is unchanged and still serializable
    assert snapshot() == before


def tampered(ordering: list[str], values: list[object]) -> str:
    """A cursor as the API hands them out, carrying ``values``."""
    raw = json.dumps([ordering, values], ensure_ascii=True)  # "\\ud800" stays a lone surrogate
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1, 2], 2**63, -(2**63) - 1, 10**30, "\ud800", float("inf")],
    ids=["dict", "list", "int64+1", "int64-1", "huge", "lone surrogate", "infinity"],
)
def test_a_tampered_cursor_is_a_400_naming_the_cursor(value: object) -> None:
    alice = api_user("alice")
    for name in ("a", "b", "c"):
        alice.client.post("/api/projects/", {"name": name}, format="json")
    first = alice.client.get("/api/projects/?limit=1").json()["pagination"]["next_cursor"]
    ordering, values = json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
    for position in range(len(values)):
        changed = [*values[:position], value, *values[position + 1 :]]
        response = alice.client.get(f"/api/projects/?limit=1&cursor={tampered(ordering, changed)}")
        assert response.status_code == 400, (position, response.status_code)
        assert "cursor" in response.json()


def test_initialize_refuses_a_body_that_is_not_its_own() -> None:
    admin = api_user(admin=True)
    for body in ["[1]", '"x"', "3", '{"dry_run": "maybe"}', '{"dryrun": true}']:
        response = admin.client.generic(
            "POST", "/api/system/initialize/", body, content_type="application/json"
        )
        assert response.status_code == 400, (body, response.status_code)
    dry = admin.client.post("/api/system/initialize/", {"dry_run": True}, format="json")
    assert dry.status_code == 200 and dry.json()["data"]["dryRun"] is True
    assert admin.client.post("/api/system/initialize/").json()["data"]["dryRun"] is False


def test_a_bad_filter_is_named_as_the_query_parameter() -> None:
    alice = api_user("alice")
    project = alice.client.post("/api/projects/", {"name": "p"}, format="json").json()["project_id"]
    response = alice.client.get(f"/api/projects/{project}/pages/?status=lost")
    assert response.status_code == 400
    assert list(response.json()) == ["status"]
    assert "'lost' is not one of" in response.json()["status"][0]
