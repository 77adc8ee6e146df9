"""Finding and creating Nimbus users by email, for sign-in and the account commands."""

from __future__ import annotations

from datamodel import Connection
from nimbus.models import EmailLookup, User
from nimbus.models.user import normalize_email, validate_email

__all__ = ["create_user", "email_of", "find_user"]


def find_user(email: str, *, using: Connection | None = None) -> User | None:
    """The user with this email (any status; not a deleted one), or ``None``: the email lookup,
    then the user (two KV reads); by SQL when the lookup is missing (an install from before
    lookups were written, until ``nimbus_sync --repair``)."""
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValueError:
        return None
    users = User.objects.system(using=using)
    lookup = EmailLookup.objects.system(using=using).get_or_none(email)
    user = users.get_or_none(lookup.get("user_id")) if lookup is not None else None
    if user is not None and user.get("email") == email:
        return user
    found: User | None = users.filter(email=email).with_data().first()
    return found


def create_user(
    email: str,
    password: str | None,
    *,
    is_admin: bool = False,
    name: str | None = None,
    using: Connection | None = None,
) -> User:
    """A new user, saved: the email validated (and unique: ``IntegrityError`` if taken), the
    password through Django's validators (``None``: no password, no sign-in). Invalid values
    raise ``ValidationError`` naming the field."""
    email = normalize_email(email)
    user = User.objects.system(using=using).new(
        email=email, is_admin=is_admin, profile={"name": name or email.split("@")[0]}
    )
    user.set_password(password)
    return user.save()


def email_of(user_id: str, *, using: Connection | None = None) -> str | None:
    """The email of the user with this id, or ``None`` if there is no such user."""
    try:
        user = User.objects.system(using=using).get_or_none(user_id)
    except ValueError:
        return None
    return None if user is None else user.get("email")
