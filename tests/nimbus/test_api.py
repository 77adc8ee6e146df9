from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_browsable_api_renders(client: Client) -> None:
    response = client.get("/api/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Nimbus API" in response.content
    assert b"Django REST framework" in response.content


def test_root_redirects_to_the_api(client: Client) -> None:
    assert client.get("/").headers["Location"] == "/api/"


def test_status_is_public_but_terse(client: Client) -> None:
    response = client.get("/api/status/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json() == {"healthy": True}


def test_status_details_for_admins(nimbus_admin_client: Client) -> None:
    from nimbus import conf

    conf.get_datastore().auth("u1").put("PROJECT", "p1", {})
    body = nimbus_admin_client.get("/api/status/", HTTP_ACCEPT="application/json").json()
    assert body["healthy"] is True
    assert body["kv"]["backend"] == "memory"
    assert "NIMBUS_PROJECTS" in body["kv"]["namespaces"]
    assert body["d1"] == {"backend": "memory", "healthy": True, "detail": ""}
    assert body["adapter"] == "kv"
