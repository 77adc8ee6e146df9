"""A signed-in API client per user, on fresh in-memory stores with the domain tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from datamodel import ids
from nimbus.models import User
from tests.nimbus.factories import ApiKeyFactory
from tests.support import REDIS_URL, redis_or_skip


@dataclass
class ApiUser:
    user_id: str
    secret: str
    client: APIClient


def api_user(
    user_id: str | None = None,
    permissions: list[str] | None = None,
    admin: bool = False,
    **key: object,
) -> ApiUser:
    """A key of the user ``user_id`` (created, an administrator if ``admin``, unless they
    exist): read and write, and admin for an administrator, unless ``permissions`` says;
    ``key`` sets other fields of the key (``rate_limit``, ``expires_at``)."""
    user_id = user_id or ids.user_id()
    email = f"{user_id}@example.com"
    users = User.objects.system()
    if users.get_or_none(user_id) is None:
        users.create(user_id=user_id, email=email, is_admin=admin)
    secret = ids.api_key()
    ApiKeyFactory.create(
        owner=user_id,
        secret=secret,
        permissions=permissions or ["read", "write", *(["admin"] if admin else [])],
        user_email=email,
        **key,
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


@contextmanager
def stores_for(backend: str, settings: Any, tmp_path: Path, prefix: str) -> Iterator[None]:
    """The app's stores for a test of the API: the in-memory default (``memory``), or KV on
    SQLite (``sqlite``) or on Redis (``redis``, its keys under ``prefix``, which must have been
    written to and are removed afterwards), with SQL on SQLite and the domain tables made."""
    if backend != "memory":
        kv: dict[str, Any] = {
            "BACKEND": "datastore.backends.sqlite.SQLiteKVStore",
            "OPTIONS": {"path": str(tmp_path / "kv.sqlite3")},
        }
        if backend == "redis":
            redis_or_skip()
            kv = {
                "BACKEND": "datastore.backends.redis.RedisKVStore",
                "OPTIONS": {"url": REDIS_URL, "key_prefix": prefix},
            }
        settings.NIMBUS = {
            "KV": kv,
            "D1": {
                "BACKEND": "datastore.backends.sqlite.SQLiteDatabase",
                "OPTIONS": {"path": str(tmp_path / "metadata.sqlite3")},
            },
        }
        from datamodel import initialize
        from nimbus import conf
        from nimbus.models import DOMAIN_MODELS

        initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)
        assert (tmp_path / "metadata.sqlite3").exists()
    try:
        yield
    finally:
        if backend == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"{prefix}*"))
            assert keys, "the objects were written to Redis"
            client.delete(*keys)
