"""``Account``: a Nimbus user as Django's auth, sessions and admin see one (``AUTH_USER_MODEL``).

It has no table (``managed = False``; this app has no migrations): ``Account.of(user)`` builds
one from the USER record and ``save()`` writes its email, password hash, admin flag and status
back to that record. Its primary key is the Nimbus ``user_id``, so a session names the user as
the API does. Querying accounts through Django's ORM is refused with a pointer to ``User``.

Django's admin log table (``django_admin_log``, unused: the admin is read-only) has a foreign key
to the user model's table, which SQLite checks whenever that log is written or emptied (a
``flush``, the tests' teardown). ``ensure_table`` creates that table after ``migrate`` if it is
missing: the key column alone, always empty.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.hashers import (
    UNUSABLE_PASSWORD_PREFIX,
    check_password,
    is_password_usable,
    make_password,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DEFAULT_DB_ALIAS, connections, models

from datamodel import IntegrityError, ValidationError
from nimbus.models import User
from nimbus.models.user import normalize_email

from .users import create_user, find_user

__all__ = ["Account", "AccountManager", "ensure_table"]

NO_PASSWORD = UNUSABLE_PASSWORD_PREFIX  # a user without a password hash: never checks


class AccountManager(BaseUserManager):
    """What Django's auth and its commands ask of the user model's manager (``createsuperuser``,
    ``changepassword``), answered from the USER DataModel."""

    def get_queryset(self) -> Any:
        raise NotImplementedError(
            "Accounts have no table: query nimbus.models.User (the USER DataModel) instead"
        )

    def using(self, alias: str | None) -> AccountManager:
        return self  # one datastore, whatever the Django database

    def get_by_natural_key(self, username: str) -> Account:
        return self.get(email=username)

    def get(self, **lookups: Any) -> Account:
        """The account by ``email`` or by ``pk``/``user_id``; ``Account.DoesNotExist`` if none."""
        user: User | None
        if set(lookups) == {"email"}:
            user = find_user(str(lookups["email"]))
        elif len(lookups) == 1 and set(lookups) <= {"pk", "user_id"}:
            user = User.objects.system().get_or_none(str(next(iter(lookups.values()))))
        else:
            raise NotImplementedError(f"accounts are found by email or user_id, not {lookups}")
        if user is None:
            raise self.model.DoesNotExist(f"no account matches {lookups}")
        return self.model.of(user)

    def create_user(self, email: str, password: str | None = None) -> Account:
        return self._create(email, password, is_admin=False)

    def create_superuser(self, email: str, password: str | None = None) -> Account:
        """A Nimbus admin (``manage.py createsuperuser``)."""
        return self._create(email, password, is_admin=True)

    def _create(self, email: str, password: str | None, *, is_admin: bool) -> Account:
        try:
            user = create_user(email, password, is_admin=is_admin)
        except ValidationError as exc:
            raise DjangoValidationError(
                [message for messages in exc.errors.values() for message in messages]
            ) from exc
        except IntegrityError as exc:
            raise DjangoValidationError(f"{normalize_email(email)} already has an account") from exc
        return self.model.of(user)


class Account(AbstractBaseUser):
    """A Nimbus user for Django: ``is_active`` while their status is active; ``is_staff``,
    ``is_superuser`` and every permission when ``is_admin``, none otherwise."""

    user_id = models.CharField(primary_key=True, max_length=64)
    email = models.EmailField("email address", unique=True, max_length=254)
    is_admin = models.BooleanField(default=False)
    status = models.CharField(max_length=16, default="active")
    # ``password`` (from AbstractBaseUser) is the USER's password_hash.
    last_login = None  # not kept: it would cost a write per sign-in
    _password: str | None = None  # as in AbstractBaseUser: the raw password until save()

    objects = AccountManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        managed = False
        db_table = "nimbus_accounts_account"  # never created
        default_permissions = ()
        verbose_name = "account"

    @classmethod
    def of(cls, user: User) -> Account:
        """The account of this USER record."""
        return cls(
            user_id=user.pk,
            email=user.get("email"),
            password=user.get("password_hash") or NO_PASSWORD,
            is_admin=bool(user.get("is_admin")),
            status=user.get("status") or "active",
        )

    @property  # type: ignore[override]
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def is_staff(self) -> bool:
        return self.is_admin

    @property
    def is_superuser(self) -> bool:
        return self.is_admin

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return self.is_active and self.is_admin

    def has_perms(self, perm_list: Any, obj: object = None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        return self.is_active and self.is_admin

    def get_full_name(self) -> str:
        return self.email

    def get_short_name(self) -> str:
        return self.email

    def set_password(self, raw_password: str | None) -> None:
        """Set the password (written by ``save()``) once Django's password validators accept it;
        Django's ``ValidationError`` otherwise."""
        if raw_password is not None:
            password_validation.validate_password(raw_password, self)
        super().set_password(raw_password)

    def check_password(self, raw_password: str) -> bool:
        def upgrade(raw: str) -> None:  # a newer hasher: the password was accepted when set
            self.password = make_password(raw)
            self.save()

        return check_password(raw_password, self.password, upgrade)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Write the email, password hash, admin flag and status to the USER record."""
        user = User.objects.system().get(self.user_id)
        values = {
            "email": normalize_email(self.email),
            "password_hash": self.password if is_password_usable(self.password) else None,
            "is_admin": bool(self.is_admin),
            "status": self.status,
        }
        changed = {name: value for name, value in values.items() if user.get(name) != value}
        if changed:
            user.set(changed)
            user.save()
        if self._password is not None:  # set_password() keeps it for the validators' hook
            password_validation.password_changed(self._password, self)
            self._password = None

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("delete the USER (nimbus.models.User), not its account")


def ensure_table(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """The post_migrate receiver: an empty ``Account`` table with just its key, if there is
    none, for the foreign key of Django's admin log (see the module's docstring)."""
    connection = connections[using]
    table = Account._meta.db_table
    if table in connection.introspection.table_names():
        return
    quote = connection.ops.quote_name
    with connection.schema_editor() as editor:
        editor.execute(f"CREATE TABLE {quote(table)} ({quote('user_id')} varchar(64) PRIMARY KEY)")
