"""API-key authentication, permissions, and the cost of an authenticated read."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from datamodel import ids
from nimbus import conf
from nimbus.models import ApiKey, key_hash
from tests.nimbus.api_support import api_user
from tests.nimbus.factories import ProjectFactory

pytestmark = pytest.mark.usefixtures("domain")


def test_an_authenticated_project_read_costs_four_kv_calls() -> None:
    """Authentication reads the key, then its owner (their current status and admin flag,
    never a copy made with the key), and counts the request against the key's limit: three
    calls, gathered into one request where the store combines them (the gateway; see
    test_gateway_api). The project is the fourth. The owner's id is in the key, so the two
    reads cannot be one bulk read (and they are in different namespaces)."""
    alice = api_user("alice")
    project = ProjectFactory.create(owner="alice")
    kv, sql = conf.kv_store().round_trips, conf.sql_database().round_trips

    def read() -> tuple[int, int]:
        with kv.track() as kv_delta, sql.track() as sql_delta:
            response = alice.client.get(f"/api/projects/{project.pk}/")
        assert response.status_code == 200 and response.json()["name"] == project.get("name")
        return kv_delta.count, sql_delta.count

    # apikey:{hash}, user:{user_id}, the throttle's counter increment, project:{id}
    assert read() == (4, 0)
    assert read() == (4, 0)
    counter = conf.kv_store().get("NIMBUS_CACHE", f"rl:api:key_{key_hash(alice.secret)}")
    assert counter == b"2"  # counted once per request, by authentication


def test_the_key_is_stored_only_as_its_hash() -> None:
    alice = api_user("alice")
    created = alice.client.post("/api/keys/", {"name": "Production Key"}, format="json")
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("sk_live_") and len(secret) == 40
    stored = conf.kv_store().get("NIMBUS_KEYS", f"apikey:{key_hash(secret)}")
    assert stored is not None and secret.encode() not in stored
    listed = alice.client.get("/api/keys/").json()["data"]
    assert all("key" not in row for row in listed)
    assert {row["prefix"] for row in listed} >= {secret[:12]}
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert other.get("/api/me/").json()["user_id"] == "alice"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer sk_live_" + "0" * 32, "Invalid API key."),
        ("Bearer not-a-key", "Invalid API key."),
        ("Bearer", "Invalid Authorization header"),
        ("Bearer a b", "Invalid Authorization header"),
    ],
)
def test_bad_keys_are_401_with_a_clear_message(header: str, message: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert message in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_keys_are_refused() -> None:
    alice = api_user("alice")
    secret = alice.client.post("/api/keys/", {"name": "temp"}, format="json").json()["key"]
    revoke = alice.client.delete(f"/api/keys/{key_hash(secret)}/")
    assert revoke.status_code == 204
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.get("/api/me/")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    assert ApiKey.objects.system().get_or_none(key_hash(secret)) is None  # gone from lists
    assert alice.client.get("/api/me/").status_code == 200


def test_anonymous_requests_are_401() -> None:
    assert APIClient().get("/api/projects/").status_code == 401


def test_read_only_keys_cannot_write() -> None:
    reader = api_user(permissions=["read"])
    assert reader.client.get("/api/projects/").status_code == 200
    refused = reader.client.post("/api/projects/", {"name": "x"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "This API key is read-only: writing needs a key with the 'write' permission."
    )
    assert "WWW-Authenticate" not in refused.headers  # not an authentication problem
    writer = api_user(permissions=["write"])
    unread = writer.client.get("/api/projects/")
    assert unread.status_code == 403
    assert unread.json()["detail"] == "This API key does not have the 'read' permission."


def test_only_admins_create_admin_keys() -> None:
    alice = api_user("alice")
    response = alice.client.post(
        "/api/keys/", {"name": "k", "permissions": ["admin"]}, format="json"
    )
    assert response.status_code == 400 and "permissions" in response.json()


@pytest.mark.django_db
def test_admin_sessions_work_for_the_browsable_api(nimbus_admin_client, nimbus_admin) -> None:
    response = nimbus_admin_client.get("/api/projects/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Project" in response.content and b"<form" in response.content  # create form
    created = nimbus_admin_client.post(
        "/api/projects/", {"name": "from the browser"}, content_type="application/json"
    )
    assert created.status_code == 201
    assert created.json()["user_id"] == nimbus_admin.pk  # the admin's own Nimbus user_id


def test_admin_keys_may_initialize() -> None:
    admin = api_user(admin=True)
    assert admin.client.post("/api/system/initialize/").status_code == 200
    user = api_user(ids.user_id())
    assert user.client.post("/api/system/initialize/").status_code == 403
