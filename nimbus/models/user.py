"""Users (``user:{user_id}`` in NIMBUS_USERS), with the admin user seeded from the environment.

Emails are validated by the field itself (Django's ``EmailValidator``), on every create and
every change; passwords pass Django's ``AUTH_PASSWORD_VALIDATORS`` whenever one is set
(``User.set_password``, the admin seed). Only a Django password hash is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth import hashers
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator

from datamodel import DataModel, Seed, SeedError, ValidationError, fields, ids

from .email import follow_user

__all__ = ["User", "admin_user", "normalize_email", "password_problems", "validate_email"]

_EMAIL = EmailValidator()


def normalize_email(email: str) -> str:
    """How an email is stored and looked up: trimmed and lower-cased."""
    return email.strip().lower()


def validate_email(value: str) -> None:
    """The email field's validator: Django's ``EmailValidator``, raised as the ``ValueError``
    the model layer reports under the field's name."""
    try:
        _EMAIL(value)
    except DjangoValidationError as exc:
        raise ValueError(" ".join(exc.messages)) from None


class _PasswordOwner:
    """A user as Django's password validators read one: the similarity validator compares the
    password with ``email`` and looks the field's name up in ``_meta``."""

    def __init__(self, email: str | None) -> None:
        self.email = email
        self._meta = self

    def get_field(self, name: str) -> Any:
        raise FieldDoesNotExist(name)  # the validator then names the attribute itself


def password_problems(password: str, email: str | None = None) -> list[str]:
    """What Django's ``AUTH_PASSWORD_VALIDATORS`` say against ``password`` for the user with
    this ``email``; empty when it is accepted."""
    try:
        validate_password(password, _PasswordOwner(email))
    except DjangoValidationError as exc:
        return list(exc.messages)
    return []


def admin_user(env: Mapping[str, str]) -> dict[str, Any]:
    """The admin seed: ``ADMIN_EMAIL`` and ``ADMIN_PASSWORD``, both validated, the password kept
    only as a Django password hash."""
    password = env.get("ADMIN_PASSWORD")
    if not password:
        raise SeedError("USER admin seed: environment variable ADMIN_PASSWORD is not set")
    email = normalize_email(env["ADMIN_EMAIL"])
    try:
        validate_email(email)
    except ValueError as exc:
        raise SeedError(f"USER admin seed: ADMIN_EMAIL {email!r} is refused: {exc}") from None
    problems = password_problems(password, email)
    if problems:
        raise SeedError(f"USER admin seed: ADMIN_PASSWORD is refused: {' '.join(problems)}")
    return {
        "user_id": ids.user_id(),
        "email": email,
        "password_hash": hashers.make_password(password),
        "is_admin": True,
        "status": "active",
        "profile": {"name": "System Administrator"},
    }


class User(DataModel):
    user_id = fields.String(primary_key=True, generator=ids.user_id)
    # one account per email, stored as normalize_email() gives it
    email = fields.String(required=True, max_length=254, unique=True, validators=[validate_email])
    password_hash = fields.String()  # a Django password hash; None: no password, no sign-in
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

    def set_password(self, password: str | None) -> None:
        """Set the password (saved with the next ``save()``) once Django's password validators
        accept it; ``ValidationError`` under ``password`` names each problem. ``None`` removes
        the password: the user can no longer sign in."""
        if password is None:
            self.set("password_hash", None)
            return
        problems = password_problems(password, self.get("email"))
        if problems:
            raise ValidationError({"password": problems})
        self.set("password_hash", hashers.make_password(password))

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's. A hash made with an older hasher or fewer
        iterations than Django's current default is upgraded and saved on success."""
        encoded = self.get("password_hash")
        if not encoded:
            return False

        def upgrade(raw: str) -> None:
            self.set("password_hash", hashers.make_password(raw))  # accepted when it was set
            self.save()

        return hashers.check_password(password, encoded, upgrade)

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
