"""Users (``user:{user_id}`` in NIMBUS_USERS), with the admin user seeded from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.hashers import make_password

from datamodel import DataModel, Seed, SeedError, fields, ids

from .email import follow_user


def admin_user(env: Mapping[str, str]) -> dict[str, Any]:
    """The admin seed: ``ADMIN_EMAIL`` and ``ADMIN_PASSWORD``, the password kept only as a
    Django password hash."""
    password = env.get("ADMIN_PASSWORD")
    if not password:
        raise SeedError("USER admin seed: environment variable ADMIN_PASSWORD is not set")
    return {
        "user_id": ids.user_id(),
        "email": env["ADMIN_EMAIL"].strip().lower(),
        "password_hash": make_password(password),
        "is_admin": True,
        "status": "active",
        "profile": {"name": "System Administrator"},
    }


class User(DataModel):
    user_id = fields.String(primary_key=True, generator=ids.user_id)
    email = fields.String(required=True, max_length=254, unique=True)  # one account per email
    password_hash = fields.String()
    is_admin = fields.Boolean(default=False)
    status = fields.Choice(["active", "suspended"], default="active")
    profile = fields.JSON(default_factory=dict)
    created = fields.Timestamp(auto_now_add=True)  # the spec's name for the creation time

    class Meta:
        name = "USER"
        namespace = "NIMBUS_USERS"
        key_pattern = "user:{user_id}"
        table = "user_meta"
        sync_fields = ["email", "is_admin", "status"]
        user_tracking = False  # the user_id is the key; each user owns their own record
        seeds = [Seed("if_missing", admin_user, key=["email"], when_env="ADMIN_EMAIL")]

    # The email lookup (``email:{email}``) follows the user on every write path.
    def after_create(self) -> None:
        follow_user(self)

    def after_update(self, changes: dict[str, Any]) -> None:
        if "email" in changes:
            follow_user(self)

    def after_delete(self) -> None:
        follow_user(self, gone=self._state.adding)  # hard-deleted: no longer stored

    def after_restore(self) -> None:
        follow_user(self)
