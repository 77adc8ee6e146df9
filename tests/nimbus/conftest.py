from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from nimbus import conf, key_usage
from nimbus.models import User

MEMORY_NIMBUS = {
    "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
    "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
    "ADAPTER": "kv",
}


@pytest.fixture(autouse=True)
def memory_datastore(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Django tests run on fresh in-memory backends, whatever the environment says, and
    start with no API-key usage recorded (nor flushed into them from an earlier test)."""
    for name in (
        conf.KV_URL_ENV,
        conf.D1_URL_ENV,
        conf.ADAPTER_ENV,
        conf.TOKEN_ENV,
        conf.KV_NAMESPACES_ENV,
        conf.GATEWAY_SECRET_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    settings.NIMBUS = MEMORY_NIMBUS
    key_usage.reset()
    yield
    key_usage.reset()
    conf.reset()


@pytest.fixture
def domain(memory_datastore: None) -> None:
    """The domain models' metadata tables on the in-memory stores."""
    from datamodel import initialize
    from nimbus.models import DOMAIN_MODELS

    initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)


PASSWORD = "correct-horse-battery"  # what the Nimbus users of these fixtures sign in with
ADMIN_EMAIL = "admin@example.com"


@pytest.fixture
def fast_passwords(settings) -> None:
    """The default hasher takes a second or more per password: tests that hash use MD5."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_user(domain: None, fast_passwords: None) -> Callable[..., User]:
    """``make_user(email, password=PASSWORD, is_admin=False, status="active")``: a Nimbus user
    who can sign in."""

    def make(
        email: str, password: str = PASSWORD, *, is_admin: bool = False, status: str = "active"
    ) -> User:
        user = User.objects.system().new(email=email, is_admin=is_admin, status=status)
        user.set_password(password)
        return user.save()

    return make


def signed_in(email: str, password: str = PASSWORD, **client_options: Any) -> Client:
    """A test client signed in with this email and password, through the sign-in backend."""
    client = Client(**client_options)
    assert client.login(username=email, password=password), f"{email} could not sign in"
    return client


@pytest.fixture
def nimbus_admin(make_user: Callable[..., User]) -> User:
    """A Nimbus admin (``is_admin``), ``admin@example.com`` with ``PASSWORD``."""
    return make_user(ADMIN_EMAIL, is_admin=True)


@pytest.fixture
def nimbus_admin_client(nimbus_admin: User) -> Client:
    """A test client signed in as ``nimbus_admin``: the admin, and the browsable API as them."""
    return signed_in(ADMIN_EMAIL)


@pytest.fixture
def embedded(settings: Any, tmp_path: Any) -> Iterator[None]:
    """The embedded default: KV and metadata in SQLite files, with the domain tables."""
    from tests.nimbus.api_support import stores_for

    with stores_for("sqlite", settings, tmp_path, ""):
        yield
