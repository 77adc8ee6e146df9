"""Sign-in by email and password against the USER DataModel
(``AUTHENTICATION_BACKENDS = ["nimbus.accounts.backends.NimbusBackend"]``)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.hashers import make_password
from django.http import HttpRequest

from nimbus.models import User

from .models import Account
from .users import find_user

__all__ = ["NimbusBackend"]


class NimbusBackend(BaseBackend):
    """Active users sign in with their email (any case, surrounding spaces ignored) and
    password; suspended and deleted users do not, and a session of a user suspended since it
    began is anonymous on its next request. Costs two KV reads to sign in (the email lookup, the
    user) and one per request to load a signed-in user."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Account | None:
        email = username if username is not None else kwargs.get(Account.USERNAME_FIELD)
        if email is None or password is None:
            return None
        user = find_user(str(email))
        if user is None:
            make_password(password)  # hash anyway: the time taken does not tell who has an account
            return None
        if user.check_password(password) and user.get("status") == "active":
            return Account.of(user)
        return None

    def get_user(self, user_id: Any) -> Account | None:
        try:
            user = User.objects.system().get_or_none(str(user_id))
        except ValueError:
            return None
        if user is None or user.get("status") != "active":
            return None
        return Account.of(user)
