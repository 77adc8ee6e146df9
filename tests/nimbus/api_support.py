"""A signed-in API client per user, on fresh in-memory stores with the domain tables."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.test import APIClient

from datamodel import ids
from tests.nimbus.factories import ApiKeyFactory


@dataclass
class ApiUser:
    user_id: str
    secret: str
    client: APIClient


def api_user(
    user_id: str | None = None, permissions: list[str] | None = None, admin: bool = False
) -> ApiUser:
    user_id = user_id or ids.user_id()
    secret = ids.api_key()
    ApiKeyFactory.create(
        owner=user_id,
        secret=secret,
        permissions=permissions or ["read", "write"],
        user_email=f"{user_id}@example.com",
        user_is_admin=admin,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return ApiUser(user_id, secret, client)


def make_project(user: ApiUser, name: str = "repairsbypost.com") -> str:
    """A project of ``user``, created through the API; its id."""
    response = user.client.post("/api/projects/", {"name": name}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["project_id"]


def make_page(user: ApiUser, project_id: str, source_path: str = "a.html") -> str:
    """A page of ``project_id`` uploaded through the API; its id."""
    response = user.client.post(
        f"/api/projects/{project_id}/pages/", {"source_path": source_path}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()["page_id"]
